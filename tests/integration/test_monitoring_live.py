"""The monitoring stack against a live feed: every rule and panel query evaluated by a real
Prometheus, every metric they name found in a live scrape, and a real fault notified through
a real Alertmanager (all servers on free 127.0.0.1 ports, stopped by PID).

One stack per module:

* ctp-sim (one front, its control port serving /metrics), a private redis-server, the worker
  (full_feed_subscription.py) with the Redis sink, a consumer group that has read some entries;
* prometheus-redis-exporter checking the worker's streams, a Pushgateway that check_feed_health,
  validate_env and the runbook's outcome record push to;
* Prometheus with the native configuration rendered by feedops.monitoring.prometheus_config
  (1 s scrape and evaluation intervals) and the repo's rule files;
* Alertmanager with the repo's configuration, every receiver pointed at a webhook receiver this
  test runs, groups sent after 1 s instead of waiting.

Rules and dashboards are read from the tree (monitoring/prometheus/rules/*.yml, the dashboards'
panel queries), so the checks grow with them. While the repo has no rule file at all, the fault
test loads a stand-in rule named ``FRONT_DOWN_ALERT`` from the test's temp dir; once rule files
exist, the repo's own alert of that name is required.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, Server, free_port, http_ok, wait_for
from feedops import metric_names
from feedops.monitoring import dashboard_queries, prometheus_config
from feedops.runbook import binaries as installed
from feedops.runbook import monitoring as native
from feedops.settings import load_settings
from webhook_support import WebhookReceiver

pytestmark = pytest.mark.integration

#: The repo's alert for a market-data front that went away (monitoring/prometheus/rules): the
#: fault test stops the ctp-sim front and waits for it. (The worker-down alert is gated on the
#: Beijing session window, i.e. on the wall clock, so a test cannot rely on it firing.)
FRONT_DOWN_ALERT = "FeedNotLoggedIn"
#: The dead man's switch: always firing, so it reaches the webhook once Alertmanager is up.
WATCHDOG_ALERT = "Watchdog"
RULES_DIR = ROOT / "monitoring" / "prometheus" / "rules"
DASHBOARDS_DIR = ROOT / "monitoring" / "grafana" / "dashboards"
SCRIPTS = ROOT / "scripts" / "operations"
INTERVALS = prometheus_config.Intervals(scrape="1s", evaluation="1s", worker_scrape="1s")
SENTINEL = "MonSntl4v"  # CTP auth codes are at most 16 characters
INSTRUMENTS = 300
CONSUMER_GROUP = "feedops-live-test"
#: Runbook modes whose outcome the test records (start_live_env.sh MODES): panels show each.
RUNBOOK_MODES = ("premarket", "restart", "shutdown", "failover", "rollback", "drill", "rotate")

#: Metrics that have no series in a short healthy run, and why. A panel or rule whose query
#: returns nothing is accepted only when every metric it names is listed here (or it compares
#: with an earlier day through ``offset``); the metric must still be declared by a live scrape.
NO_DATA_METRICS = {
    "feedops_login_failures_total": "no login is refused in a healthy run",
    "feedops_flow_control_refusals_total": "ctp-sim refuses no query unless its flow-control fault is on",
    "feedops_sim_flow_control_refusals_total": "ctp-sim refuses no query unless its flow-control fault is on",
    "feedops_watchdog_fired_total": "no watchdog fires in a healthy run",
    "feedops_subscribe_failures_total": "every subscription is acknowledged",
    "feedops_ticks_dropped_total": "the pipeline drops nothing (no duplicate, replay or invalid tick) in a clean run",
    "feedops_queue_dropped_total": "the callback queue never overflows at this rate",
    "feedops_sink_dropped_total": "the sink never drops while Redis is up",
    "feedops_sink_errors_total": "Redis stays up",
    "feedops_disconnects_total": "the front does not disconnect before the fault test",
    "feedops_reconnects_total": "the front does not disconnect before the fault test",
    "feedops_calendar_known_until_timestamp_seconds": "absent on the always-open calendar the test feed runs",
    "feedops_instruments_never_ticked": "every instrument ticks within seconds (the gauge has no series while none is left)",
}
#: Metrics a rule or panel may name that no process of this test exposes, and why (each must
#: still be declared in feedops.metric_names).
NOT_EXPOSED_HERE = {
    "feedops_calendar_known_until_timestamp_seconds": "the worker exports it on the exchange calendar only; the test "
                                                      "feed runs always-open so that it is live at any hour",
    "feedops_supervisor_restarts_total": "the runbook's supervisor pushes it when it restarts a component; this test "
                                         "starts no supervisor (tests/unit/test_runbook_supervisor.py and the runbook "
                                         "e2e test see it pushed and scraped)",
}
#: Functions and operators whose empty result is the healthy answer (alert-style queries).
EMPTY_IS_HEALTHY = re.compile(r"\babsent(_over_time)?\s*\(")


# ------------------------------------------------------------------ small clients
def get_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def prom(stack, path: str, **params):
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    doc = get_json(f"{stack['prometheus'].url}{path}{query}")
    assert doc["status"] == "success", doc
    return doc["data"]


def instant(stack, expr: str) -> tuple[str | None, list]:
    """(error, result) of an instant query; an HTTP 400/422 carries Prometheus's error text."""
    url = f"{stack['prometheus'].url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        doc = get_json(url)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            return json.loads(body).get("error", body), []
        except ValueError:
            return body, []
    if doc.get("status") != "success":
        return doc.get("error", "no error text"), []
    result = doc["data"]["result"]
    return None, result if isinstance(result, list) else [result]


def scrape_family_names(url: str) -> set[str]:
    """Every metric family a live /metrics page declares (# TYPE), with the series names each
    type produces: a labelled counter that was never incremented is declared but has no sample."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode(errors="replace")
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind == "counter":
                names.update({name + "_total", name.removesuffix("_total"), name.removesuffix("_total") + "_created"})
            elif kind in ("histogram", "summary"):
                names.update({name + s for s in ("_bucket", "_sum", "_count", "_created")})
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


# ------------------------------------------------------------------ PromQL
def metric_names_in(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (parsed with promql-parser)."""
    promql_parser = pytest.importorskip("promql_parser", reason="pip install -e '.[test]' (promql-parser)")
    found: set[str] = set()

    def walk(node) -> None:
        kind = type(node).__name__
        if kind == "VectorSelector":
            name = node.name or next((m.value for m in node.matchers.matchers if m.name == "__name__"), None)
            if name:
                found.add(name)
            return
        for attr in ("expr", "lhs", "rhs", "param", "vector_selector", "args"):
            child = getattr(node, attr, None)
            for item in child if isinstance(child, list) else [child]:
                if type(item).__module__ == "promql_parser":
                    walk(item)

    walk(promql_parser.parse(expr))
    return found


#: Values for Grafana's built-in intervals: a 1 m window spans many 1 s scrapes.
INTERVAL_VALUES = {"__rate_interval": "1m", "__interval": "1m", "__range": "1m"}


def panel_queries() -> list[tuple[str, str]]:
    """(panel, PromQL) for every panel query and annotation query of the committed dashboards
    (monitoring/grafana/dashboards/*.json), their variables substituted by
    feedops.monitoring.dashboard_queries (its "All" values)."""
    pairs: list[tuple[str, str]] = []
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        doc = json.loads(path.read_text())
        title = doc.get("title", path.stem)
        found = list(dashboard_queries.panel_queries(doc, INTERVAL_VALUES))
        found += [(f"annotation {name}", expr) for name, expr in dashboard_queries.annotation_queries(doc, INTERVAL_VALUES)]
        pairs.extend((f"{title} / {name}", expr) for name, expr in found)
    assert pairs, f"no panel query in {DASHBOARDS_DIR}"
    return pairs


# ------------------------------------------------------------------ the webhook receiver
def alertmanager_files_for_test(settings, webhook_url: str) -> dict[str, str]:
    """The files the native runtime gives Alertmanager, with every receiver of the configuration
    sent to the test's webhook and groups flushed after 1 s (routes, grouping, inhibitions and
    templates are kept as they are)."""
    files = native.alertmanager_files(settings)
    doc = yaml.safe_load(files["alertmanager.yml"])
    for receiver in doc.get("receivers", []):
        for key in [k for k in receiver if k.endswith("_configs")]:
            del receiver[key]
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]

    def fast(route: dict) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route or route is doc["route"]:
                route[key] = "1s"
        for child in route.get("routes", []):
            fast(child)

    fast(doc["route"])
    return {**files, "alertmanager.yml": yaml.safe_dump(doc, sort_keys=False)}


FALLBACK_RULES = f"""# stand-in while monitoring/prometheus/rules/ has no rule files (see the module docstring)
groups:
  - name: live-test-stand-in
    rules:
      - alert: {FRONT_DOWN_ALERT}
        expr: max by (env, job, instance) (feedops_logged_in) < 1
        for: 3s
        labels:
          severity: critical
        annotations:
          summary: "worker {{{{ $labels.instance }}}} is not logged in"
          runbook_url: "docs/ops/alerts/{FRONT_DOWN_ALERT}.md"
"""


def repo_rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


# ------------------------------------------------------------------ the stack
def _ports_with_control() -> tuple[int, int]:
    """A free front port whose control port (front + 1000, as the renderer expects) is free too."""
    from feedops.sim.cli import CONTROL_PORT_OFFSET

    def candidate():
        front = free_port()
        control = front + CONTROL_PORT_OFFSET
        return (front, control) if control <= 65535 and _free(control) else None

    return wait_for(candidate, timeout=10, what="a free front port with a free control port")


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _binary(component: str) -> str:
    binary, package = installed.BINARIES[component]
    path = installed.find_binary(binary)
    if not path:
        pytest.skip(f"{binary} not installed: apt-get install {package} (.ci/run does this)")
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    binaries = {name: _binary(name) for name in installed.BINARIES}
    redis_binary = installed.find_binary("redis-server") or pytest.skip("redis-server not installed: apt-get install redis-server")
    tmp = tmp_path_factory.mktemp("monitoring-live")
    secrets = tmp / "secrets"
    secrets.mkdir(mode=0o700)
    for var in ("CTP_PRIMARY_PASSWORD", "CTP_PRIMARY_AUTH_CODE", "CTP_BACKUP_PASSWORD", "CTP_BACKUP_AUTH_CODE"):
        (secrets / var).write_text(f"{SENTINEL}{var[4]}{var[-1]}")
    front, control = _ports_with_control()
    ports = {name: free_port() for name in ("redis", "worker", "prometheus", "alertmanager", "pushgateway", "exporter")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEEDOPS_", "CTP_PRIMARY_", "CTP_BACKUP_"))}
    env.update({
        "LOCPATH": str(ROOT / ".venv" / "locale"), "FEEDOPS_ENV": "dev", "FEEDOPS_CALENDAR": "always-open",
        "FEEDOPS_SECRETS_DIR": str(secrets), "FEEDOPS_STATE_DIR": str(tmp / "state"),
        "FEEDOPS_FLOW_DIR": str(tmp / "flow"), "FEEDOPS_CACHE_DIR": str(tmp / "cache"),
        "FEEDOPS_MONITORING_DIR": str(tmp / "monitoring"),
        "FEEDOPS_SINK_URL": f"redis://127.0.0.1:{ports['redis']}/0",
        "FEEDOPS_WORKER_LISTEN": f"127.0.0.1:{ports['worker']}", "FEEDOPS_WORKER_URLS": f"http://127.0.0.1:{ports['worker']}",
        "CTP_PRIMARY_MD_FRONTS": f"tcp://127.0.0.1:{front}", "CTP_PRIMARY_TD_FRONTS": f"tcp://127.0.0.1:{front}",
        # the backup front is never contacted here; off loopback, so the renderer plans no ctp-sim for it
        "CTP_BACKUP_MD_FRONTS": "tcp://backup-front.invalid:17002", "CTP_BACKUP_TD_FRONTS": "tcp://backup-front.invalid:17002",
        "FEEDOPS_SIM_INSTRUMENTS": str(INSTRUMENTS), "FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS": "0",
        "FEEDOPS_LOG_FORMAT": "json",
        "FEEDOPS_PROMETHEUS_ENABLED": "true", "FEEDOPS_PROMETHEUS_URL": f"http://127.0.0.1:{ports['prometheus']}",
        "FEEDOPS_ALERTMANAGER_ENABLED": "true", "FEEDOPS_ALERTMANAGER_URL": f"http://127.0.0.1:{ports['alertmanager']}",
        "FEEDOPS_PUSHGATEWAY_ENABLED": "true", "FEEDOPS_PUSHGATEWAY_URL": f"http://127.0.0.1:{ports['pushgateway']}",
        "FEEDOPS_REDIS_EXPORTER_URL": f"http://127.0.0.1:{ports['exporter']}",
    })
    settings = load_settings("dev", environ=env)
    servers: list[Server] = []
    webhook = WebhookReceiver()

    def start(name: str, argv: list[str], port: int, extra_env: dict | None = None) -> Server:
        srv = Server(name, argv, port, tmp / f"{name}.log", env={**env, **(extra_env or {})})
        servers.append(srv)
        return srv

    try:
        import redis as redis_lib

        start("redis", [redis_binary, "--bind", "127.0.0.1", "--port", str(ports["redis"]), "--save", "",
                        "--appendonly", "no", "--dir", str(tmp)], ports["redis"])
        client = redis_lib.Redis(host="127.0.0.1", port=ports["redis"], decode_responses=True)
        wait_for(client.ping, what="redis")
        sim = start("ctp-sim", [sys.executable, str(SCRIPTS / "ctp_sim.py"), "--listen", f"127.0.0.1:{front}",
                                "--control", f"127.0.0.1:{control}"], front)
        worker = start("worker", [sys.executable, str(SCRIPTS / "full_feed_subscription.py")], ports["worker"])
        pushgateway = start("pushgateway", native.pushgateway_argv(binaries["pushgateway"], f"127.0.0.1:{ports['pushgateway']}"),
                            ports["pushgateway"])
        argv, extra = native.redis_exporter_argv(binaries["redis-exporter"], settings.feed.sink_url,
                                                 f"127.0.0.1:{ports['exporter']}", settings.feed.redis_stream_prefix)
        exporter = start("redis-exporter", argv, ports["exporter"], extra)

        am_dir = tmp / "alertmanager"
        am_dir.mkdir()
        for name, text in alertmanager_files_for_test(settings, f"{webhook.url}/alerts").items():
            (am_dir / name).write_text(text)
        alertmanager = start("alertmanager", native.alertmanager_argv(binaries["alertmanager"], am_dir / "alertmanager.yml",
                                                                      am_dir / "data", f"127.0.0.1:{ports['alertmanager']}"),
                             ports["alertmanager"])

        doc = prometheus_config.config(settings, "native", intervals=INTERVALS)
        stand_in = None
        if not repo_rule_files():
            stand_in = tmp / "stand-in-rules.yml"
            stand_in.write_text(FALLBACK_RULES)
            doc["rule_files"].append(str(stand_in))
        prom_dir = tmp / "prometheus"
        prom_dir.mkdir()
        (prom_dir / "prometheus.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
        prometheus = start("prometheus", native.prometheus_argv(binaries["prometheus"], prom_dir / "prometheus.yml",
                                                                prom_dir / "data", f"127.0.0.1:{ports['prometheus']}",
                                                                "--rules.alert.resend-delay=1s"), ports["prometheus"])
        for srv in (pushgateway, alertmanager, prometheus):
            wait_for(lambda: http_ok(f"{srv.url}/-/ready"), timeout=30, interval=0.2, what=f"{srv.name} ready")
        wait_for(lambda: http_ok(f"{worker.url}/readyz"), timeout=60, interval=0.2, what="the worker to be ready")

        # a consumer group on each of the worker's streams that has read (and not acknowledged) some entries
        streams = wait_for(lambda: sorted(client.scan_iter(f"{settings.feed.redis_stream_prefix}:*", _type="STREAM")),
                           timeout=30, what="the worker's Redis streams")
        for stream in streams:
            client.xgroup_create(stream, CONSUMER_GROUP, id="0")
            client.xreadgroup(CONSUMER_GROUP, "consumer-1", {stream: ">"}, count=10)

        stack = {"env": env, "settings": settings, "tmp": tmp, "webhook": webhook, "worker": worker, "sim": sim,
                 "prometheus": prometheus, "alertmanager": alertmanager, "pushgateway": pushgateway, "exporter": exporter,
                 "redis": client, "streams": streams, "stand_in": stand_in, "control": f"http://127.0.0.1:{control}"}
        push_checkers(stack)
        wait_for(lambda: all_targets_up(stack), timeout=60, interval=0.5, what="every Prometheus target up")
        wait_for(lambda: rules_evaluated(stack), timeout=30, interval=0.5, what="every rule group evaluated once")
        # declared metric families of every live scrape, before the fault takes the worker away
        stack["declared"] = set().union(*(scrape_family_names(f"http://{t['labels']['instance']}/metrics")
                                          for t in prom(stack, "/api/v1/targets")["activeTargets"]))
        yield stack
    finally:
        webhook.close()
        for srv in reversed(servers):
            if srv.proc.poll() is None:
                os.kill(srv.pid, signal.SIGCONT)
            srv.stop()
        for srv in servers:
            assert SENTINEL not in srv.output(), f"a secret leaked into the {srv.name} log"


def push_checkers(stack) -> None:
    """The checkers push as they do in production: check_feed_health and validate_env through
    the settings (FEEDOPS_PUSHGATEWAY_ENABLED/URL), the runbook's outcome record per mode."""
    import subprocess

    env = stack["env"]

    def run(*argv: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, *argv], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert SENTINEL not in proc.stdout + proc.stderr
        return proc

    report = json.loads(run(str(SCRIPTS / "check_feed_health.py"), "--format", "json", "--no-premarket").stdout)
    assert report["push"]["ok"] is True, report["push"]
    run(str(SCRIPTS / "validate_env.py"), "--env", "dev")
    for mode in RUNBOOK_MODES:
        assert run("-m", "feedops.runbook", "--runtime", "native", "record", "--mode", mode, "--rc", "0",
                   "--duration", "1.5").returncode == 0
    pushed = get_json(f"{stack['pushgateway'].url}/api/v1/metrics")["data"]
    jobs = {group["labels"]["job"] for group in pushed}
    assert {metric_names.PUSH_JOB_HEALTH, metric_names.PUSH_JOB_VALIDATE, metric_names.PUSH_JOB_RUNBOOK} <= jobs, jobs


def all_targets_up(stack) -> list | None:
    targets = prom(stack, "/api/v1/targets")["activeTargets"]
    return targets if targets and all(t["health"] == "up" for t in targets) else None


def loaded_rules(stack) -> list[dict]:
    return [dict(rule, file=group["file"]) for group in prom(stack, "/api/v1/rules")["groups"] for rule in group["rules"]]


def rules_evaluated(stack) -> bool:
    groups = prom(stack, "/api/v1/rules")["groups"]
    return all(not g["lastEvaluation"].startswith("0001-") for g in groups)


def repo_rules(stack) -> list[dict]:
    stand_in = str(stack["stand_in"]) if stack["stand_in"] else None
    return [r for r in loaded_rules(stack) if r["file"] != stand_in]


# ------------------------------------------------------------------ the checks
def test_targets_carry_env_and_pushed_series_are_scraped_with_it(stack):
    targets = prom(stack, "/api/v1/targets")["activeTargets"]
    assert sorted({t["labels"]["job"] for t in targets}) == ["alertmanager", "ctp-sim", "feedops-worker", "prometheus",
                                                             "pushgateway", "redis-exporter"]
    assert {t["labels"]["env"] for t in targets} == {"dev"}

    def pushed():
        result = prom(stack, "/api/v1/query", query="feedops_check_status")["result"]
        return result if {r["metric"].get("checker") for r in result} >= {"check_feed_health", "validate_env"} else None

    result = wait_for(pushed, timeout=15, interval=0.5, what="both checkers' pushes in Prometheus")
    assert {r["metric"]["env"] for r in result} == {"dev"}

    def modes():
        seen = {r["metric"]["mode"] for r in prom(stack, "/api/v1/query", query="feedops_runbook_exit_code")["result"]}
        return seen if seen == set(RUNBOOK_MODES) else None

    wait_for(modes, timeout=15, interval=0.5, what="every runbook mode's recorded outcome in Prometheus")


def test_redis_exporter_sees_the_worker_streams_and_the_consumer_group(stack):
    def groups():
        result = prom(stack, "/api/v1/query", query=f'redis_stream_group_messages_pending{{group="{CONSUMER_GROUP}"}}')["result"]
        return result if len(result) == len(stack["streams"]) else None

    result = wait_for(groups, timeout=15, interval=0.5, what="the exporter's consumer-group series")
    assert {r["metric"]["stream"] for r in result} == set(stack["streams"])
    assert all(float(r["value"][1]) > 0 for r in result)  # read, not acknowledged
    # how far behind the group is: stream ids are milliseconds, so the difference is a time
    behind = prom(stack, "/api/v1/query", query="redis_stream_last_generated_id - on(stream) group_right "
                  "redis_stream_group_last_delivered_id")["result"]
    assert behind and all(float(r["value"][1]) >= 0 for r in behind)


def test_every_rule_expression_evaluates(stack):
    files = repo_rule_files()
    rules = repo_rules(stack)
    if not files:
        assert rules == []
        pytest.skip("monitoring/prometheus/rules/ has no rule files yet: nothing to evaluate")
    assert rules, f"{len(files)} rule files but Prometheus loaded no rule from them"
    problems = []
    for rule in rules:
        if rule.get("health") != "ok" or rule.get("lastError"):
            problems.append(f"{rule['name']}: health {rule.get('health')} {rule.get('lastError', '')}")
        error, _ = instant(stack, rule["query"])
        if error:
            problems.append(f"{rule['name']}: {error}")
    alerts = [r for r in rules if r["type"] == "alerting"]
    print(f"\nrules: {len(rules)} evaluated ({len(alerts)} alerts, {len(rules) - len(alerts)} recording rules) "
          f"from {len(files)} files")
    assert not problems, "\n".join(problems)


def test_every_panel_query_evaluates_and_returns_data(stack):
    panels = panel_queries()
    if not panels:
        pytest.skip("no Grafana dashboards yet (monitoring/grafana/dashboards/*.json, feedops.monitoring.dashboards)")
    errors, empty = [], {}
    for name, expr in panels:
        error, result = instant(stack, expr)
        if error:
            errors.append(f"{name}: {error}\n    {expr}")
        elif not result:
            empty[(name, expr)] = None
    assert not errors, "queries Prometheus rejects:\n" + "\n".join(errors)

    def still_empty():  # rate() over a 1m window needs two samples: give young series a moment
        for key in list(empty):
            if instant(stack, key[1])[1]:
                del empty[key]
        return not [k for k in empty if not no_data_reason(*k)]

    try:
        wait_for(still_empty, timeout=30, interval=1.0, what="every panel to return data")
    except TimeoutError:
        pass
    unexplained = [f"{name}: {expr}" for (name, expr) in empty if not no_data_reason(name, expr)]
    print(f"\npanels: {len(panels) - len(empty)} of {len(panels)} queries returned data")
    for (name, expr) in empty:
        print(f"  no data (expected): {name}: {no_data_reason(name, expr) or 'NONE GIVEN'}")
    assert not unexplained, "panels without data and without a reason in NO_DATA_METRICS:\n" + "\n".join(unexplained)


def no_data_reason(name: str, expr: str) -> str | None:
    """Why a query may be empty in a short healthy run, or None when it should have data."""
    promql = expr
    if name.startswith("annotation ") or " / annotation " in name:
        return "an annotation marks events (a failover) that a short healthy run does not have"
    if re.search(r"\boffset\s+\d", promql):
        return "compares with an earlier day (offset): the test's Prometheus is minutes old"
    if EMPTY_IS_HEALTHY.search(promql):
        return "absent(): empty while the series exists"
    names = metric_names_in(promql)
    if names and all(n in NO_DATA_METRICS for n in names):
        return "; ".join(f"{n}: {NO_DATA_METRICS[n]}" for n in sorted(names))
    return None


def test_the_no_data_and_not_exposed_lists_name_declared_metrics():
    declared = metric_names.exposed_names()
    assert set(NO_DATA_METRICS) <= declared and set(NOT_EXPOSED_HERE) <= declared


def test_every_metric_named_by_a_rule_or_panel_is_exposed_or_pushed(stack):
    rules = repo_rules(stack)
    queries = [r["query"] for r in rules] + [e for _, e in panel_queries()]
    if not queries:
        pytest.skip("no rules and no dashboards yet: no metric names to check")
    named = set().union(*(metric_names_in(q) for q in queries))
    recorded = {r["name"] for r in rules if r["type"] == "recording"}
    live = set(prom(stack, "/api/v1/label/__name__/values")) | stack["declared"] | recorded | {"ALERTS", "ALERTS_FOR_STATE"}
    missing = sorted(named - live - set(NOT_EXPOSED_HERE))
    assert not missing, f"named by a rule or panel but neither scraped nor pushed: {missing}"
    print(f"\nmetric names: {len(named)} named by {len(rules)} rules and {len(queries) - len(rules)} panel queries: "
          f"{len(named & live)} in a live scrape or a checker's push, "
          f"not exposed here: {sorted(named & set(NOT_EXPOSED_HERE)) or 'none'}")


def test_watchdog_reaches_the_webhook(stack):
    if not any(r["name"] == WATCHDOG_ALERT and r["type"] == "alerting" for r in repo_rules(stack)):
        pytest.skip(f"no {WATCHDOG_ALERT} alert in monitoring/prometheus/rules yet")
    webhook = stack["webhook"]
    wait_for(lambda: webhook.alerts(WATCHDOG_ALERT), timeout=60, interval=0.2, what=f"{WATCHDOG_ALERT} at the webhook")


def test_front_stopped_is_notified_with_the_runbook_url(stack):
    """The fault: the ctp-sim front stops. The worker loses its session while its instruments are
    in session (always-open calendar), the alert fires after its `for:`, Alertmanager routes it to
    the webhook. Printed: fault to notification."""
    rule = next((r for r in loaded_rules(stack) if r["name"] == FRONT_DOWN_ALERT and r["type"] == "alerting"), None)
    assert rule is not None, (f"monitoring/prometheus/rules has rule files but no alert {FRONT_DOWN_ALERT}: "
                              f"set FRONT_DOWN_ALERT to the repo's alert for a lost front")
    webhook = stack["webhook"]
    assert not webhook.alerts(FRONT_DOWN_ALERT), "the alert fired while the front ran"
    fault_at = time.monotonic()
    stack["sim"].stop()
    for_seconds = float(rule.get("duration", 0))
    at, alert = wait_for(lambda: (webhook.alerts(FRONT_DOWN_ALERT, since=fault_at) or [None])[0], timeout=for_seconds + 60,
                         interval=0.1, what=f"{FRONT_DOWN_ALERT} at the webhook")
    print(f"\nfault to notification: {at - fault_at:.1f}s (ctp-sim front stopped -> {FRONT_DOWN_ALERT}, for: {for_seconds:g}s, "
          f"scrape/evaluation every {INTERVALS.scrape}, Alertmanager group_wait 1s)")
    assert alert["labels"]["env"] == "dev"
    assert alert["labels"].get("instance") == stack["env"]["FEEDOPS_WORKER_LISTEN"], alert["labels"]
    runbook_url = alert["annotations"].get("runbook_url", "")
    assert runbook_url.endswith(f"docs/ops/alerts/{FRONT_DOWN_ALERT}.md"), alert["annotations"]
    if stack["stand_in"] is None:  # the repo's alert: its runbook page exists
        assert (ROOT / "docs" / "ops" / "alerts" / f"{FRONT_DOWN_ALERT}.md").is_file()
