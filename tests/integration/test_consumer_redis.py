"""The reference consumer against a real redis-server: consumer group, acknowledgement, a
restart that continues where the group stood, and the CLI process's HTTP endpoints,
report file, Pushgateway push and exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
import uuid

import pytest
import redis as redis_lib

from clock_support import child_environ
from conftest import ROOT, free_port, wait_for
from feedops.consumer import ReferenceConsumer, TickTracker, open_source
from feedops.exitcodes import Consumer

pytestmark = pytest.mark.integration
T0 = 1795500000.0  # exchange times of the records below: pinned, the consumer only compares them


def _tick(i: int, instrument: str = "rb2701", volume: int | None = None) -> dict:
    at = T0 + i * 0.5
    return {"instrument": instrument, "exchange": "SHFE", "trading_day": "20261124", "exchange_ts": at,
            "recv_ts": at + 0.01, "volume": i if volume is None else volume}


def _add(client, prefix: str, ticks: list[dict]) -> None:
    for t in ticks:
        client.xadd(f"{prefix}:{t['exchange']}", {"instrument": t["instrument"], "tick": json.dumps(t)})


@pytest.fixture
def prefix() -> str:
    return f"test{uuid.uuid4().hex[:8]}:md"


def test_group_reads_acknowledges_and_a_restart_continues_where_the_group_stood(redis_server, prefix):
    client = redis_lib.Redis.from_url(redis_server.url)
    _add(client, prefix, [_tick(i) for i in range(5)])
    first = ReferenceConsumer(open_source(redis_server.url, prefix=prefix, group="g", start="all"), TickTracker())
    first.start()
    assert first.wait_for(lambda r: r["totals"]["ticks"] == 5, timeout=10)
    report = first.stop()
    assert report["totals"]["acknowledged"] == 5 and report["totals"]["pending"] == 0
    _add(client, prefix, [_tick(i) for i in range(5, 8)])
    second = ReferenceConsumer(open_source(redis_server.url, prefix=prefix, group="g", start="all"), TickTracker())
    second.start()
    assert second.wait_for(lambda r: r["totals"]["ticks"] == 3, timeout=10)
    assert second.report()["totals"]["ticks"] == 3  # only what the group had not read
    second.stop()
    group = client.xinfo_groups(f"{prefix}:SHFE")[0]
    assert group["pending"] == 0 and group["lag"] == 0


def test_entries_whose_read_or_ack_reply_was_lost_are_counted_once(redis_server, prefix):
    """A Redis stall past the socket timeout: XREADGROUP ran (the entries are in this consumer's pending
    list) but its reply was lost; an XACK ran but its reply was lost. Every entry is counted once, and
    every one ends acknowledged."""
    client = redis_lib.Redis.from_url(redis_server.url)
    _add(client, prefix, [_tick(i) for i in range(10)])
    source = open_source(redis_server.url, prefix=prefix, group="g", start="all")
    if source.client is None:
        source.open()
    real_read, real_pipeline = source.client.xreadgroup, source.client.pipeline
    first = source.read(0.5)  # the own pending list is empty: "0" moves to ">"
    assert first == []

    def read_then_lose_the_reply(*args, **kwargs):
        real_read(*args, **kwargs)  # Redis delivered the entries
        raise redis_lib.exceptions.TimeoutError("Timeout reading from socket")

    source.client.xreadgroup = read_then_lose_the_reply
    with pytest.raises(redis_lib.exceptions.TimeoutError):
        source.read(0.5)
    source.client.xreadgroup = real_read
    batch = source.read(0.5)
    assert sorted(t["volume"] for _, t in batch) == list(range(10))

    class LostReply:  # XACK runs, its reply is lost
        def __init__(self):
            self.pipe = real_pipeline(transaction=False)

        def __getattr__(self, name):
            return getattr(self.pipe, name)

        def execute(self):
            self.pipe.execute()
            raise redis_lib.exceptions.TimeoutError("Timeout reading from socket")

    source.client.pipeline = lambda transaction=False: LostReply()
    with pytest.raises(redis_lib.exceptions.TimeoutError):
        source.ack([receipt for receipt, _ in batch])
    source.client.pipeline = real_pipeline
    _add(client, prefix, [_tick(10)])
    later = []
    wait_for(lambda: later.extend(source.read(0.5)) or any(t["volume"] == 10 for _, t in later), timeout=10,
             what="the next entry")
    assert [t["volume"] for _, t in later] == [10] and not source.unconfirmed
    source.ack([receipt for receipt, _ in later])
    assert source.acknowledged == 11  # the ten whose XACK reply was lost count once, when confirmed
    assert client.xinfo_groups(f"{prefix}:SHFE")[0]["pending"] == 0
    source.close()


def test_start_new_skips_what_the_streams_held(redis_server, prefix):
    client = redis_lib.Redis.from_url(redis_server.url)
    _add(client, prefix, [_tick(i) for i in range(5)])
    consumer = ReferenceConsumer(open_source(redis_server.url, prefix=prefix, group="fresh"), TickTracker())
    consumer.start()
    _add(client, prefix, [_tick(i) for i in range(5, 7)])
    assert consumer.wait_for(lambda r: r["totals"]["ticks"] == 2, timeout=10)
    assert consumer.stop()["totals"]["ticks"] == 2


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST", data=b""), timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_cli_process_serves_report_metrics_and_marks_pushes_and_exits_by_findings(redis_server, pushgateway, prefix,
                                                                                   tmp_path):
    client = redis_lib.Redis.from_url(redis_server.url)
    port = free_port()
    report_file = tmp_path / "report.json"
    env = child_environ(FEEDOPS_LOG_FORMAT="json", FEEDOPS_PUSHGATEWAY_ENABLED="true",
                        FEEDOPS_PUSHGATEWAY_URL=pushgateway.url, FEEDOPS_STATE_DIR=str(tmp_path / "state"),
                        FEEDOPS_SECRETS_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "feedops.consumer", "--env", "dev", "--source", redis_server.url,
                             "--prefix", prefix, "--group", "cli", "--start", "all", "--listen", f"127.0.0.1:{port}",
                             "--report-file", str(report_file), "--fail-on", "duplicates", "--push"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _add(client, prefix, [_tick(i) for i in range(6)])
        wait_for(lambda: json.loads(_get(f"{base}/report")[1])["totals"]["ticks"] == 6, what="the consumer reading")
        assert _post(f"{base}/outage?phase=failover&event=resume")[0] == 409  # no start yet
        assert _post(f"{base}/outage?phase=failover&event=nope")[0] == 400
        status, marked = _post(f"{base}/outage?phase=failover&event=start")
        assert status == 200 and marked["phase"] == "failover"
        _add(client, prefix, [_tick(5)])  # a duplicate
        wait_for(lambda: json.loads(_get(f"{base}/report?instruments=0")[1])["totals"]["duplicates"] == 1,
                 what="the duplicate counted")
        status, body = _get(f"{base}/metrics")
        text = body.decode()
        assert status == 200 and 'feedops_consumer_duplicates_total{exchange="SHFE"} 1.0' in text
        assert 'feedops_consumer_ticks_total{exchange="SHFE"} 7.0' in text
        assert _get(f"{base}/livez")[0] == 200
        report = json.loads(_get(f"{base}/report?instruments=0")[1])
        assert "instruments" not in report and report["outages"]["failover"]["duplicates"] == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == Consumer.FINDINGS, err
    saved = json.loads(report_file.read_text())
    assert saved["totals"]["duplicates"] == 1 and saved["instruments"]["rb2701"]["ticks"] == 7
    pushed = _get(f"{pushgateway.url}/metrics")[1].decode()
    assert 'feedops_consumer_duplicates_total{env="dev",exchange="SHFE",group="cli"' in pushed
    assert "consumer.stopped" in err


def test_cli_unreachable_redis_is_exit_source(tmp_path):
    env = child_environ(FEEDOPS_STATE_DIR=str(tmp_path), FEEDOPS_SECRETS_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "feedops.consumer", "--env", "dev", "--source",
                           f"redis://127.0.0.1:{free_port()}/0"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == Consumer.SOURCE, done.stderr
    assert "--source" in done.stderr or "start Redis" in done.stderr
