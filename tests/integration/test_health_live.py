"""check_feed_health.py against a live worker on ctp-sim (real processes on loopback).

One ctp-sim front and one full_feed_subscription.py worker (Redis sink on the real
redis_server fixture) per module; every verdict is reached through a real fault:

* pass: the healthy feed;
* warn: ctp-sim's dead_instruments fault (a share of instruments stops ticking), so
  coverage dips below the warning threshold but stays above the critical one;
* fail: a consumer group lags behind the worker's Redis stream; the sim process is
  frozen (SIGSTOP: connected but silent, a stale feed); the front drops every
  connection (disconnect fault);
* unknown: the worker is stopped.

Each run's report is validated against the schema and its outcome is read back from
the real Pushgateway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from clock_support import child_environ
from conftest import ROOT, Server, free_port, http_ok, wait_for
from health_support import validate_report

pytestmark = pytest.mark.integration

SCRIPTS = ROOT / "scripts" / "operations"
SENTINEL = "LiveSntl9k"  # CTP auth codes are at most 16 characters
DEAD_SHARE = "0.05"  # coverage about 0.95: below the 0.98 warning threshold


@pytest.fixture(scope="module")
def live(tmp_path_factory, redis_server):
    missing = [s for s in ("ctp_sim.py", "full_feed_subscription.py") if not (SCRIPTS / s).exists()]
    if missing:
        pytest.skip(f"the live health tests need {', '.join(missing)}")
    tmp = tmp_path_factory.mktemp("health-live")
    secrets = tmp / "secrets"
    secrets.mkdir(mode=0o700)
    for var in ("CTP_PRIMARY_PASSWORD", "CTP_PRIMARY_AUTH_CODE", "CTP_BACKUP_PASSWORD", "CTP_BACKUP_AUTH_CODE"):
        (secrets / var).write_text(f"{SENTINEL}{var[4]}{var[-1]}")
    front, control, backup, worker_port = free_port(), free_port(), free_port(), free_port()
    env = child_environ(("FEEDOPS_", "CTP_PRIMARY_", "CTP_BACKUP_"))
    env.update({
        "LOCPATH": str(ROOT / ".venv" / "locale"), "FEEDOPS_ENV": "dev", "FEEDOPS_CALENDAR": "always-open",
        "FEEDOPS_SECRETS_DIR": str(secrets), "FEEDOPS_STATE_DIR": str(tmp / "state"),
        "FEEDOPS_FLOW_DIR": str(tmp / "flow"), "FEEDOPS_CACHE_DIR": str(tmp / "cache"),
        "FEEDOPS_SINK_URL": redis_server.url, "FEEDOPS_REDIS_STREAM_PREFIX": f"live{front}",
        "FEEDOPS_WORKER_LISTEN": f"127.0.0.1:{worker_port}", "FEEDOPS_WORKER_URLS": f"http://127.0.0.1:{worker_port}",
        "CTP_PRIMARY_MD_FRONTS": f"tcp://127.0.0.1:{front}", "CTP_PRIMARY_TD_FRONTS": f"tcp://127.0.0.1:{front}",
        "CTP_BACKUP_MD_FRONTS": f"tcp://127.0.0.1:{backup}", "CTP_BACKUP_TD_FRONTS": f"tcp://127.0.0.1:{backup}",
        "FEEDOPS_SIM_INSTRUMENTS": "300", "FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS": "0", "FEEDOPS_LOG_FORMAT": "json",
    })
    sim = Server("ctp-sim", [sys.executable, str(SCRIPTS / "ctp_sim.py"), "--listen", f"127.0.0.1:{front}",
                             "--control", f"127.0.0.1:{control}", "--dead-share", DEAD_SHARE], front, tmp / "sim.log", env=env)
    sim.control = f"http://127.0.0.1:{control}"
    worker = Server("worker", [sys.executable, str(SCRIPTS / "full_feed_subscription.py")], worker_port, tmp / "worker.log", env=env)
    try:
        wait_for(lambda: http_ok(f"{worker.url}/readyz"), timeout=60, interval=0.2, what="the worker to be ready")
        state_runs = tmp / "state" / "runs"
        state_runs.mkdir(parents=True, exist_ok=True)
        (state_runs / "premarket.last-success").write_text(json.dumps({"ts": time.time(), "env": "dev", "profile": "primary"}))
        yield {"env": env, "sim": sim, "worker": worker, "redis": redis_server}
    finally:
        for srv in (worker, sim):
            if srv.proc.poll() is None:
                os.kill(srv.pid, signal.SIGCONT)
            srv.stop()
        for srv in (worker, sim):
            assert SENTINEL not in srv.output(), f"a secret leaked into the {srv.name} log"


def check(live, pushgateway, instance: str, *args: str) -> tuple[int, dict]:
    proc = subprocess.run([sys.executable, str(SCRIPTS / "check_feed_health.py"), "--format", "json", "--pushgateway",
                           pushgateway.url, "--push-instance", instance, "--latency-warn", "1.5", "--latency-crit", "5", *args],
                          env=live["env"], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr and SENTINEL not in proc.stdout + proc.stderr
    report = validate_report(json.loads(proc.stdout))
    assert report["exitCode"] == proc.returncode and report["push"]["ok"] is True
    return proc.returncode, report


def until(live, pushgateway, instance: str, code: int, *args: str, timeout: float = 30, want=None) -> dict:
    """Run the check until it exits with ``code`` and ``want(report)`` holds (the feed needs a
    moment to react to a fault; a loaded machine may add an unrelated warning meanwhile)."""
    seen: list = []

    def attempt():
        rc, report = check(live, pushgateway, instance, *args)
        seen[:] = [rc, report["output"]]
        return report if rc == code and (want is None or want(report)) else None

    try:
        return wait_for(attempt, timeout=timeout, interval=0.3, what=f"exit code {code}")
    except TimeoutError:
        pytest.fail(f"check_feed_health did not exit {code} within {timeout}s; last: {seen}")


def pushed_status(pushgateway, instance: str) -> float:
    with urllib.request.urlopen(f"{pushgateway.url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    prefix = f'feedops_check_status{{checker="check_feed_health",instance="{instance}",job="feedops_check_feed_health"}} '
    return float(next(line for line in text.splitlines() if line.startswith(prefix))[len(prefix):])


def statuses(report, key):
    return {e.get("componentId"): e["status"] for e in report["checks"][key]}


def sim_fault(live, name: str, on: bool) -> None:
    req = urllib.request.Request(f"{live['sim'].control}/faults/{name}?on={int(on)}", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def test_live_pass(live, pushgateway):
    report = until(live, pushgateway, "live-pass", 0)
    assert report["coverage"]["open"] == 300 and report["coverage"]["ratio"] == 1.0
    assert statuses(report, "front:connected") == {live["worker"].url: "pass"}
    assert statuses(report, "redis:consumer-lag") == {live["redis"].url: "pass"}  # no consumer group yet
    assert pushed_status(pushgateway, "live-pass") == 0


def test_live_coverage_dip_warns(live, pushgateway):
    sim_fault(live, "dead_instruments", True)
    try:
        # 300 instruments: a small exchange can dip far below the overall ratio, so the critical
        # threshold is lowered; the overall ratio crossing the warning threshold is what is tested
        report = until(live, pushgateway, "live-warn", 1, "--window", "3", "--coverage-crit", "0.5",
                       want=lambda r: statuses(r, "coverage:ratio")["all"] == "warn")
        ratio = report["checks"]["coverage:ratio"][0]
        assert ratio["componentId"] == "all", ratio
        assert ratio["status"] == "warn", report["output"]
        assert 0.9 <= ratio["observedValue"] < 0.98
        assert pushed_status(pushgateway, "live-warn") == 1
    finally:
        sim_fault(live, "dead_instruments", False)
    until(live, pushgateway, "live-warn", 0, "--window", "3")


def test_live_consumer_lag_fails(live, pushgateway):
    import redis as redis_lib

    client = redis_lib.Redis.from_url(live["redis"].url)
    prefix = live["env"]["FEEDOPS_REDIS_STREAM_PREFIX"]
    stream = f"{prefix}:SHFE"
    wait_for(lambda: client.xlen(stream) > 50, timeout=20, what="ticks in the worker's SHFE stream")
    client.xgroup_create(stream, "slow-consumer", id="0")
    try:
        report = until(live, pushgateway, "live-lag", 2, "--lag-warn", "10", "--lag-crit", "50",
                       want=lambda r: "fail" in statuses(r, "redis:consumer-lag").values())
        lag = {e["componentId"]: e for e in report["checks"]["redis:consumer-lag"]}[f"{stream}/slow-consumer"]
        assert lag["status"] == "fail" and lag["observedValue"] > 50
        assert pushed_status(pushgateway, "live-lag") == 2
    finally:
        client.xgroup_destroy(stream, "slow-consumer")
        client.close()


def test_live_stale_feed_fails(live, pushgateway):
    sim = live["sim"]
    os.kill(sim.pid, signal.SIGSTOP)  # the front stays connected but sends nothing
    try:
        report = until(live, pushgateway, "live-stale", 2, "--window", "600", "--staleness-warn", "1", "--staleness-crit", "2",
                       want=lambda r: statuses(r, "staleness:newest-tick-age")["all"] == "fail")
        assert statuses(report, "staleness:newest-tick-age")["all"] == "fail"
        assert pushed_status(pushgateway, "live-stale") == 2
    finally:
        os.kill(sim.pid, signal.SIGCONT)
    until(live, pushgateway, "live-stale", 0)


def test_live_front_down_fails(live, pushgateway):
    sim_fault(live, "disconnect", True)
    try:
        report = until(live, pushgateway, "live-front", 2, want=lambda r: statuses(r, "front:connected")[live["worker"].url] == "fail")
        assert statuses(report, "front:connected") == {live["worker"].url: "fail"}
        assert pushed_status(pushgateway, "live-front") == 2
    finally:
        sim_fault(live, "disconnect", False)


def test_live_worker_down_is_unknown(live, pushgateway):
    live["worker"].stop()
    code, report = check(live, pushgateway, "live-unknown")
    assert code == 3 and report["verdict"] == "UNKNOWN"
    assert statuses(report, "worker:reachable") == {live["worker"].url: "fail"}
    assert pushed_status(pushgateway, "live-unknown") == 3
