"""The Grafana dashboards: generated, committed, well-formed, and every query valid PromQL over known metrics."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import promql_parser
import pytest
import yaml

from feedops import metric_names
from feedops.monitoring import dashboard_queries as dq
from feedops.monitoring import dashboards as gen
from feedops.monitoring.panels import DATASOURCE_UID

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "monitoring" / "grafana" / "dashboards"
PROVISIONING = ROOT / "monitoring" / "grafana" / "provisioning"

#: Metrics the dashboards may use that feedops does not define: Prometheus's own ``up`` and the
#: stream series of prometheus-redis-exporter (1.45, ``-check-streams``).
EXPORTER_METRICS = {
    "up",
    "redis_stream_length",
    "redis_stream_last_generated_id",
    "redis_stream_group_last_delivered_id",
    "redis_stream_group_messages_pending",
    "redis_stream_group_consumer_idle_seconds",
}


def committed() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


DASHBOARDS = committed()


def test_committed_dashboards_are_the_generator_output():
    rendered = gen.render()
    assert sorted(rendered) == sorted(DASHBOARDS), "a dashboard file is missing or left over"
    for name, text in rendered.items():
        assert (DASHBOARD_DIR / name).read_text() == text, \
            f"{name} is stale: python -m feedops.monitoring.dashboards --out monitoring/grafana/dashboards"


def test_check_flag_fails_on_a_stale_dashboard(tmp_path):
    cmd = [sys.executable, "-m", "feedops.monitoring.dashboards"]
    subprocess.run([*cmd, "--out", str(tmp_path)], check=True)
    assert subprocess.run([*cmd, "--check", str(tmp_path)]).returncode == 0
    stale = tmp_path / "operations.json"
    stale.write_text(stale.read_text().replace('"Drill outcome"', '"Drill result"'))
    result = subprocess.run([*cmd, "--check", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1 and "operations.json" in result.stderr


def test_uids_are_fixed_and_distinct():
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert uids == ["feedops-feed-overview", "feedops-operations"]
    assert all(len(uid) <= 40 for uid in uids)  # Grafana's limit


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_shape(name):
    dashboard = DASHBOARDS[name]
    assert dashboard["schemaVersion"] == 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"env", "exchange", "worker"} <= set(variables)
    for var in ("env", "exchange", "worker"):
        assert variables[var]["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
        assert variables[var]["includeAll"] and variables[var]["allValue"] == ".*"
    assert re.search(r", instance\)$", variables["worker"]["definition"])
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    panels = list(dq.iter_panels(dashboard))
    assert panels
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
            assert target["expr"].strip(), panel["title"]
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]


def test_panels_do_not_overlap():
    for dashboard in DASHBOARDS.values():
        cells: dict[tuple[int, int], str] = {}
        for panel in dashboard["panels"]:
            g = panel["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = panel["title"]


def every_query() -> list[tuple[str, str, str]]:
    """(dashboard, title, substituted expr) for every panel, annotation and variable query."""
    out = []
    for name, dashboard in DASHBOARDS.items():
        out += [(name, title, expr) for title, expr in dq.panel_queries(dashboard) + dq.annotation_queries(dashboard)]
        for var in dashboard["templating"]["list"]:
            if var["type"] == "query":  # label_values(<selector>, <label>): the selector is PromQL
                match = re.fullmatch(r"label_values\((.+), (\w+)\)", var["definition"])
                assert match, var["definition"]
                out.append((name, f"variable {var['name']}", dq.substitute(match.group(1))))
    return out


QUERIES = every_query()


def test_queries_cover_every_panel():
    titles = {(name, p["title"]) for name, d in DASHBOARDS.items() for p in dq.iter_panels(d)}
    assert titles == {(name, title) for name, title, _ in QUERIES if not title.startswith(("variable ", "Failovers"))}
    assert len(QUERIES) > 50


@pytest.mark.parametrize(("dashboard", "title", "expr"), QUERIES, ids=[f"{d}:{t}:{i}" for i, (d, t, _) in enumerate(QUERIES)])
def test_query_parses_and_names_only_known_metrics(dashboard, title, expr):
    assert "$" not in expr
    tree = promql_parser.parse(expr)  # ValueError on a syntax error
    names = metric_names_in(tree)
    assert names, f"{title}: no metric in {expr}"
    unknown = names - metric_names.exposed_names() - EXPORTER_METRICS
    assert not unknown, f"{title}: unknown metric(s) {sorted(unknown)}"


def metric_names_in(tree) -> set[str]:
    names: set[str] = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or next((m.value for m in node.matchers.matchers if m.name == "__name__"), None)
            assert name, f"selector without a metric name: {node}"
            names.add(name)

    promql_parser.walk(tree, visit)
    return names


def test_parser_and_name_check_catch_mistakes():
    # the checks above can fail: a syntax error raises, an unknown name is reported
    with pytest.raises(ValueError):
        promql_parser.parse(dq.substitute('sum(rate(feedops_ticks_published_total{env=~"$env"}[$__rate_interval])'))
    tree = promql_parser.parse('rate(feedops_tick_published_total[1m]) + on () group_left up')
    assert metric_names_in(tree) - metric_names.exposed_names() - EXPORTER_METRICS == {"feedops_tick_published_total"}


def test_substitution():
    expr = 'rate(x{env=~"$env",instance=~"${worker}"}[$__rate_interval] offset $baseline) + y[$__interval]'
    assert dq.substitute(expr) == 'rate(x{env=~".*",instance=~".*"}[1m] offset 1d) + y[15s]'
    assert dq.substitute(expr, {"env": "dev", "__rate_interval": "20s"}).startswith('rate(x{env=~"dev",instance=~".*"}[20s]')
    with pytest.raises(KeyError):
        dq.substitute("x{a=~\"$nosuch\"}")


def test_every_variable_used_in_a_dashboard_has_a_default():
    for dashboard in DASHBOARDS.values():
        defined = {v["name"] for v in dashboard["templating"]["list"]}
        assert defined <= set(dq.DEFAULT_VALUES)
        for panel in dq.iter_panels(dashboard):
            for target in panel["targets"]:
                used = {a or b for a, b in re.findall(r"\$(?:\{(\w+)\}|(\w+))", target["expr"])}
                assert used <= defined | {"__rate_interval", "__interval"}, panel["title"]


def test_every_dashboard_uses_its_variables():
    # worker-scraped panels filter by worker, per-exchange ones by exchange, everything by env
    for name, dashboard in DASHBOARDS.items():
        exprs = [t["expr"] for p in dq.iter_panels(dashboard) for t in p["targets"]]
        assert all('env=~"$env"' in e for e in exprs), name
        assert any('instance=~"$worker"' in e for e in exprs), name
    overview = [t["expr"] for p in dq.iter_panels(DASHBOARDS["feed-overview.json"]) for t in p["targets"]]
    assert any('exchange=~"$exchange"' in e for e in overview)


def test_checker_label_values_are_the_pushers():
    from feedops.health.push import CHECKER as HEALTH
    from feedops.validate.runner import CHECKER as VALIDATE

    used = set()
    for _, _, expr in QUERIES:
        used |= set(re.findall(r'checker="(\w+)"', expr))
    assert used == {HEALTH, VALIDATE}


# ---------------------------------------------------------------- provisioning
def test_datasource_provisioning_names_the_dashboards_uid():
    config = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert config["apiVersion"] == 1
    [source] = config["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True


def test_dashboard_provider_points_at_the_mounted_dashboards():
    config = yaml.safe_load((PROVISIONING / "dashboards" / "feedops.yml").read_text())
    assert config["apiVersion"] == 1
    [provider] = config["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./monitoring/grafana/dashboards:{path}:ro" in mounts
    assert "./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


# ---------------------------------------------------------------- docs/ops/monitoring-dashboard.md
DOC = ROOT / "docs" / "ops" / "monitoring-dashboard.md"


def test_doc_explains_every_panel():
    text = DOC.read_text()
    missing = [p["title"] for d in DASHBOARDS.values() for p in dq.iter_panels(d) if f"**{p['title']}**" not in text]
    assert not missing, f"panels without a paragraph in {DOC.name}: {missing}"
    for dashboard in DASHBOARDS.values():
        assert f"`{dashboard['uid']}`" in text


def test_doc_commands_exist():
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))
    used = set(re.findall(r"`make ([a-z-]+)", DOC.read_text()))
    assert used and used <= targets, sorted(used - targets)
    for script in re.findall(r"`([\w.]+\.py)", DOC.read_text()):
        assert list(ROOT.glob(f"**/{script}")), script
