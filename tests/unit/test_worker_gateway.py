"""The gateway's state machine against a recording fake of the MdApi (no network, no sim)."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from conftest import free_port
from feedops import metric_names
from feedops.calendar import TradingCalendar
from feedops.ctpapi import CtpApi
from feedops.exitcodes import Worker
from feedops.settings import load_settings
from feedops.worker.book import Instrument
from feedops.worker.errors import WorkerError
from feedops.worker.gateway import Gateway
from feedops.worker.instrument_list import shard_of
from feedops.worker.metrics import WorkerMetrics


class FakeMdApi:
    def __init__(self):
        self.spi = None
        self.fronts, self.logins, self.batches = [], [], []
        self.subscribe_rc: list[int] = []
        self.released = False

    def RegisterSpi(self, spi):
        self.spi = spi

    def RegisterFront(self, front):
        self.fronts.append(front)

    def Init(self):
        pass

    def ReqUserLogin(self, field, request_id):
        self.logins.append(field)
        return 0

    def SubscribeMarketData(self, ids, count):
        assert all(isinstance(i, bytes) for i in ids) and count == len(ids)
        rc = self.subscribe_rc.pop(0) if self.subscribe_rc else 0
        if rc == 0:
            self.batches.append(list(ids))
        return rc

    def Release(self):
        self.released = True


class SpiBase:
    def __init__(self):
        pass


def fake_api(md: FakeMdApi) -> CtpApi:
    module = SimpleNamespace(CThostFtdcMdApi=SimpleNamespace(CreateFtdcMdApi=lambda flow: md), CThostFtdcMdSpi=SpiBase,
                             CThostFtdcReqUserLoginField=lambda: SimpleNamespace())
    return CtpApi("sim", module, module)


class Rsp:
    def __init__(self, error_id=0, msg=""):
        self.ErrorID, self.ErrorMsg = error_id, msg


def make(tmp_path, n=25, *, any_open=True, last_tick_age=lambda: None, **extra):
    environ = {"FEEDOPS_SECRETS_DIR": "", "FEEDOPS_FLOW_DIR": str(tmp_path / "flow"), "FEEDOPS_CACHE_DIR": str(tmp_path / "c"),
               "FEEDOPS_WORKER_LISTEN": f"127.0.0.1:{free_port()}", "FEEDOPS_SUBSCRIBE_BATCH_SIZE": "10",
               "FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS": "0", "FEEDOPS_MAX_RETRIES": "1",
               "FEEDOPS_RETRY_BACKOFF_SECONDS": "0.01", "CTP_PRIMARY_PASSWORD": "sentinel-gw-pw",
               "CTP_PRIMARY_MD_FRONTS": "tcp://127.0.0.1:1,tcp://127.0.0.1:2", **extra}
    settings = load_settings("dev", environ=environ)
    md = FakeMdApi()
    gw = Gateway(fake_api(md), settings, "primary", WorkerMetrics("primary"), lambda depth: None,
                 TradingCalendar("always-open"), last_tick_age=last_tick_age, any_open=lambda: any_open)
    gw.instruments = [Instrument(f"i{k:03d}", "SHFE", "rb", "futures") for k in range(n)]
    gw.start_md()
    return gw, md


def pump(gw, times=30):
    for _ in range(times):
        gw.step(0)


def login(gw, md, day="20261127"):
    md.spi.OnFrontConnected()
    pump(gw, 2)
    md.spi.OnRspUserLogin(SimpleNamespace(TradingDay=day), Rsp(), 1, True)
    pump(gw)


def ack_all(gw, md):
    for batch in md.batches:
        for name in batch:
            md.spi.OnRspSubMarketData(SimpleNamespace(InstrumentID=name.decode()), Rsp(), 0, True)
    pump(gw, 3)


def test_flow_dir_created_fronts_registered_and_batches_of_bytes(tmp_path):
    gw, md = make(tmp_path)
    assert (tmp_path / "flow" / "primary" / "md").is_dir()
    assert md.fronts == ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"]
    login(gw, md)
    assert md.logins[0].Password == "sentinel-gw-pw" and gw.logged_in and gw.trading_day == "20261127"
    assert [len(b) for b in md.batches] == [10, 10, 5]
    assert not gw.subscriptions.subscription_complete
    ack_all(gw, md)
    assert gw.subscriptions.subscription_complete and len(gw.subscriptions.acknowledged) == 25


def test_reconnect_logs_in_again_and_resubscribes_everything(tmp_path):
    gw, md = make(tmp_path)
    login(gw, md)
    ack_all(gw, md)
    md.spi.OnFrontDisconnected(4097)
    pump(gw, 2)
    assert not gw.logged_in and not gw.subscriptions.acknowledged and gw.disconnect_counts[4097] == 1
    md.batches.clear()
    login(gw, md)
    assert gw.reconnects == 1 and len(md.logins) == 2
    assert sum(len(b) for b in md.batches) == 25


def test_flow_control_refusal_is_counted_and_retried(tmp_path):
    gw, md = make(tmp_path, FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS="0")
    md.subscribe_rc = [-3]
    login(gw, md)
    assert gw.rate_limit_incidents == 1 and md.batches == []
    gw.subscriptions.next_batch_at = 0  # skip the pause after a refusal
    pump(gw)
    assert sum(len(b) for b in md.batches) == 25


def test_refused_and_unanswered_subscriptions_are_retried_then_failed(tmp_path, monkeypatch):
    gw, md = make(tmp_path, n=3, any_open=False)  # no no-tick watchdog across the time jumps
    login(gw, md)
    md.spi.OnRspSubMarketData(SimpleNamespace(InstrumentID="i000"), Rsp(6000, "sub too many insts"), 0, True)
    md.spi.OnRspSubMarketData(SimpleNamespace(InstrumentID="i001"), Rsp(), 0, True)
    pump(gw)
    assert md.batches[-1] == [b"i000"]  # retried once
    md.spi.OnRspSubMarketData(SimpleNamespace(InstrumentID="i000"), Rsp(6000, "sub too many insts"), 0, True)
    pump(gw)
    assert gw.subscriptions.failed == {"i000": "error_6000"}
    later = time.monotonic() + 3600
    monkeypatch.setattr("feedops.worker.gateway.time.monotonic", lambda: later)
    pump(gw, 1)  # i002 never answered: no_ack, retried once
    monkeypatch.setattr("feedops.worker.gateway.time.monotonic", lambda: later + 3600)
    pump(gw, 1)  # the retry is sent
    assert md.batches[-1] == [b"i002"] and "i002" not in gw.subscriptions.failed
    monkeypatch.setattr("feedops.worker.gateway.time.monotonic", lambda: later + 7200)
    pump(gw, 1)  # and not answered either
    assert gw.subscriptions.failed == {"i000": "error_6000", "i002": "no_ack"} and gw.subscriptions.subscription_complete


def test_login_refused_beyond_the_retries_is_fatal(tmp_path):
    gw, md = make(tmp_path)
    md.spi.OnFrontConnected()
    pump(gw, 2)
    md.spi.OnRspUserLogin(SimpleNamespace(TradingDay=""), Rsp(3, "invalid login"), 1, True)
    pump(gw, 2)
    assert gw.login_failures == 1
    time.sleep(0.02)
    pump(gw, 2)
    assert len(md.logins) == 2  # retried after the backoff
    md.spi.OnRspUserLogin(SimpleNamespace(TradingDay=""), Rsp(3, "invalid login"), 2, True)
    with pytest.raises(WorkerError) as info:
        pump(gw, 2)
    assert info.value.code == Worker.LOGIN and "sentinel" not in str(info.value)


def test_storm_and_connect_watchdogs(tmp_path):
    gw, md = make(tmp_path, FEEDOPS_DISCONNECT_STORM_COUNT="3")
    for _ in range(2):
        md.spi.OnFrontDisconnected(8195)
    pump(gw, 2)
    md.spi.OnFrontDisconnected(8195)
    with pytest.raises(WorkerError) as info:
        pump(gw, 2)
    assert info.value.code == Worker.STORM and "8195" in str(info.value)
    gw2, _ = make(tmp_path, FEEDOPS_CONNECT_TIMEOUT_SECONDS="0.05")
    time.sleep(0.1)
    with pytest.raises(WorkerError) as info:
        pump(gw2, 1)
    assert info.value.code == Worker.NO_FRONT


def test_no_tick_watchdog_resubscribes_once_per_episode(tmp_path, monkeypatch):
    gw, md = make(tmp_path, n=5, last_tick_age=lambda: 999.0, FEEDOPS_NO_TICK_TIMEOUT_SECONDS="1")
    login(gw, md)
    ack_all(gw, md)
    md.batches.clear()
    later = time.monotonic() + 5
    monkeypatch.setattr("feedops.worker.gateway.time.monotonic", lambda: later)
    pump(gw, 3)
    assert sum(len(b) for b in md.batches) == 5  # re-subscribed everything
    assert gw.metrics.registry.get_sample_value(metric_names.WATCHDOG_FIRED.name, {"reason": "no_ticks"}) == 1


def test_close_unregisters_then_releases(tmp_path):
    gw, md = make(tmp_path)
    gw.close()
    assert md.spi is None and md.released


def test_shards_split_deterministically():
    names = [f"rb{2601 + k}" for k in range(200)]
    parts = [[n for n in names if shard_of(n, 3) == i] for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(names) and all(parts)
    assert parts == [[n for n in names if shard_of(n, 3) == i] for i in range(3)]


def test_failed_subscriptions_are_tried_again_and_heal_with_one_line_per_event(tmp_path, monkeypatch, capsys):
    """A front that answers nothing for long: every subscription fails (one ERROR line with the count, not one
    per instrument), the failed ones are tried again in rounds, and once the front answers they are all
    acknowledged again without a restart. Time is an input (monotonic patched)."""
    gw, md = make(tmp_path, n=25, any_open=False, FEEDOPS_RETRY_BACKOFF_MAX_SECONDS="10")
    login(gw, md)
    now = [time.monotonic()]
    monkeypatch.setattr("feedops.worker.gateway.time.monotonic", lambda: now[0])

    def advance(seconds):
        now[0] += seconds
        pump(gw, 10)

    for _ in range(2):  # the first try and its one retry go unanswered (ack timeout 5 s)
        advance(6)
    assert len(gw.subscriptions.failed) == 25 and not gw.subscriptions.acknowledged and gw.subscriptions.subscription_complete
    advance(1)
    sent = sum(len(b) for b in md.batches)
    advance(10)  # the first retry round: sent, still unanswered
    assert sum(len(b) for b in md.batches) == sent + 25
    for _ in range(2):
        advance(6)
    assert len(gw.subscriptions.failed) == 25
    advance(1)
    sent = sum(len(b) for b in md.batches)
    advance(10)
    assert sum(len(b) for b in md.batches) == sent  # nothing recovered: the next round waits twice as long
    advance(10)
    assert sum(len(b) for b in md.batches) == sent + 25
    md.batches[:] = md.batches[-3:]  # the front answers again: acknowledge the round in flight
    ack_all(gw, md)
    advance(0)
    assert not gw.subscriptions.failed and len(gw.subscriptions.acknowledged) == 25 and gw.subscriptions.subscription_complete
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "worker.subscribe.failed" in line]
    assert len(lines) == 1 and "25 subscription(s) failed" in lines[0], lines
    assert sum("worker.subscribe.retried" in line for line in err.splitlines()) == 2
    assert "25 of 25 failed subscription(s) acknowledged" in err


def test_ticks_flowing_again_start_the_retry_round_at_once(tmp_path, monkeypatch):
    age = [None]  # no tick yet: the front is silent
    gw, md = make(tmp_path, n=5, any_open=False, last_tick_age=lambda: age[0], FEEDOPS_RETRY_BACKOFF_MAX_SECONDS="600")
    login(gw, md)
    now = [time.monotonic()]
    monkeypatch.setattr("feedops.worker.gateway.time.monotonic", lambda: now[0])
    for _ in range(3):
        now[0] += 6
        pump(gw, 10)
    assert len(gw.subscriptions.failed) == 5
    sent = sum(len(b) for b in md.batches)
    now[0] += 1
    pump(gw, 10)
    assert sum(len(b) for b in md.batches) == sent  # 600 s to the next round
    age[0] = 0.2  # ticks flow again
    pump(gw, 10)
    assert sum(len(b) for b in md.batches) == sent + 5
    ack_all(gw, md)
    assert not gw.subscriptions.failed and len(gw.subscriptions.acknowledged) == 5


def test_the_event_queue_returns_after_its_timeout_when_a_signal_comes_during_the_wait():
    """The main thread waits for CTP events with a timeout; a signal handled during that wait (SIGTERM at
    shutdown, late on a loaded machine) must not turn it into a wait without end (queue.SimpleQueue does)."""
    script = (
        "import queue, signal, time\n"
        "from feedops.worker.callbacks import event_queue\n"
        "events = event_queue()\n"
        "signal.signal(signal.SIGALRM, lambda *_: time.sleep(0.3))  # handled past the get's deadline\n"
        "signal.setitimer(signal.ITIMER_REAL, 0.05)\n"
        "try:\n"
        "    events.get(timeout=0.1)\n"
        "except queue.Empty:\n"
        "    print('empty')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "empty", done.stderr
