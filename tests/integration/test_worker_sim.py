"""The worker end to end on ctp-sim (5,000 instruments): coverage, sinks and every sim fault.

One simulator process serves the module; faults are switched through its control
endpoint. Each test starts its own worker process (full_feed_subscription.py) with a
small batch interval, polls its /status with deadlines, and stops it by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from clock_support import child_environ
from conftest import ROOT, Server, free_port, wait_for
from feedops.calendar import HOLIDAYS_FILE, TradingCalendar, load_holidays
from feedops.drills.stack import fill_disk
from feedops.exitcodes import Check, Worker
from feedops.paths import SCHEMAS_DIR
from feedops.runbook import supervisor
from feedops.runbook.state import StateStore
from sink_support import duplicates, file_sink_contents, parse_lines

pytestmark = pytest.mark.integration
CLI = ROOT / "scripts" / "operations" / "full_feed_subscription.py"
SIM = ROOT / "scripts" / "operations" / "ctp_sim.py"
INSTRUMENTS = 5000
SENTINEL = "sentinel-pw-5e7d1c"
SCHEMA = json.loads((SCHEMAS_DIR / "worker-status.schema.json").read_text())
CREDENTIALS = {"CTP_PRIMARY_BROKER_ID": "9999", "CTP_PRIMARY_USER_ID": "feed-user", "CTP_PRIMARY_PASSWORD": SENTINEL,
               "CTP_PRIMARY_APP_ID": "feedops_test", "CTP_PRIMARY_AUTH_CODE": "sentinel-ac-0b1e"}


def base_env() -> dict[str, str]:
    env = child_environ()
    env.update(CREDENTIALS, FEEDOPS_SECRETS_DIR="", FEEDOPS_CALENDAR="always-open")
    return env


def http_json(url: str):
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


class Sim:
    def __init__(self, tmp: Path):
        self.port, self.control = free_port(), free_port()
        self.server = Server("ctp-sim", [sys.executable, str(SIM), "--listen", f"127.0.0.1:{self.port}", "--control",
                                         f"127.0.0.1:{self.control}", "--instruments", str(INSTRUMENTS), "--always-open",
                                         "--log-format", "json", "--log-level", "warning"],
                             self.port, tmp / "sim.log", env=base_env())
        self.control_url = f"http://127.0.0.1:{self.control}"
        wait_for(lambda: http_json(self.control_url + "/healthz")[0] == 200, timeout=30, what="ctp-sim")

    def fault(self, name: str, on: bool) -> None:
        request = urllib.request.Request(f"{self.control_url}/faults/{name}?on={1 if on else 0}", method="POST", data=b"")
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    s = Sim(tmp_path_factory.mktemp("sim"))
    yield s
    s.server.stop()


@pytest.fixture(autouse=True)
def _faults_off(request):
    yield
    if "sim" in request.fixturenames:
        sim = request.getfixturevalue("sim")
        for name in ("disconnect", "silent", "refuse_login", "flow_control", "dead_instruments", "replay", "date_quirks"):
            sim.fault(name, False)


class WorkerProc:
    def __init__(self, sim: Sim, tmp: Path, *args: str, preexec=None, supervised: bool = False, **env_extra: str):
        self.tmp = tmp
        self.listen = f"127.0.0.1:{free_port()}"
        self.url = f"http://{self.listen}"
        env = base_env()
        env.update({"FEEDOPS_CHANNEL": "sim", "FEEDOPS_FLOW_DIR": str(tmp / "flow"), "FEEDOPS_CACHE_DIR": str(tmp / "cache"),
                    "FEEDOPS_SINK_URL": f"file:{tmp / 'feed'}", "FEEDOPS_WORKER_LISTEN": self.listen,
                    "FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS": "0.05", "FEEDOPS_CONNECT_TIMEOUT_SECONDS": "5",
                    "FEEDOPS_RETRY_BACKOFF_SECONDS": "0.2", "FEEDOPS_LOG_FORMAT": "json",
                    "CTP_PRIMARY_MD_FRONTS": f"tcp://127.0.0.1:{sim.port}", "CTP_PRIMARY_TD_FRONTS": f"tcp://127.0.0.1:{sim.port}"})
        env.update(env_extra)
        self.log_path = tmp / f"worker-{self.listen.rsplit(':', 1)[1]}.log"
        self.log = open(self.log_path, "w")
        argv = [sys.executable, str(CLI), *args]
        if supervised:  # under the native runtime's supervisor, as the runbook starts it (self.proc is the supervisor)
            argv = supervisor.command("worker-0", "worker", argv)
            env.update(FEEDOPS_STATE_DIR=str(tmp / "state"), FEEDOPS_PUSHGATEWAY_ENABLED="false")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=preexec)

    def status(self, table: bool = False) -> dict:
        return http_json(self.url + "/status" + ("?instruments=1" if table else ""))[1]

    def wait_status(self, predicate, what: str, timeout: float = 30.0) -> dict:
        def check():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}: {self.output()[-2000:]}")
            status = self.status()
            return status if predicate(status) else None
        return wait_for(check, timeout=timeout, what=what)

    def wait_ready(self, timeout: float = 30.0) -> dict:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}: {self.output()[-2000:]}")
            return http_json(self.url + "/readyz")[0] == 200
        try:
            wait_for(ready, timeout=timeout, what="worker ready")
        except TimeoutError:
            raise AssertionError(f"worker not ready in {timeout} s: {self.output()[-3000:]}") from None
        return self.status()

    def metrics(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=3) as resp:
            return resp.read().decode()

    def wait_metric(self, prefix: str, predicate, timeout: float = 10.0) -> str:
        """Poll /metrics until the summed value of the series starting with ``prefix`` satisfies ``predicate``."""
        def check():
            text = self.metrics()
            return text if predicate(metric_value(text, prefix)) else None
        return wait_for(check, timeout=timeout, what=f"metric {prefix}")

    def wait_exit(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.log.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(30)

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text()

    def events(self) -> list[str]:
        return [json.loads(line)["event"] for line in self.output().splitlines() if line.startswith("{")]


@pytest.fixture
def workers():
    started: list[WorkerProc] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(10)


def start(workers, *args, **kw) -> WorkerProc:
    w = WorkerProc(*args, **kw)
    workers.append(w)
    return w


def metric_value(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_full_coverage_on_redis_then_clean_stop(sim, workers, tmp_path, redis_server):
    import redis as redis_lib

    prefix = f"test:{tmp_path.name}"
    w = start(workers, sim, tmp_path, "--sink", redis_server.url, FEEDOPS_REDIS_STREAM_PREFIX=prefix)
    w.wait_ready()
    status = w.wait_status(lambda s: s["coverage"]["ratio"] == 1.0, "full coverage")
    jsonschema.validate(status, SCHEMA)
    assert status["instruments"]["known"] == INSTRUMENTS
    assert status["instruments"]["acknowledged"] == INSTRUMENTS
    assert status["coverage"]["ratio"] == 1.0 and status["never_ticked"]["count"] == 0
    assert set(status["coverage"]["by_exchange"]) == {"CFFEX", "CZCE", "DCE", "GFEX", "INE", "SHFE"}
    assert status["sink"] == {**status["sink"], "kind": "redis", "up": True}
    table = w.status(table=True)
    jsonschema.validate(table, SCHEMA)
    assert len(table["instrument_table"]["instrument"]) == INSTRUMENTS
    text = w.metrics()
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if os.path.exists(promtool):
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    text = w.wait_metric('feedops_coverage_ratio{exchange="all"}', lambda v: v == 1.0)
    assert metric_value(text, "feedops_instruments_acknowledged{") == INSTRUMENTS
    # every published tick has its callback-to-sink latency in the pipeline histogram
    published = metric_value(text, "feedops_ticks_published_total{")
    assert published > 0
    assert metric_value(text, "feedops_pipeline_latency_seconds_count ") >= published
    assert w.stop() == int(Worker.OK)
    client = redis_lib.Redis.from_url(redis_server.url, decode_responses=True)
    streams = sorted(client.scan_iter(f"{prefix}:*"))
    assert streams == [f"{prefix}:{ex}" for ex in ("CFFEX", "CZCE", "DCE", "GFEX", "INE", "SHFE")]
    total = sum(client.xlen(s) for s in streams)
    stopped = [json.loads(line) for line in w.output().splitlines() if '"worker.stopped"' in line][0]
    assert total == stopped["published"] > 0  # drained and flushed: every published tick is in Redis
    _id, fields = client.xrange(f"{prefix}:SHFE", count=1)[0]
    tick = json.loads(fields["tick"])
    assert fields["instrument"] == tick["instrument"] and tick["exchange"] == "SHFE"
    assert {"trading_day", "action_day", "update_time", "millisec", "exchange_ts", "last", "volume"} <= set(tick)
    assert SENTINEL not in w.output()


def test_disconnect_fault_reconnects_logs_in_and_resubscribes(sim, workers, tmp_path):
    w = start(workers, sim, tmp_path)
    w.wait_ready()
    sim.fault("disconnect", True)
    w.wait_status(lambda s: s["front"]["disconnects"].get("4097", 0) >= 1 and not s["front"]["logged_in"], "disconnect")
    sim.fault("disconnect", False)
    status = w.wait_status(lambda s: s["front"]["logged_in"] and s["instruments"]["acknowledged"] == INSTRUMENTS,
                           "re-login and re-subscription")
    assert status["front"]["reconnects"] >= 1
    w.wait_ready()
    text = w.metrics()
    assert metric_value(text, 'feedops_reconnects_total{profile="primary"}') >= 1
    assert metric_value(text, 'feedops_disconnects_total{profile="primary",reason="4097"}') >= 1
    assert w.stop() == int(Worker.OK)
    assert w.events().count("worker.login.ok") >= 2


def test_refused_login_exits_login(sim, workers, tmp_path):
    sim.fault("refuse_login", True)
    w = start(workers, sim, tmp_path)
    assert w.wait_exit() == int(Worker.LOGIN)
    out = w.output()
    assert "worker.login.failed" in out and "CTP_PRIMARY_USER_ID" in out and "Traceback" not in out
    assert SENTINEL not in out


def test_flow_control_is_retried_and_counted(sim, workers, tmp_path):
    sim.fault("flow_control", True)
    w = start(workers, sim, tmp_path, "--max-retries", "20")
    wait_for(lambda: "worker.instruments.retry" in w.output(), timeout=20, what="a refused query")
    sim.fault("flow_control", False)
    status = w.wait_ready()
    assert status["rate_limit_incidents_total"] >= 1
    assert metric_value(w.metrics(), 'feedops_flow_control_refusals_total{reason="query_not_ready"}') >= 1
    assert w.stop() == int(Worker.OK)


def test_flow_control_forever_exits_instruments(sim, workers, tmp_path):
    sim.fault("flow_control", True)
    w = start(workers, sim, tmp_path, "--max-retries", "1", "--retry-backoff", "0.1")
    assert w.wait_exit() == int(Worker.INSTRUMENTS)
    assert "worker.instruments.failed" in w.output() and "FEEDOPS_MAX_RETRIES" in w.output()


def test_replay_is_dropped(sim, workers, tmp_path):
    w = start(workers, sim, tmp_path)
    w.wait_ready()
    sim.fault("replay", True)
    status = w.wait_status(lambda s: sum(s["ticks_dropped"].get(k, 0) for k in ("replay", "duplicate")) > 100,
                           "replayed ticks dropped")
    assert status["ticks_dropped"]
    assert metric_value(w.metrics(), 'feedops_ticks_dropped_total{reason="') > 100
    assert w.stop() == int(Worker.OK)
    keys = set()
    for path in (tmp_path / "feed").glob("*/ticks-0of1.jsonl"):
        for line in path.read_text().splitlines():
            t = json.loads(line)
            key = (t["instrument"], t["trading_day"], t["update_time"], t["millisec"], t["volume"])
            assert key not in keys, f"duplicate tick published: {key}"
            keys.add(key)
    assert len(keys) > INSTRUMENTS


def test_never_ticking_instruments_are_listed(sim, workers, tmp_path):
    sim.fault("dead_instruments", True)
    w = start(workers, sim, tmp_path, FEEDOPS_STALENESS_WINDOW_SECONDS="30")
    status = w.wait_status(lambda s: s["instruments"]["acknowledged"] == INSTRUMENTS and s["coverage"]["ratio"]
                           and s["coverage"]["ratio"] > 0.8, "coverage settles")
    status = w.wait_status(lambda s: s["never_ticked"]["count"] < INSTRUMENTS * 0.2, "live instruments ticked")
    assert 0.02 * INSTRUMENTS < status["never_ticked"]["count"] < 0.2 * INSTRUMENTS
    assert status["coverage"]["ratio"] < 1.0 and status["never_ticked"]["sample"]
    w.wait_metric("feedops_instruments_never_ticked{", lambda v: 0 < v < 0.2 * INSTRUMENTS)
    assert w.stop() == int(Worker.OK)


def test_date_quirks_are_normalised(sim, workers, tmp_path):
    sim.fault("date_quirks", True)
    w = start(workers, sim, tmp_path)
    w.wait_ready()
    w.wait_status(lambda s: s["throughput"]["ticks_published_total"] > 3 * INSTRUMENTS, "ticks")
    assert w.stop() == int(Worker.OK)
    by_exchange: dict[str, set] = {}
    for path in (tmp_path / "feed").glob("*/ticks-0of1.jsonl"):
        for line in path.read_text().splitlines()[-4000:]:
            t = json.loads(line)
            by_exchange.setdefault(t["exchange"], set()).add((t["trading_day"], t["action_day"], path.parent.name))
    # in a night session every exchange's ticks carry the next trading day and the calendar date
    days = {pair for pairs in by_exchange.values() for pair in pairs}
    assert len({d[0] for d in days}) == 1, days
    assert all(td == folder for td, _ad, folder in days)
    shfe = next(iter(by_exchange["SHFE"]))
    assert by_exchange["CZCE"] == {shfe} and by_exchange["DCE"] == {shfe}


def test_silent_front_exits_no_front(sim, workers, tmp_path):
    sim.fault("silent", True)
    w = start(workers, sim, tmp_path, FEEDOPS_CONNECT_TIMEOUT_SECONDS="2")
    assert w.wait_exit() == int(Worker.NO_FRONT)
    assert "worker.front.none" in w.output() or "worker.watchdog.no_connection" in w.output()


def _own_redis(tmp_path: Path) -> tuple[list[str], int]:
    """argv and port of a redis-server of the test's own, on a free loopback port (stopped and restarted by it)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        pytest.skip("redis-server not installed: apt-get install redis-server")
    port = free_port()
    return [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir",
            str(tmp_path)], port


def test_redis_down_buffers_counts_and_recovers(sim, workers, tmp_path):
    argv, port = _own_redis(tmp_path)
    redis_proc = Server("redis", argv, port, tmp_path / "redis1.log")
    try:
        url = f"redis://127.0.0.1:{port}/0"
        w = start(workers, sim, tmp_path, "--sink", url, FEEDOPS_SINK_BUFFER_MAX="5000")
        w.wait_ready()
        redis_proc.stop()
        status = w.wait_status(lambda s: not s["sink"]["up"] and s["sink"]["dropped_total"] > 0, "sink down, dropping")
        assert status["sink"]["buffered"] <= 5000 and status["sink"]["errors_total"] >= 1
        assert any("sink down" in r for r in status["ready_reasons"])
        text = w.wait_metric("feedops_sink_dropped_total ", lambda v: v > 0)
        assert metric_value(text, "feedops_sink_up ") == 0 and metric_value(text, "feedops_sink_errors_total{") > 0
        redis_proc = Server("redis", argv, port, tmp_path / "redis2.log")
        w.wait_status(lambda s: s["sink"]["up"] and s["sink"]["buffered"] == 0, "sink recovered", timeout=30)
        w.wait_ready()
        # ticks were dropped while Redis was down: the stop says so (exit 18 and the count at ERROR), not "0"
        assert w.stop() == int(Worker.TICKS_LOST)
        assert "worker.sink.up" in w.events()
        [lost] = [json.loads(line) for line in w.output().splitlines() if '"worker.ticks.lost"' in line]
        print(f"\nSCENARIO redis-down-buffer-overflow: published={_stopped_line(w)['published']} lost={lost['lost']} "
              f"exit={w.proc.returncode}")
        assert lost["level"] == "error" and lost["sink_buffer_full"] == _stopped_line(w)["sink_dropped"] > 0
    finally:
        redis_proc.stop()


def test_ticks_lost_are_critical_while_recent_and_clear_without_a_restart(sim, workers, tmp_path):
    """Redis stops under a worker with a small sink buffer: ticks are dropped and the health check says
    CRITICAL (ticks:lost), not WARNING; Redis comes back and once a whole window (the worker's staleness
    window, 5 s here) passes without a loss, ticks:lost passes again, without a restart."""
    argv, port = _own_redis(tmp_path)
    redis_proc = Server("redis", argv, port, tmp_path / "redis1.log")
    try:
        w = start(workers, sim, tmp_path, "--sink", f"redis://127.0.0.1:{port}/0", FEEDOPS_SINK_BUFFER_MAX="2000",
                  FEEDOPS_STALENESS_WINDOW_SECONDS="5")
        w.wait_status(lambda s: s["front"]["logged_in"] and s["sink"]["up"] and s["throughput"]["ticks_published_total"],
                      "ticks published")
        redis_proc.stop()
        w.wait_status(lambda s: s["ticks_lost_recent"]["sink_dropped"] > 0, "ticks dropped at the sink")
        worst = _health_report(w)
        assert worst["verdict"] == "CRITICAL", worst["output"]
        [lost] = worst["checks"]["ticks:lost"]
        assert lost["status"] == "fail" and lost["observedValue"] > 0 and "last 5s" in lost["output"]
        redis_proc = Server("redis", argv, port, tmp_path / "redis2.log")
        back = time.monotonic()
        status = w.wait_status(lambda s: s["sink"]["up"] and s["ticks_lost_recent"]["sink_dropped"] == 0
                               and s["ticks_lost_recent"]["queue_dropped"] == 0, "a whole window without a loss")
        cleared = time.monotonic() - back
        report = _health_report(w)
        assert [e["status"] for e in report["checks"]["ticks:lost"]] == ["pass"], report["output"]
        assert status["sink"]["dropped_total"] > 0  # the totals since start remain: only the window cleared
        print(f"\nSCENARIO ticks-lost-window: dropped={status['sink']['dropped_total']} worst={worst['verdict']} "
              f"(ticks:lost {lost['observedValue']}) after={report['verdict']} cleared={cleared:.2f}s after Redis returned")
        assert w.stop() == int(Worker.TICKS_LOST)
    finally:
        redis_proc.stop()


def test_probe_reports_json_and_exit_ok(sim, tmp_path):
    env = base_env()
    env.update({"FEEDOPS_CHANNEL": "sim", "FEEDOPS_FLOW_DIR": str(tmp_path / "flow"), "FEEDOPS_CACHE_DIR": str(tmp_path / "c"),
                "CTP_PRIMARY_MD_FRONTS": f"tcp://127.0.0.1:{sim.port}", "CTP_PRIMARY_TD_FRONTS": f"tcp://127.0.0.1:{sim.port}"})
    result = subprocess.run([sys.executable, str(CLI), "--probe"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == int(Check.OK), result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["status"] == "pass" and report["logged_in"] and report["ticked"] == report["sample"] == 20
    sim.fault("refuse_login", True)
    result = subprocess.run([sys.executable, str(CLI), "--probe"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == int(Check.CRITICAL)
    assert json.loads(result.stdout)["status"] == "fail"


def test_wrong_password_exits_login_without_leaking_it(sim, workers, tmp_path):
    """The sim checks the credentials it was started with: a wrong password is refused."""
    wrong = "wrong-pw-sentinel-91"
    w = start(workers, sim, tmp_path, CTP_PRIMARY_PASSWORD=wrong)
    assert w.wait_exit() == int(Worker.LOGIN)
    out = w.output()
    assert "worker.login.failed" in out and "Traceback" not in out
    assert wrong not in out and SENTINEL not in out


def test_unreachable_redis_at_start_keeps_the_feed_running(sim, workers, tmp_path):
    """Redis down from the start: the worker logs in, subscribes, buffers and says so."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    w = start(workers, sim, tmp_path, FEEDOPS_SINK_URL=dead)
    status = w.wait_status(lambda s: s["instruments"]["acknowledged"] == INSTRUMENTS and s["sink"]["buffered"] > 0,
                           "subscribed while the sink is down")
    assert status["sink"]["up"] is False and status["front"]["logged_in"]
    w.wait_metric("feedops_sink_up", lambda v: v == 0)
    w.wait_metric("feedops_sink_errors_total", lambda v: v >= 1)
    assert w.proc.poll() is None  # still running
    # SIGTERM while the sink is unreachable: the buffered ticks cannot be flushed; the exit code and an ERROR
    # line with the count say so
    assert w.stop() == int(Worker.TICKS_LOST)
    assert "Traceback" not in w.output()
    stopped = _stopped_line(w)
    [lost] = [json.loads(line) for line in w.output().splitlines() if '"worker.ticks.lost"' in line]
    print(f"\nSCENARIO sigterm-sink-unreachable: published={stopped['published']} lost={lost['lost']} "
          f"exit={w.proc.returncode}")
    assert lost["level"] == "error" and lost["lost"] == lost["sink_unflushed"] == stopped["sink_buffered"] > 0


@pytest.mark.dates
def test_sim_worker_and_health_agree_on_the_exchange_calendar_at_the_date(workers, tmp_path, clock_at):
    """The exchange calendar end to end at the run's date (make test-dates moves it): the sim ticks only
    the products in session, the worker files them under the trading day of that date, and the health
    check judges coverage when a session is open and says the market is closed otherwise."""
    calendar = TradingCalendar("exchange", load_holidays(HOLIDAYS_FILE))
    trading_day = calendar.trading_day(clock_at).strftime("%Y%m%d")
    is_open = calendar.any_open(clock_at)
    env = {**base_env(), "FEEDOPS_CALENDAR": "exchange"}
    port, control = free_port(), free_port()
    sim = Server("ctp-sim", [sys.executable, str(SIM), "--listen", f"127.0.0.1:{port}", "--control", f"127.0.0.1:{control}",
                             "--instruments", "600", "--log-format", "json", "--log-level", "warning"],
                 port, tmp_path / "sim-exchange.log", env=env)
    try:
        wait_for(lambda: http_json(f"http://127.0.0.1:{control}/healthz")[0] == 200, timeout=30, what="ctp-sim")
        w = start(workers, SimpleNamespace(port=port), tmp_path, FEEDOPS_CALENDAR="exchange")  # WorkerProc needs the port
        status = w.wait_status(lambda s: s["instruments"]["acknowledged"] == 600, "subscribed")
        assert status["trading_day"] == trading_day
        if is_open:
            status = w.wait_status(lambda s: s["coverage"]["ratio"] == 1.0, "full coverage of what is open")
        in_session = sum(b["open"] for b in status["coverage"]["by_exchange"].values())
        assert (in_session > 0) is is_open, status["coverage"]
        health = subprocess.run([sys.executable, str(ROOT / "scripts" / "operations" / "check_feed_health.py"),
                                 "--worker", w.url, "--no-premarket", "--no-redis", "--format", "json", "--no-push"],
                                env={**env, "FEEDOPS_WORKER_URLS": w.url}, capture_output=True, text=True, timeout=60)
        report = json.loads(health.stdout)
        assert report["market"]["open"] is is_open and report["market"]["tradingDay"].replace("-", "") == trading_day
        assert health.returncode in (Check.OK, Check.WARNING), health.stdout  # a warning: December's calendar horizon
        assert w.stop() == int(Worker.OK)
        days = sorted(p.name for p in (tmp_path / "feed").iterdir()) if (tmp_path / "feed").exists() else []
        assert days == ([trading_day] if is_open else []), days
    finally:
        sim.stop()


# ---------------------------------------------------------------------------- exactly once to the file sink
def _sim_status(sim: Sim) -> dict:
    return http_json(sim.control_url + "/status")[1]


def _quiesce(sim: Sim, w: WorkerProc, sent_before: int) -> int:
    """Stop the sim's ticks (fault "silent") and wait until the worker received every tick sent to it;
    return how many that is."""
    sim.fault("silent", True)
    sent = _sim_status(sim)["ticks_sent"] - sent_before
    w.wait_status(lambda s: s["throughput"]["ticks_received_total"] >= sent, f"the worker receives all {sent} ticks")
    return sent


def _health_report(w: WorkerProc) -> dict:
    """check_feed_health.py's JSON report on this worker right now."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "operations" / "check_feed_health.py"), "--worker",
                           w.url, "--no-redis", "--no-push", "--no-premarket", "--format", "json"], env=base_env(),
                          capture_output=True, text=True, timeout=60)
    report = json.loads(done.stdout)
    assert report["exitCode"] == done.returncode
    return report


def _health_verdict(w: WorkerProc) -> str:
    """check_feed_health.py's verdict on this worker right now (its exit code's name)."""
    return _health_report(w)["verdict"]


def _outage(sim: Sim, w: WorkerProc, sent_before: int, begin, end, buffered: int) -> tuple[dict, float, int, dict, dict]:
    """A sink outage under a running worker: ``begin`` it, wait until the sink is down with more than ``buffered``
    ticks waiting, ``end`` it, wait until the backlog is written; then stop the sim's ticks and the worker (exit 0).
    Return the status at the worst moment, the recovery time (s), the ticks sent, the last status and the
    worker.stopped line."""
    begin()
    try:
        worst = w.wait_status(lambda s: not s["sink"]["up"] and s["sink"]["buffered"] > buffered, "sink down, buffering")
        worst["health_verdict"] = _health_verdict(w)  # what the health check says at the worst moment (reported)
    finally:
        end()
    ended = time.monotonic()
    w.wait_status(lambda s: s["sink"]["up"] and s["sink"]["buffered"] == 0, "backlog written after the outage")
    recovery = time.monotonic() - ended
    assert any("sink down" in r for r in worst["ready_reasons"])
    sent = _quiesce(sim, w, sent_before)
    status = w.status()
    assert w.stop() == int(Worker.OK)
    return worst, recovery, sent, status, _stopped_line(w)


def _stopped_line(w: WorkerProc) -> dict:
    return [json.loads(line) for line in w.output().splitlines() if '"worker.stopped"' in line][-1]


@pytest.fixture
def small_disk(tmp_path):
    """A real 160 MB tmpfs that the test fills and empties (root only; skipped where mount is refused). Sized for
    schema-2 records (~1.1 kB a line: five levels)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(mount_point)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


#: The file size limit of the "fsize" variant: the feed file reaches it a few seconds into the run.
FSIZE_LIMIT = 12 << 20


def _file_size_limit() -> None:
    """preexec_fn of the "fsize" variant: writes past FSIZE_LIMIT fail with EFBIG (SIGXFSZ ignored, as Python
    does anyway); the soft limit only, so that the test can lift it (resource.prlimit) while the worker runs."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, resource.RLIM_INFINITY))


@pytest.mark.parametrize("disk", ["tmpfs", "fsize"])
def test_disk_full_then_freed_leaves_no_duplicate_and_no_torn_line(sim, workers, tmp_path, disk, request):
    """The disk fills under the worker, stays full while ticks buffer, then empties: every tick received is on
    disk once, whole, and the worker's published count is the number of lines. ``tmpfs``: a real 160 MB file
    system filled with a ballast file (ENOSPC), then the ballast deleted (root only). ``fsize``: the worker runs
    under a file size limit (EFBIG once the feed file reaches it), then the limit of its writer is lifted."""
    import resource

    if disk == "tmpfs":
        mount = request.getfixturevalue("small_disk")
        feed, preexec, ballasts = mount / "feed", None, []
        begin, end = lambda: ballasts.append(fill_disk(mount)), lambda: ballasts.pop().unlink()  # the disk empties
    else:
        feed, preexec = tmp_path / "feed", _file_size_limit
        begin = lambda: None  # noqa: E731 - the feed file reaches the limit by itself
        end = lambda: resource.prlimit(_writer_pid(w.proc.pid), resource.RLIMIT_FSIZE,  # noqa: E731
                                       (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    sent_before = _sim_status(sim)["ticks_sent"]
    w = start(workers, sim, tmp_path, preexec=preexec, FEEDOPS_SINK_URL=f"file:{feed}", FEEDOPS_SINK_BUFFER_MAX="400000")
    w.wait_ready()
    w.wait_status(lambda s: s["throughput"]["ticks_published_total"] > 10_000, "ticks on disk")
    worst, recovery, sent, status, stopped = _outage(sim, w, sent_before, begin, end, 10_000)
    assert worst["sink"]["errors_total"] >= 1
    records, torn = file_sink_contents(feed)
    dropped = sum(status["ticks_dropped"].values())
    print(f"\nSCENARIO disk-full ({disk}): sent={sent} published={stopped['published']} in_sink={len(records)} "
          f"duplicates={duplicates(records)} torn={torn} worst={worst['health_verdict']}, not ready "
          f"({worst['ready_reasons']}), buffered {worst['sink']['buffered']} recovery={recovery:.2f}s "
          f"dropped_by_pipeline={dropped}")
    assert torn == 0 and duplicates(records) == 0
    assert stopped["published"] == len(records)  # published == lines on disk
    assert status["throughput"]["ticks_received_total"] == sent
    assert sent == len(records) + dropped and stopped["sink_dropped"] == 0 and stopped["queue_dropped"] == 0
    events = w.events()
    assert events.count("worker.sink.down") == 1 and events.count("worker.sink.up") == 1  # one outage, said once
    assert "worker.sink.rolled_back" in events  # a batch was cut part-way by the full disk and truncated back


def _writer_pid(worker_pid: int) -> int:
    children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split()
    for pid in children:
        if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text():  # (not multiprocessing's resource tracker)
            return int(pid)
    raise AssertionError(f"no sink writer among the children {children} of {worker_pid}")


def test_restart_after_sigkill_does_not_glue_two_ticks(sim, workers, tmp_path):
    """The writer and the worker are SIGKILLed mid-stream; the tail is torn (by the kill, or by hand when the kill
    fell between two records); the next worker cuts it off into a side file before writing."""
    feed = tmp_path / "feed"
    first = start(workers, sim, tmp_path)
    first.wait_ready()
    first.wait_status(lambda s: s["throughput"]["ticks_published_total"] > 20_000, "ticks on disk")
    os.kill(_writer_pid(first.proc.pid), signal.SIGKILL)
    first.proc.kill()
    first.wait_exit(30)
    worst = _health_verdict(first)  # the worker is gone (reported)
    [path] = feed.glob("*/ticks-0of1.jsonl")
    torn_by_the_kill = not path.read_bytes().endswith(b"\n")
    if not torn_by_the_kill:  # the kill fell between two writes: tear the tail as a crash would
        whole = path.read_bytes().rsplit(b"\n", 2)[-2]
        with open(path, "ab") as fh:
            fh.write(whole[: len(whole) // 2])
    before, torn_before = parse_lines(path)
    assert torn_before == 1
    restarted = time.monotonic()
    sent_before = _sim_status(sim)["ticks_sent"]  # the first worker's session is closed: what follows is the second's
    second = start(workers, sim, tmp_path)
    second.wait_status(lambda s: s["throughput"]["ticks_published_total"] > 1000, "the restarted worker writes")
    recovery = time.monotonic() - restarted
    sent = _quiesce(sim, second, sent_before)
    status = second.status()
    assert second.stop() == int(Worker.OK)
    stopped = _stopped_line(second)
    records, torn = file_sink_contents(feed)
    print(f"\nSCENARIO sigkill-restart: sent={sent} published={len(before)}+{stopped['published']} "
          f"in_sink={len(records)} duplicates={duplicates(records)} torn={torn} "
          f"(torn before restart: {torn_before}, by the kill: {torn_by_the_kill}) worst={worst} "
          f"recovery={recovery:.2f}s")
    assert torn == 0 and duplicates(records) == 0
    assert status["throughput"]["ticks_received_total"] == sent
    assert stopped["published"] + sum(status["ticks_dropped"].values()) == sent
    assert records[:len(before)] == before and len(records) == len(before) + stopped["published"]
    [side] = path.parent.glob("ticks-0of1.jsonl.torn-*")
    assert side.stat().st_size > 0
    torn_lines = [json.loads(line) for line in second.output().splitlines() if '"worker.sink.torn_tail"' in line]
    assert len(torn_lines) == 1 and torn_lines[0]["level"] == "error" and torn_lines[0]["quarantine"] == str(side)


def _redis_ticks(url: str, prefix: str) -> list[dict]:
    import redis as redis_lib

    client = redis_lib.Redis.from_url(url, decode_responses=True)
    return [json.loads(fields["tick"]) for stream in sorted(client.scan_iter(f"{prefix}:*"))
            for _, fields in client.xrange(stream)]


def test_redis_stall_past_the_socket_timeout_adds_no_duplicate(sim, workers, tmp_path):
    """redis-server (this test's own) stopped with SIGSTOP past the 2 s socket timeout while ticks flow: the batch
    in flight runs when it resumes, the worker re-sends it with the same sequence numbers, Redis refuses it."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        pytest.skip("redis-server not installed: apt-get install redis-server")
    port = free_port()
    redis_proc = Server("redis", [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
                                  "no", "--dir", str(tmp_path)], port, tmp_path / "redis.log")
    url, prefix = f"redis://127.0.0.1:{port}/0", "stall"
    try:
        wait_for(lambda: _redis_ticks(url, prefix) == [], what="redis")
        sent_before = _sim_status(sim)["ticks_sent"]
        w = start(workers, sim, tmp_path, "--sink", url, FEEDOPS_REDIS_STREAM_PREFIX=prefix)
        w.wait_ready()
        w.wait_status(lambda s: s["throughput"]["ticks_published_total"] > 10_000, "ticks in Redis")
        worst, recovery, sent, status, stopped = _outage(sim, w, sent_before,
                                                         lambda: os.kill(redis_proc.pid, signal.SIGSTOP),
                                                         lambda: os.kill(redis_proc.pid, signal.SIGCONT), 0)
        ticks = _redis_ticks(url, prefix)
        dropped = sum(status["ticks_dropped"].values())
        print(f"\nSCENARIO redis-stall: sent={sent} published={stopped['published']} in_sink={len(ticks)} "
              f"duplicates={duplicates(ticks)} torn=0 worst={worst['health_verdict']}, not ready ({worst['ready_reasons']}), buffered "
              f"{worst['sink']['buffered']} recovery={recovery:.2f}s")
        assert duplicates(ticks) == 0 and stopped["published"] == len(ticks)
        assert status["throughput"]["ticks_received_total"] == sent == len(ticks) + dropped
        assert stopped["sink_dropped"] == 0 and stopped["queue_dropped"] == 0
        assert "worker.sink.resend_ignored" in w.events()  # the stalled batch did run, and was not added twice
    finally:
        redis_proc.stop()


# ---------------------------------------------------------------------------- subscriptions heal themselves
def test_subscriptions_heal_after_a_long_silent_front(sim, workers, tmp_path):
    """The front goes silent long enough for every subscription to fail (the no-tick watchdog re-subscribes,
    nothing is acknowledged), then answers again: subscribed, acknowledged, failed, /status, the metrics and
    readiness are right again without a restart; the failures are one log line with the count, not one per
    instrument. Sim-sent, worker-published and the file sink reconcile with no duplicate and no torn line."""
    sent_before = _sim_status(sim)["ticks_sent"]
    w = start(workers, sim, tmp_path, FEEDOPS_NO_TICK_TIMEOUT_SECONDS="2", FEEDOPS_MAX_RETRIES="1",
              FEEDOPS_RETRY_BACKOFF_MAX_SECONDS="3")
    w.wait_ready()
    sim.fault("silent", True)
    worst = w.wait_status(lambda s: s["instruments"]["failed"] == INSTRUMENTS, "every subscription failed", timeout=60)
    assert worst["instruments"]["acknowledged"] == 0 and not worst["ready"]
    worst_verdict = _health_verdict(w)
    # long silent: retry rounds come and go unanswered while the front stays silent
    w.wait_status(lambda s: s["instruments"]["failed"] == INSTRUMENTS and '"worker.subscribe.retried"' in w.output(),
                  "a retry round over while the front is silent", timeout=60)
    sim.fault("silent", False)
    off = time.monotonic()
    healed = w.wait_status(lambda s: s["instruments"]["acknowledged"] == INSTRUMENTS and s["ready"]
                           and s["instruments"]["subscribed"] == INSTRUMENTS and s["instruments"]["failed"] == 0,
                           "subscriptions healed after the front answers again", timeout=60)
    recovery = time.monotonic() - off
    assert healed["subscription_failed"] == []
    w.wait_metric("feedops_instruments_acknowledged{", lambda v: v == INSTRUMENTS)
    w.wait_metric("feedops_instruments_subscribed{", lambda v: v == INSTRUMENTS)
    healed_report = _health_report(w)
    healed_verdict = healed_report["verdict"]
    sent = _quiesce(sim, w, sent_before)
    status = w.status()
    assert w.stop() == int(Worker.OK)
    records, torn = file_sink_contents(tmp_path / "feed")
    published, received = status["throughput"]["ticks_published_total"], status["throughput"]["ticks_received_total"]
    print(f"\nSCENARIO silent-front-heals: sent={sent} received={received} published={published} in_sink={len(records)} "
          f"duplicates={duplicates(records)} torn={torn} worst={worst_verdict} (0 of {INSTRUMENTS} acknowledged, "
          f"{worst['instruments']['failed']} failed) healed={healed_verdict} recovery={recovery:.2f}s")
    assert received == sent and published + sum(status["ticks_dropped"].values()) == received
    assert len(records) == published and torn == 0 and duplicates(records) == 0
    failed_lines = [json.loads(line) for line in w.output().splitlines() if '"worker.subscribe.failed"' in line]
    assert 1 <= len(failed_lines) <= 3, f"{len(failed_lines)} worker.subscribe.failed lines"
    assert sum(line["failed"] for line in failed_lines) == INSTRUMENTS
    # healed: nothing fails and the subscription state passes (the sim's rate, ~1,100 ticks/s for 5,000
    # instruments, is below the snapshot ceiling's warning floor: throughput may warn in any run of this sim)
    assert healed_report["exitCode"] <= 1, healed_report["output"]
    assert [e["status"] for e in healed_report["checks"]["instruments:known"]] == ["pass"]


# ---------------------------------------------------------------------------- the instrument list is checked
def _listed(w: WorkerProc) -> dict:
    return w.status()["instrument_list"]


@pytest.mark.parametrize("forged", [False, True], ids=["truncated", "truncated-and-resealed"])
def test_a_truncated_instrument_cache_is_not_trusted(sim, workers, tmp_path, forged):
    """A worker writes today's instrument cache; it is cut to 10 of its instruments, still well-formed JSON.
    ``truncated``: the count and checksum written with it no longer match; ``truncated-and-resealed``: they are
    recomputed too, but the previous day's list (5,000) is the expectation. Either way the restarted worker does
    not trust the cache, queries the front again and subscribes every instrument; the health check judges the list.
    Sim-sent, published and the file sink reconcile with no duplicate and no torn line."""
    from feedops.worker import instruments as im

    sent_before = _sim_status(sim)["ticks_sent"]
    first = start(workers, sim, tmp_path)
    first.wait_ready()
    assert _listed(first)["source"] == "query" and _listed(first)["listed"] == INSTRUMENTS
    sent = _quiesce(sim, first, sent_before)
    dropped = sum(first.status()["ticks_dropped"].values())
    assert first.stop() == int(Worker.OK)
    sim.fault("silent", False)
    [cache] = (tmp_path / "cache").glob("instruments-sim-primary-*.json")
    doc = json.loads(cache.read_text())
    if forged:
        earlier = cache.with_name("instruments-sim-primary-20000103.json")
        im.write_cache(earlier, "20000103", doc["instruments"], None)
        im.write_cache(cache, doc["trading_day"], doc["instruments"][:10], None)
    else:
        doc["instruments"] = doc["instruments"][:10]
        cache.write_text(json.dumps(doc))
    sent_before = _sim_status(sim)["ticks_sent"]
    second = start(workers, sim, tmp_path)
    status = second.wait_ready()
    listed = _listed(second)
    assert listed["source"] == "query" and listed["requeried"] and listed["suspicious"] is None
    assert status["instruments"]["known"] == INSTRUMENTS and status["instruments"]["acknowledged"] == INSTRUMENTS
    events = second.events()
    assert ("worker.instruments.suspicious" if forged else "worker.instruments.cache_bad") in events
    assert "worker.instruments.cached" not in events
    report = _health_report(second)
    assert [e["status"] for e in report["checks"]["instruments:list"]] == ["pass"]
    assert im.read_cache(cache)[0][:10] == [tuple(r) for r in doc["instruments"][:10]]  # rewritten whole
    assert len(im.read_cache(cache)[0]) == INSTRUMENTS
    sent += _quiesce(sim, second, sent_before)
    dropped += sum(second.status()["ticks_dropped"].values())
    assert second.stop() == int(Worker.OK)
    records, torn = file_sink_contents(tmp_path / "feed")
    published = sum(_stopped_line(w)["published"] for w in (first, second))
    first_published = _stopped_line(first)["published"]
    print(f"\nSCENARIO truncated-cache ({'resealed' if forged else 'checksum'}): sent={sent} published={published} "
          f"in_sink={len(records)} duplicates={duplicates(records)} torn={torn} dropped_by_pipeline={dropped} "
          f"worst=the cache refused, {listed['listed']} re-queried, instruments:list pass "
          f"(first run published {first_published})")
    assert len(records) == published and torn == 0 and duplicates(records) == 0
    assert published + dropped == sent


def test_a_front_answering_a_suspicious_list_is_flagged_and_judged_critical(sim, workers, tmp_path):
    """The previous day listed far more than the front answers today (twice): the list is used, flagged in
    /status and cached with the flag, and the health check's instruments:list fails."""
    from feedops.worker import instruments as im

    cache_dir = tmp_path / "cache"
    big = [[f"zz{i:05d}", "SHFE", "zz", "1"] for i in range(3 * INSTRUMENTS)]
    im.write_cache(cache_dir / "instruments-sim-primary-20000103.json", "20000103", big, None)
    w = start(workers, sim, tmp_path)
    status = w.wait_ready()
    listed = status["instrument_list"]
    assert listed["source"] == "query" and listed["expected"] == 3 * INSTRUMENTS and listed["expected_day"] == "20000103"
    assert f"{INSTRUMENTS} instruments, {3 * INSTRUMENTS} on 20000103" in listed["suspicious"]
    report = _health_report(w)
    assert report["verdict"] == "CRITICAL"
    assert [e["status"] for e in report["checks"]["instruments:list"]] == ["fail"]
    lines = [json.loads(x) for x in w.output().splitlines() if '"worker.instruments.suspicious"' in x]
    assert [x["level"] for x in lines] == ["warning", "error"]
    assert w.stop() == int(Worker.OK)
    [today] = [p for p in cache_dir.glob("instruments-sim-primary-*.json") if "20000103" not in p.name]
    assert im.read_cache(today)[1] == listed["suspicious"]  # never the next day's expectation


# ---------------------------------------------------------------------------- dedupe across a restart / failover
BACKUP_CREDENTIALS = {key.replace("PRIMARY", "BACKUP"): value for key, value in CREDENTIALS.items()}
DEDUPE_REASONS = ("replay", "duplicate", "backwards_volume")


@pytest.mark.parametrize("sink, how", [("file", "restart"), ("redis", "failover")])
def test_a_replaying_front_after_a_restart_or_failover_adds_nothing(sim, workers, tmp_path, sink, how, request):
    """A worker runs, the sim goes quiet and the worker stops (exit 0); the sim's replay fault is switched on and a
    new worker starts (``restart``: the same profile; ``failover``: the backup profile, as the supervisor's
    failover does). The front replays the last ticks of every instrument at subscription: the new worker, its
    deduper seeded from the sink's last records, drops every one already in the sink. Sim-sent = received by the
    two workers; published = in the sink; 0 duplicates, 0 torn."""
    if sink == "file":
        args, extra, read = (), {}, lambda: file_sink_contents(tmp_path / "feed")
    else:
        server = request.getfixturevalue("redis_server")
        prefix = f"resume-{how}"
        args, extra = ("--sink", server.url), {"FEEDOPS_REDIS_STREAM_PREFIX": prefix}
        read = lambda: (_redis_ticks(server.url, prefix), 0)  # noqa: E731 - stream entries are whole
    # the replay arrives as one burst: the sim's whole kept history (up to 20 ticks x 5,000 instruments, growing
    # with the module's sim's age): a queue that holds it whole, so that neither a loaded machine nor the tests
    # that ran before turn the burst into queue_full drops (exit 18) and hide what is tested here
    env = {**BACKUP_CREDENTIALS, "CTP_BACKUP_MD_FRONTS": f"tcp://127.0.0.1:{sim.port}",
           "CTP_BACKUP_TD_FRONTS": f"tcp://127.0.0.1:{sim.port}", "FEEDOPS_QUEUE_MAX": "300000", **extra}
    sent_before = _sim_status(sim)["ticks_sent"]
    first = start(workers, sim, tmp_path, *args, **env)
    first.wait_ready()
    first.wait_status(lambda s: s["throughput"]["ticks_published_total"] > 20_000, "ticks in the sink")
    received_first = _quiesce(sim, first, sent_before)
    assert first.stop() == int(Worker.OK)
    published_first = _stopped_line(first)["published"]
    before, _ = read()
    worst = _health_verdict(first)  # nothing runs (reported)
    sim.fault("replay", True)
    sim.fault("silent", False)
    sent_between = _sim_status(sim)["ticks_sent"]
    restarted = time.monotonic()
    second = start(workers, sim, tmp_path, *args, *(("--profile", "backup") if how == "failover" else ()), **env)
    second.wait_ready()
    recovery = time.monotonic() - restarted
    second.wait_status(lambda s: sum(s["ticks_dropped"].get(k, 0) for k in DEDUPE_REASONS) > 1000,
                       "the replay dropped")
    received_second = _quiesce(sim, second, sent_between)
    status = second.status()
    assert second.stop() == int(Worker.OK), [line for line in second.output().splitlines() if "ticks.lost" in line]
    stopped = _stopped_line(second)
    records, torn = read()
    dropped = status["ticks_dropped"]
    deduped = sum(dropped.get(k, 0) for k in DEDUPE_REASONS)
    [resumed] = [json.loads(line) for line in second.output().splitlines() if '"worker.dedupe.resumed"' in line]
    print(f"\nSCENARIO replay-after-{how} ({sink}): sent={received_first + received_second} "
          f"published={published_first}+{stopped['published']} in_sink={len(records)} duplicates={duplicates(records)} "
          f"torn={torn} replayed_dropped={deduped} seeded={resumed['seeded']} worst={worst} recovery={recovery:.2f}s")
    assert torn == 0 and duplicates(records) == 0
    assert published_first == len(before) and published_first + stopped["published"] == len(records)
    assert status["throughput"]["ticks_received_total"] == received_second
    assert stopped["published"] + sum(dropped.values()) == received_second
    assert resumed["seeded"] == len({t["instrument"] for t in before})  # every instrument in the sink was seeded


# ---------------------------------------------------------------------------- the supervisor (native runtime)
def _child(tmp: Path) -> dict:
    return supervisor.read_record(StateStore(tmp / "state"), "worker-0")


def _stopped_lines(w: WorkerProc) -> list[dict]:
    return [json.loads(line) for line in w.output().splitlines() if '"worker.stopped"' in line]


def test_the_supervisor_restarts_a_sigkilled_worker(sim, workers, tmp_path):
    """The worker under its supervisor is SIGKILLed mid-stream: started again after the first backoff (1 s,
    docs/ops/supervisor.md), ready again, its deduper seeded from the file; 0 duplicates, 0 torn; the ticks the
    killed process held are the only ones missing, and the restart is counted in the state dir."""
    feed = tmp_path / "feed"
    sent_before = _sim_status(sim)["ticks_sent"]
    w = start(workers, sim, tmp_path, "--profile", "primary", supervised=True)
    w.wait_ready()
    w.wait_status(lambda s: s["throughput"]["ticks_published_total"] > 20_000, "ticks on disk")
    first = _child(tmp_path)["child_pid"]
    killed = time.monotonic()
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: _child(tmp_path)["child_pid"] not in (None, first), timeout=30, what="a new worker process")
    worst = _health_verdict(w)  # right after the kill (reported)
    w.wait_ready()
    recovery = time.monotonic() - killed
    record = _child(tmp_path)
    restart_delay = record["started_ts"] - record["last_exit_ts"]
    w.wait_status(lambda s: s["throughput"]["ticks_published_total"] > 1000, "the restarted worker writes")
    sent = _quiesce_total(sim, w, sent_before)
    status = w.status()
    assert w.stop() == int(Worker.OK)  # SIGTERM to the supervisor: passed on, the worker stops, no restart
    [stopped] = _stopped_lines(w)  # the killed one never wrote its line
    records, torn = file_sink_contents(feed)
    first_published = len(records) - stopped["published"]
    held = sent - first_published - status["throughput"]["ticks_received_total"]
    print(f"\nSCENARIO supervisor-sigkill: sent={sent} published={first_published}+{stopped['published']} "
          f"in_sink={len(records)} duplicates={duplicates(records)} torn={torn} lost_in_killed_process={held} "
          f"worst={worst} restart_delay={restart_delay:.2f}s recovery={recovery:.2f}s restarts={record['restarts']}")
    assert torn == 0 and duplicates(records) == 0
    assert record["restarts"] == 1 and record["last_exit"] == -signal.SIGKILL
    assert restart_delay <= supervisor.BACKOFF_FIRST_SECONDS + 1.0  # docs/ops/supervisor.md: within 2 s
    assert first_published > 20_000 and held >= 0
    assert stopped["published"] + sum(status["ticks_dropped"].values()) == status["throughput"]["ticks_received_total"]
    assert "runbook.supervisor.restart" in w.events() and w.events().count("runbook.supervisor.stopped") == 1


def _quiesce_total(sim: Sim, w: WorkerProc, sent_before: int) -> int:
    """Stop the sim's ticks; wait until the running worker has received all (its count stops moving: the worker
    that was killed received an unknown share of them); return the ticks sent since ``sent_before``."""
    sim.fault("silent", True)
    sent = _sim_status(sim)["ticks_sent"] - sent_before
    last = [-1]

    def settled():
        received = w.status()["throughput"]["ticks_received_total"]
        done, last[0] = received == last[0], received
        return done
    wait_for(settled, timeout=30, what="the worker receives what was sent", interval=0.5)
    return sent


def test_repeated_storms_fail_over_to_the_backup_profile(sim, workers, tmp_path):
    """The primary front drops every connection (ctp-sim ``disconnect``): the worker exits 15 (STORM), is restarted,
    storms again; after FEEDOPS_FAILOVER_AFTER_FAILURES=2 its supervisor makes backup active (ledger entry
    ``auto-failover``) and the worker runs on the backup front (a second ctp-sim). Sent by both fronts = in the
    sink + what each run reported lost; 0 duplicates, 0 torn."""
    (tmp_path / "backup-sim").mkdir()
    backup = Sim(tmp_path / "backup-sim")
    try:
        env = {**BACKUP_CREDENTIALS, "CTP_BACKUP_MD_FRONTS": f"tcp://127.0.0.1:{backup.port}",
               "CTP_BACKUP_TD_FRONTS": f"tcp://127.0.0.1:{backup.port}", "FEEDOPS_AUTO_FAILOVER": "true",
               "FEEDOPS_FAILOVER_AFTER_FAILURES": "2"}
        sent_primary, sent_backup = _sim_status(sim)["ticks_sent"], _sim_status(backup)["ticks_sent"]
        w = start(workers, sim, tmp_path, "--profile", "primary", supervised=True, **env)
        w.wait_ready()
        w.wait_status(lambda s: s["throughput"]["ticks_published_total"] > 10_000, "ticks on disk")
        sent = _quiesce(sim, w, sent_primary)  # the primary goes quiet first: what it sent is then exact
        before_storm = w.status()
        stormed = time.monotonic()
        sim.fault("disconnect", True)
        worst = w.wait_status(lambda s: not s["front"]["connected"], "the front drops the worker", timeout=30)
        worst_verdict = _health_verdict(w)
        w.wait_status(lambda s: s["profile"] == "backup" and s["front"]["logged_in"], "running on backup", timeout=90)
        w.wait_ready()
        recovery = time.monotonic() - stormed
        sim.fault("disconnect", False)
        assert _sim_status(sim)["ticks_sent"] - sent_primary == sent  # nothing more came from the primary
        sent_b = _quiesce(backup, w, sent_backup)  # the backup front served this worker only
        status = w.status()
        assert w.stop() == int(Worker.OK)
        runs = _stopped_lines(w)
        records, torn = file_sink_contents(tmp_path / "feed")
        lost = sum(json.loads(line)["lost"] for line in w.output().splitlines() if '"worker.ticks.lost"' in line)
        dropped = sum(status["ticks_dropped"].values())
        state = StateStore(tmp_path / "state")
        record = _child(tmp_path)
        print(f"\nSCENARIO storm-failover: sent={sent}+{sent_b} published={'+'.join(str(r['published']) for r in runs)} "
              f"in_sink={len(records)} duplicates={duplicates(records)} torn={torn} lost={lost} dropped_on_backup={status['ticks_dropped']} "
              f"worst={worst_verdict} (front connected={worst['front']['connected']}) recovery={recovery:.2f}s "
              f"restarts={record['restarts']} failovers={record['failovers']}")
        assert torn == 0 and duplicates(records) == 0
        assert sum(r["published"] for r in runs) == len(records)
        dropped_before = sum(before_storm["ticks_dropped"].values())
        assert before_storm["throughput"]["ticks_received_total"] == sent == runs[0]["published"] + dropped_before
        assert status["throughput"]["ticks_received_total"] == sent_b == runs[-1]["published"] + dropped
        assert lost == 0 and sum(r["published"] for r in runs[1:-1]) == 0  # the storming runs received nothing
        assert state.active_profile() == "backup" and record["failovers"] == 1 and record["restarts"] >= 2
        entry = [e for e in state.ledger() if e["kind"] == "profile"][-1]
        assert (entry["reason"], entry["from"], entry["profile"], entry["exit_code"]) == \
            ("auto-failover", "primary", "backup", int(Worker.STORM))
    finally:
        backup.server.stop()
