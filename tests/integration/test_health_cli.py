"""check_feed_health.py end to end against real servers: a real HTTP server serving
worker /status documents built to the schema, real Redis, Pushgateway and Prometheus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import jsonschema
import pytest

from conftest import ROOT, free_port, wait_for
from feedops.health import cli as CLI
from health_support import FakeWorker, schema, status_doc, universe, validate_report

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "scripts" / "operations" / "check_feed_health.py"
SENTINEL = "sentinel-Secret-4711"


@pytest.fixture
def env(tmp_path, monkeypatch):
    for var in [v for v in os.environ if v.startswith(("FEEDOPS_", "CTP_PRIMARY_", "CTP_BACKUP_"))]:
        monkeypatch.delenv(var)
    values = {"FEEDOPS_SECRETS_DIR": str(tmp_path), "FEEDOPS_STATE_DIR": str(tmp_path / "state"), "FEEDOPS_LOG_FORMAT": "json",
              "FEEDOPS_REDIS_STREAM_PREFIX": f"t{tmp_path.name[-12:]}"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def mark_premarket(env, ts=None):
    runs = os.path.join(env["FEEDOPS_STATE_DIR"], "runs")
    os.makedirs(runs, exist_ok=True)
    with open(os.path.join(runs, "premarket.last-success"), "w") as fh:
        json.dump({"ts": ts or time.time(), "env": "dev", "profile": "primary"}, fh)


@pytest.fixture
def worker():
    w = FakeWorker()
    yield w
    w.close()


def cli(capsys, *argv):
    code = CLI.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv):
    code, out, err = cli(capsys, *argv, "--format", "json")
    report = validate_report(json.loads(out))
    assert report["exitCode"] == code
    log_schema = schema("log-line.schema.json")
    for line in err.splitlines():  # every log line is one JSON object of the log format
        jsonschema.validate(json.loads(line), log_schema)
    return code, report, err


def statuses(report, key):
    return {e.get("componentId"): e["status"] for e in report["checks"][key]}


def pushed(pushgateway) -> str:
    with urllib.request.urlopen(f"{pushgateway.url}/metrics", timeout=5) as resp:
        return resp.read().decode()


def test_pass_pushes_outcome(env, worker, pushgateway, capsys):
    now = time.time()
    worker.serve(status_doc(universe(600, now), now=now))
    mark_premarket(env)
    code, report, _ = run_json(capsys, "--worker", worker.url, "--pushgateway", pushgateway.url, "--push-instance", "t-pass")
    assert code == 0, report["output"]
    assert report["status"] == "pass" and report["push"] == {"enabled": True, "url": pushgateway.url, "ok": True, "error": None}
    assert worker.requests == ["/status?instruments=1"]
    metrics = pushed(pushgateway)
    labels = 'checker="check_feed_health",instance="t-pass",job="feedops_check_feed_health"'
    assert f"feedops_check_status{{{labels}}} 0" in metrics
    assert f'feedops_check_observed_value{{check="coverage:ratio",{labels}}} 1' in metrics
    assert f'feedops_check_last_success_timestamp_seconds{{{labels},result="success"}}' in metrics


def test_coverage_dip_warns(env, worker, pushgateway, capsys):
    now = time.time()
    worker.serve(status_doc(universe(600, now, stale_every=25), now=now))
    mark_premarket(env)
    code, report, _ = run_json(capsys, "--worker", worker.url, "--pushgateway", pushgateway.url, "--push-instance", "t-warn")
    assert code == 1 and report["verdict"] == "WARNING"
    assert statuses(report, "coverage:ratio")["all"] == "warn"
    assert 'feedops_check_status{checker="check_feed_health",instance="t-warn",job="feedops_check_feed_health"} 1' in pushed(pushgateway)


def test_front_down_fails_and_keeps_last_success(env, worker, pushgateway, capsys):
    now = time.time()
    mark_premarket(env)
    worker.serve(status_doc(universe(60, now), now=now))
    assert run_json(capsys, "--worker", worker.url, "--pushgateway", pushgateway.url, "--push-instance", "t-fail")[0] == 0
    worker.serve(status_doc(universe(60, now), now=now, connected=False, logged_in=False))
    code, report, _ = run_json(capsys, "--worker", worker.url, "--pushgateway", pushgateway.url, "--push-instance", "t-fail")
    assert code == 2 and report["status"] == "fail"
    assert statuses(report, "front:connected") == {worker.url: "fail"}
    metrics = pushed(pushgateway)
    labels = 'checker="check_feed_health",instance="t-fail",job="feedops_check_feed_health"'
    assert f"feedops_check_status{{{labels}}} 2" in metrics
    assert f'feedops_check_last_success_timestamp_seconds{{{labels},result="success"}}' in metrics  # kept from the first run


def test_stale_feed_fails(env, worker, capsys):
    now = time.time()
    worker.serve(status_doc(universe(60, now), now=now))
    mark_premarket(env)
    code, report, _ = run_json(capsys, "--worker", worker.url, "--at", str(int(now + 300)))
    assert code == 2
    assert statuses(report, "staleness:newest-tick-age")["all"] == "fail"
    assert report["coverage"]["fresh"] == 0


def test_threshold_flags_override_settings(env, worker, capsys):
    now = time.time()
    worker.serve(status_doc(universe(600, now, stale_every=25), now=now))
    mark_premarket(env)
    code, report, _ = run_json(capsys, "--worker", worker.url, "--coverage-warn", "0.95", "--coverage-crit", "0.9")
    assert code == 0 and report["thresholds"]["coverage_warn_ratio"] == 0.95
    code, report, _ = run_json(capsys, "--worker", worker.url, "--coverage-warn", "0.99", "--coverage-crit", "0.97")
    assert code == 2


def test_shards_are_aggregated(env, capsys):
    now = time.time()
    rows = universe(600, now, stale_every=10)
    a, b = FakeWorker(), FakeWorker()
    try:
        a.serve(status_doc(rows[:300], now=now, shard="0/2"))
        b.serve(status_doc(rows[300:], now=now, shard="1/2"))
        mark_premarket(env)
        code, report, _ = run_json(capsys, "--worker", a.url, "--worker", b.url)
        assert report["coverage"]["open"] == 600 and report["coverage"]["fresh"] == 540
        assert set(statuses(report, "front:connected")) == {a.url, b.url}
        assert code == 2  # 90% < 98% warn; 0.90 is not below crit 0.90, but the per-exchange ratios are
        b.close()
        code, report, _ = run_json(capsys, "--worker", a.url, "--worker", b.url, "--coverage-crit", "0.5")
        assert code == 3 and statuses(report, "worker:reachable") == {b.url: "fail"}
        assert report["coverage"]["open"] == 300  # the reachable shard is still judged
    finally:
        a.close()


@pytest.mark.parametrize("body,code,reason", [
    (b"<html>oops</html>", 200, "not JSON"),
    (b'{"service": "something-else"}', 200, "not a feedops worker"),
    (b"{}", 500, "HTTP 500"),
])
def test_garbage_is_unknown(env, worker, capsys, body, code, reason):
    worker.serve(body).code = code
    rc, report, err = run_json(capsys, "--worker", worker.url)
    assert rc == 3 and report["verdict"] == "UNKNOWN"
    assert reason in report["checks"]["worker:reachable"][0]["output"]
    assert "health.source.unreachable" in err


def test_worker_down_is_unknown_without_traceback(env):
    port = free_port()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--worker", f"http://127.0.0.1:{port}", "--format", "nagios"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "LOCPATH": os.environ.get("LOCPATH", "")})
    assert proc.returncode == 3
    assert proc.stdout.startswith("FEEDOPS HEALTH UNKNOWN - ") and proc.stdout.count("\n") == 1
    assert "refused" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.parametrize("argv,needle", [
    (["--format", "xml"], "--format 'xml' is unknown"),
    (["--coverage-warn", "lots"], "--coverage-warn (FEEDOPS_COVERAGE_WARN_RATIO): must be a number"),
    (["--coverage-warn", "0.5", "--coverage-crit", "0.9"], "FEEDOPS_COVERAGE_CRIT_RATIO must not exceed"),
    (["--at", "yesterday"], "--at 'yesterday' is not a time"),
    (["--worker", "127.0.0.1:9108"], "not an http:// URL"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_arguments_are_unknown(env, capsys, argv, needle):
    code, out, err = cli(capsys, *argv)
    report = validate_report(json.loads(out))
    assert code == 3 and report["verdict"] == "UNKNOWN"
    assert needle in report["output"] and "\n" not in report["output"]
    assert needle in err


def test_bad_holiday_file_is_unknown(env, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "holidays.txt"
    bad.write_text("2026-10-01\n2026-10-32\n")
    monkeypatch.setenv("FEEDOPS_HOLIDAYS_FILE", str(bad))
    code, out, _ = cli(capsys, "--format", "text")
    assert code == 3
    assert f"holiday file {bad} line 2: '2026-10-32' is not a date" in out


def test_closed_market_at_is_not_judged(env, worker, monkeypatch, capsys):
    monkeypatch.setenv("FEEDOPS_CALENDAR", "exchange")
    import datetime as dt

    from feedops.calendar import BEIJING
    saturday_noon = dt.datetime(2026, 11, 28, 12, 0, tzinfo=BEIJING).timestamp()
    worker.serve(status_doc(universe(60, saturday_noon - 50000), now=saturday_noon, connected=False, logged_in=False))
    mark_premarket(env, saturday_noon - 60)
    code, report, _ = run_json(capsys, "--worker", worker.url, "--at", "2026-11-28T12:00:00+08:00")
    assert code == 0, report["output"]
    assert report["market"] == {"open": False, "calendar": "exchange", "tradingDay": "2026-11-30",
                                "beijingTime": "2026-11-28T12:00:00+08:00"}
    assert "coverage, staleness and throughput not judged" in report["checks"]["market:open"][0]["output"]


def _redis_groups(redis_server, prefix: str, entries: int):
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_server.url)
    stream = f"{prefix}:SHFE"
    for i in range(entries):
        client.xadd(stream, {"i": i})
    client.xgroup_create(stream, "reader", id="0")
    client.xgroup_create(stream, "caught-up", id="$")
    client.close()
    return stream


def test_consumer_lag_over_threshold_fails(env, worker, redis_server, capsys):
    now = time.time()
    worker.serve(status_doc(universe(60, now), now=now, sink_kind="redis"))
    mark_premarket(env)
    stream = _redis_groups(redis_server, env["FEEDOPS_REDIS_STREAM_PREFIX"], 20)
    code, report, _ = run_json(capsys, "--worker", worker.url, "--redis", redis_server.url, "--lag-warn", "5", "--lag-crit", "10")
    assert code == 2
    lag = {e["componentId"]: (e["status"], e["observedValue"]) for e in report["checks"]["redis:consumer-lag"]}
    assert lag == {f"{stream}/reader": ("fail", 20), f"{stream}/caught-up": ("pass", 0)}


def test_redis_down_is_unknown(env, worker, capsys):
    now = time.time()
    worker.serve(status_doc(universe(60, now), now=now))
    mark_premarket(env)
    code, report, _ = run_json(capsys, "--worker", worker.url, "--redis", f"redis://127.0.0.1:{free_port()}/0")
    assert code == 3
    assert "unreachable" in report["checks"]["redis:reachable"][0]["output"]


def test_failed_push_does_not_change_the_verdict(env, worker, capsys):
    now = time.time()
    worker.serve(status_doc(universe(60, now), now=now))
    mark_premarket(env)
    code, report, err = run_json(capsys, "--worker", worker.url, "--pushgateway", f"http://127.0.0.1:{free_port()}")
    assert code == 0 and report["status"] == "pass"
    assert report["push"]["ok"] is False and "push to" in report["push"]["error"]
    assert "health.push.failed" in err


def test_secrets_never_leak(env, worker, redis_server, pushgateway, tmp_path):
    now = time.time()
    worker.serve(status_doc(universe(60, now), now=now))
    (tmp_path / "CTP_PRIMARY_PASSWORD").write_text(SENTINEL)
    redis_url = redis_server.url.replace("redis://", f"redis://:{SENTINEL}@")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--worker", worker.url, "--redis", redis_url, "--pushgateway",
                           pushgateway.url, "--push-instance", "t-secret", "--format", "text"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "CTP_BACKUP_PASSWORD": SENTINEL})
    assert proc.returncode == 1, proc.stdout  # WARNING: no pre-market run recorded
    assert "redis:consumer-lag" in proc.stdout and "127.0.0.1" in proc.stdout  # the Redis URL is shown without its password
    for text in (proc.stdout, proc.stderr, pushed(pushgateway)):
        assert SENTINEL not in text


class _Exporter:
    """A real /metrics endpoint with the worker's metric names (what Prometheus scrapes)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

        from feedops import metric_names as mn

        self.registry = r = CollectorRegistry()
        Gauge(mn.FRONT_CONNECTED.name, "h", mn.FRONT_CONNECTED.labels, registry=r).labels("primary").set(1)
        Gauge(mn.LOGGED_IN.name, "h", mn.LOGGED_IN.labels, registry=r).labels("primary").set(1)
        Counter(mn.TICKS_RECEIVED.base, "h", mn.TICKS_RECEIVED.labels, registry=r).labels("SHFE").inc(1000)
        Histogram(mn.TICK_LATENCY.name, "h", mn.TICK_LATENCY.labels, registry=r).labels("SHFE").observe(0.01)
        Gauge(mn.SINK_UP.name, "h", registry=r).set(1)
        opened = Gauge(mn.INSTRUMENTS_OPEN.name, "h", mn.INSTRUMENTS_OPEN.labels, registry=r)
        fresh = Gauge(mn.INSTRUMENTS_FRESH.name, "h", mn.INSTRUMENTS_FRESH.labels, registry=r)
        opened.labels("SHFE", "futures").set(100)
        fresh.labels("SHFE", "futures").set(99)
        opened.labels("DCE", "options").set(50)
        fresh.labels("DCE", "options").set(40)
        self.last_tick = Gauge(mn.LAST_TICK_TIMESTAMP.name, "h", mn.LAST_TICK_TIMESTAMP.labels, registry=r).labels("SHFE")
        self.last_tick.set_to_current_time()
        self.port = free_port()
        self.server, self.thread = start_http_server(self.port, addr="127.0.0.1", registry=r)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_prometheus_source(env, prometheus_factory, capsys):
    exporter = _Exporter()
    try:
        prom = prometheus_factory(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs: [{{job_name: worker, static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]}}]\n")

        def scraped():
            exporter.last_tick.set_to_current_time()
            url = f"{prom.url}/api/v1/query?query=feedops_instruments_fresh"
            with urllib.request.urlopen(url, timeout=2) as resp:
                return len(json.loads(resp.read())["data"]["result"]) == 2

        wait_for(scraped, timeout=30, interval=0.3, what="Prometheus to scrape the exporter")
        mark_premarket(env)
        code, report, _ = run_json(capsys, "--prometheus", prom.url)
        assert report["coverage"]["open"] == 150 and report["coverage"]["fresh"] == 139
        assert statuses(report, "coverage:ratio") == {"all": "warn", "DCE": "fail", "SHFE": "pass"}
        assert statuses(report, "front:connected") == {f"127.0.0.1:{exporter.port}": "pass"}
        assert code == 2
        code, report, _ = run_json(capsys, "--prometheus", f"http://127.0.0.1:{free_port()}")
        assert code == 3 and "prometheus:reachable" in report["checks"]
    finally:
        exporter.close()


def test_nil_lag_warns(env, worker, redis_server, capsys):
    import redis as redis_lib

    now = time.time()
    worker.serve(status_doc(universe(60, now), now=now))
    mark_premarket(env)
    stream = _redis_groups(redis_server, env["FEEDOPS_REDIS_STREAM_PREFIX"], 3)
    client = redis_lib.Redis.from_url(redis_server.url)
    middle = client.xrange(stream)[1][0]
    client.xdel(stream, middle)  # an unread entry deleted in the middle: Redis can no longer tell the lag
    client.close()
    code, report, _ = run_json(capsys, "--worker", worker.url, "--redis", redis_server.url)
    assert code == 1
    entry = {e["componentId"]: e for e in report["checks"]["redis:consumer-lag"]}[f"{stream}/reader"]
    assert entry["status"] == "warn" and entry["observedValue"] is None and "lag unknown" in entry["output"]


def test_push_enabled_by_settings(env, worker, pushgateway, monkeypatch, capsys):
    now = time.time()
    worker.serve(status_doc(universe(60, now), now=now))
    mark_premarket(env)
    monkeypatch.setenv("FEEDOPS_PUSHGATEWAY_ENABLED", "true")
    monkeypatch.setenv("FEEDOPS_PUSHGATEWAY_URL", pushgateway.url)
    code, report, _ = run_json(capsys, "--worker", worker.url, "--push-instance", "t-settings")
    assert code == 0 and report["push"]["ok"] is True
    assert 'feedops_check_status{checker="check_feed_health",instance="t-settings",job="feedops_check_feed_health"} 0' in pushed(pushgateway)
    code, report, _ = run_json(capsys, "--worker", worker.url, "--no-push")
    assert report["push"] == {"enabled": False, "url": None, "ok": None, "error": None}


def test_text_and_nagios_formats(env, worker, capsys):
    now = time.time()
    worker.serve(status_doc(universe(600, now, stale_every=25), now=now))
    mark_premarket(env)
    code, out, _ = cli(capsys, "--worker", worker.url, "--format", "text")
    assert code == 1 and out.startswith("feedops health: WARNING (warn)")
    assert "EXCHANGE" in out and "WARN    coverage:ratio" in out
    code, out, _ = cli(capsys, "--worker", worker.url, "--format", "nagios")
    assert code == 1 and out.count("\n") == 1 and out.startswith("FEEDOPS HEALTH WARNING - ") and "| coverage=0.96;" in out


def test_internal_error_is_unknown_without_traceback(env, monkeypatch, capsys):
    import feedops.health.run as health_run

    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(health_run, "run", broken)
    code, out, err = cli(capsys)
    assert code == 3 and "internal error RuntimeError: boom" in json.loads(out)["output"]
    assert "Traceback" not in out + err


def test_no_premarket_skips_only_the_premarket_age(env, worker, capsys):
    """The runbook's own health step passes --no-premarket: its run is the one that records it."""
    now = time.time()
    worker.serve(status_doc(universe(60, now), now=now))
    code, report, _ = run_json(capsys, "--worker", worker.url, "--no-push")  # nothing recorded: warns
    assert code == 1 and statuses(report, "premarket:age") == {"premarket": "warn"}
    code, report, _ = run_json(capsys, "--worker", worker.url, "--no-push", "--no-premarket")
    assert code == 0, report["output"]
    assert "premarket:age" not in report["checks"] and "coverage:ratio" in report["checks"]


_HTTP_HEAD = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"


class _Trickler:
    """A real TCP server on 127.0.0.1 that sends ``head`` at once, then ``payload`` one byte every
    ``interval`` seconds: never silent long enough for a per-read socket timeout."""

    def __init__(self, payload: bytes, head: bytes = b"", interval: float = 1.0):
        import socket
        import threading

        self.head, self.payload, self.interval = head, payload, interval
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import threading

        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn):
        with conn:
            try:
                conn.sendall(self.head)
                for i in range(len(self.payload)):
                    if self.stop.wait(self.interval):
                        return
                    conn.sendall(self.payload[i:i + 1])
            except OSError:
                return

    def close(self):
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("head, payload", [(b"", _HTTP_HEAD + b" " * 40), (_HTTP_HEAD, b" " * 40)],
                         ids=["headers-trickle", "body-trickles"])
def test_a_trickling_server_holds_the_check_no_longer_than_the_timeout(env, capsys, head, payload):
    """Every read of a worker is bounded by --timeout in total, not per read: a server sending one byte a
    second (within the headers, or within the body) makes the check UNKNOWN after --timeout."""
    server = _Trickler(payload, head)
    try:
        started = time.monotonic()
        code, report, _ = run_json(capsys, "--worker", server.url, "--timeout", "1.5", "--no-premarket")
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert code == 3, report["output"]
    assert "no complete answer within --timeout 1.5s" in report["checks"]["worker:reachable"][0]["output"]
    assert elapsed < 1.5 + 5, f"the check took {elapsed:.1f}s with --timeout 1.5 against a {len(payload)} s answer"


def test_a_trickling_redis_holds_the_consumer_read_no_longer_than_its_timeout():
    """A server answering Redis commands one byte a second (never silent long enough for a per-read
    socket timeout) is cut off at the timeout: the consumer-group read is bounded in total."""
    from feedops.health.source_redis import read_consumer_groups
    from feedops.health.sources import SourceError

    server = _Trickler(b"+" + b"O" * 60 + b"\r\n")
    try:
        started = time.monotonic()
        with pytest.raises(SourceError) as caught:
            read_consumer_groups(f"redis://127.0.0.1:{server.port}/0", "feed", timeout=1.5)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert "no complete answer within 1.5s" in caught.value.reason
    assert elapsed < 1.5 + 5, f"the read took {elapsed:.1f}s with a 1.5 s timeout against a 64 s answer"


def test_a_trickling_pushgateway_holds_the_push_no_longer_than_its_timeout():
    """The push (a PUT and its answer) is bounded in total too: a Pushgateway answering one byte a second
    makes the push fail after its timeout, with the reason."""
    from prometheus_client import CollectorRegistry, Gauge

    from feedops.push import push

    registry = CollectorRegistry()
    Gauge("feedops_check_status", "h", registry=registry).set(0)
    server = _Trickler(b"HTTP/1.0 200 OK\r\nContent-Length: 40\r\n\r\n" + b" " * 40)
    try:
        started = time.monotonic()
        error = push(server.url, "feedops_check_feed_health", registry, timeout=1.5)
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert error is not None and "no complete answer within 1.5s" in error
    assert elapsed < 1.5 + 5, f"the push took {elapsed:.1f}s with a 1.5 s timeout against an 80 s answer"


def _dead_pid_record() -> dict:
    """A pid record (the runbook's format, lib/feedops/runbook/procs.py) of a process that has exited."""
    from feedops.runbook.procs import _start_ticks

    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    ticks = _start_ticks(proc.pid)
    proc.communicate(b"")
    assert ticks and _start_ticks(proc.pid) is None
    return {"pid": proc.pid, "start_ticks": ticks, "kind": "worker", "argv": [], "address": "127.0.0.1:1", "log": "x",
            "ts": 0}


def test_a_worker_that_should_run_and_does_not_is_critical(env, capsys):
    """The runbook's pid file says worker-0 runs; the process is gone and its port refuses: CRITICAL
    (worker:running fails), not UNKNOWN. Once the pid file is removed (stopped on purpose) it is UNKNOWN again."""
    from feedops.runbook.procs import _start_ticks

    pids = os.path.join(env["FEEDOPS_STATE_DIR"], "pids")
    os.makedirs(pids)
    with open(os.path.join(pids, "worker-0.pid"), "w") as fh:
        json.dump(_dead_pid_record(), fh)
    with open(os.path.join(pids, "worker-1.pid"), "w") as fh:  # this one runs: the test process itself
        json.dump({"pid": os.getpid(), "start_ticks": _start_ticks(os.getpid()), "address": "127.0.0.1:2"}, fh)
    url = f"http://127.0.0.1:{free_port()}"
    code, report, _ = run_json(capsys, "--worker", url, "--no-premarket")
    assert code == 2 and report["verdict"] == "CRITICAL", report["output"]
    assert statuses(report, "worker:running") == {"worker-0": "fail", "worker-1": "pass"}
    assert "worker-0 should be running" in report["output"]
    os.unlink(os.path.join(pids, "worker-0.pid"))
    code, report, _ = run_json(capsys, "--worker", url, "--no-premarket")
    assert code == 3 and statuses(report, "worker:running") == {"worker-1": "pass"}
    # worker-1's supervisor (the pid file's process) runs, but its child, the worker, is gone: being restarted
    supervisor = os.path.join(env["FEEDOPS_STATE_DIR"], "supervisor")
    os.makedirs(supervisor)
    with open(os.path.join(supervisor, "worker-1.json"), "w") as fh:
        json.dump({"restarts": 2, "failovers": 0, "last_exit": -9, "child_pid": _dead_pid_record()["pid"]}, fh)
    code, report, _ = run_json(capsys, "--worker", url, "--no-premarket")
    assert code == 2 and statuses(report, "worker:running") == {"worker-1": "fail"}
    assert "its supervisor runs but the worker does not (last exit -9, 2 restart(s)" in report["output"]
