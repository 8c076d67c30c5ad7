"""The worker on the real openctp-ctp binding (channel=ctp) against local TCP servers.

Offline the real library can only connect and disconnect (its handshake is encrypted),
so these tests drive exactly that: an accepting-then-closing server gives
OnFrontDisconnected(4097) about once a second; a closed port gives no callback at
all, which only the connect watchdog can notice.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from clock_support import child_environ
from conftest import ROOT, free_port, wait_for
from feedops import clock
from feedops.calendar import TradingCalendar
from feedops.exitcodes import Worker
from feedops.worker.instruments import write_cache

pytestmark = [pytest.mark.integration, pytest.mark.ctp]
CLI = ROOT / "scripts" / "operations" / "full_feed_subscription.py"


def _locpath() -> str | None:
    local = ROOT / ".venv" / "locale"
    return str(local) if (local / "zh_CN.GB18030").exists() else os.environ.get("LOCPATH")


@pytest.fixture(scope="module")
def ctp_env():
    env = child_environ()
    if _locpath():
        env["LOCPATH"] = _locpath()
    check = subprocess.run([sys.executable, "-c", "from feedops.ctpapi import load_api; print(load_api('ctp').version)"],
                           capture_output=True, text=True, env=env, timeout=60)
    if check.returncode != 0:
        pytest.skip(f"openctp-ctp not importable here (run make bootstrap): {check.stderr.strip()[-200:]}")
    assert check.stdout.startswith("v6.7")
    return env


class AcceptThenClose:
    """A TCP server that accepts every connection and closes it at once."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self):
        self._stop = True
        self.thread.join(5)
        self.sock.close()


def worker_env(base, tmp_path: Path, front_port: int, **extra) -> dict:
    cache = tmp_path / "cache"
    cache.mkdir(exist_ok=True)
    day = TradingCalendar("always-open").trading_day(clock.now()).strftime("%Y%m%d")  # the worker's clock
    rows = [["rb2601", "SHFE", "rb", "1"], ["m2601", "DCE", "m", "1"], ["SR601", "CZCE", "SR", "1"]]
    write_cache(cache / f"instruments-ctp-primary-{day}.json", day, rows, None)  # sealed as the worker writes it
    env = dict(base)
    env.update({"FEEDOPS_SECRETS_DIR": "", "FEEDOPS_CALENDAR": "always-open", "FEEDOPS_CHANNEL": "ctp",
                "FEEDOPS_FLOW_DIR": str(tmp_path / "flow"), "FEEDOPS_CACHE_DIR": str(cache),
                "FEEDOPS_SINK_URL": f"file:{tmp_path / 'feed'}", "FEEDOPS_WORKER_LISTEN": f"127.0.0.1:{free_port()}",
                "CTP_PRIMARY_MD_FRONTS": f"tcp://127.0.0.1:{front_port}",
                "CTP_PRIMARY_TD_FRONTS": f"tcp://127.0.0.1:{front_port}",
                "CTP_PRIMARY_BROKER_ID": "9999", "CTP_PRIMARY_USER_ID": "u1", "CTP_PRIMARY_PASSWORD": "sentinel-pw-ctp1"})
    env.update(extra)
    return env


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=2) as resp:
        return json.load(resp)


def test_accept_then_close_counts_4097_and_stops_cleanly(ctp_env, tmp_path):
    server = AcceptThenClose()
    env = worker_env(ctp_env, tmp_path, server.port, FEEDOPS_DISCONNECT_STORM_COUNT="1000")
    base = f"http://{env['FEEDOPS_WORKER_LISTEN']}"
    proc = subprocess.Popen([sys.executable, str(CLI)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        status = wait_for(lambda: (s := get_json(base + "/status"))["front"]["disconnects"].get("4097", 0) >= 2 and s,
                          timeout=30, what="two 4097 disconnects")
        assert status["channel"] == "ctp" and status["front"]["logged_in"] is False
        with urllib.request.urlopen(base + "/metrics", timeout=2) as resp:
            metrics = resp.read().decode()
        assert 'feedops_disconnects_total{profile="primary",reason="4097"}' in metrics
        assert 'feedops_front_connected{profile="primary"} 0.0' in metrics
        assert server.accepted >= 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        server.close()
    assert proc.returncode == int(Worker.OK), err[-2000:]  # RegisterSpi(None) + Release(): no segfault
    assert "worker.stopped" in err and "Traceback" not in err
    assert "sentinel-pw-ctp1" not in out + err


def test_closed_port_fires_the_connect_watchdog(ctp_env, tmp_path):
    env = worker_env(ctp_env, tmp_path, free_port(), FEEDOPS_CONNECT_TIMEOUT_SECONDS="2")
    result = subprocess.run([sys.executable, str(CLI)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == int(Worker.NO_FRONT), result.stderr[-2000:]
    assert "worker.watchdog.no_connection" in result.stderr and "Traceback" not in result.stderr
    assert "CTP_PRIMARY_MD_FRONTS" in result.stderr


def test_disconnect_storm_exits_storm(ctp_env, tmp_path):
    server = AcceptThenClose()
    try:
        env = worker_env(ctp_env, tmp_path, server.port, FEEDOPS_DISCONNECT_STORM_COUNT="3")
        result = subprocess.run([sys.executable, str(CLI)], env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.close()
    assert result.returncode == int(Worker.STORM), result.stderr[-2000:]
    assert "disconnect storm: 3 disconnects" in result.stderr and "4097" in result.stderr


def test_real_struct_through_the_callback_copy(ctp_env):
    """A real struct through the production path: the callback's byte copy, the batch decode, the record."""
    code = (
        "import sys\n"
        "from feedops.ctpapi import load_api\n"
        "from feedops.worker.pipeline import TickQueue\n"
        "from feedops.worker.ticks import Normaliser, record_of\n"
        "from feedops.calendar import TradingCalendar\n"
        "md = load_api('ctp').mdapi\n"
        "f = md.CThostFtdcDepthMarketDataField()\n"
        "f.InstrumentID='rb2601'; f.ExchangeID='SHFE'; f.TradingDay='20261127'; f.ActionDay='20261127'\n"
        "f.UpdateTime='10:00:01'; f.UpdateMillisec=500; f.LastPrice=3200.0; f.Volume=7\n"
        "f.SettlementPrice=sys.float_info.max; f.BidPrice5=3190.0; f.BidVolume5=4\n"
        "q = TickQueue(4); q.offer(f); f.LastPrice=1.0\n"
        "r = record_of(Normaliser(TradingCalendar('exchange')).batch(*q.take(4)).records[0])\n"
        "print(r['instrument'], r['last'], r['volume'], r['settlement'], r['millisec'], r['bid5'], r['bid_volume5'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ctp_env, timeout=60)
    assert result.stdout.split() == ["rb2601", "3200.0", "7", "None", "500", "3190.0", "4"], result.stderr
