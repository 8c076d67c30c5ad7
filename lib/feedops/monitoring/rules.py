"""Recording rules, and the rendering of the rule files and runbook pages.

``python -m feedops.monitoring.rules`` writes ``monitoring/prometheus/rules/*.yml`` and
``docs/ops/alerts/*.md`` (the settings model's default thresholds); ``--check`` writes
nothing and fails when a committed file differs from what this module renders, then runs
``promtool check rules`` on them; ``--env ENV --out DIR`` writes only the rule file(s) into
DIR with that environment's thresholds (what a runtime loads).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .. import paths
from ..settings import ConfigError, load_settings
from . import alerts_feed, alerts_ops
from .config import BEIJING_OFFSET_SECONDS, RUNBOOK_DIR, SESSION_WINDOWS, THRESHOLDS, thresholds
from .model import Alert


def catalog(T: dict) -> tuple[Alert, ...]:
    """Every alert at thresholds ``T``."""
    return alerts_feed.alerts(T) + alerts_ops.downstream(T) + alerts_ops.operations(T) + alerts_ops.meta(T)


#: The alerts at the settings model's default thresholds (the committed files).
ALERTS: tuple[Alert, ...] = catalog(THRESHOLDS)
RULES_DIR = "monitoring/prometheus/rules"
GROUPS = ("feed", "downstream", "operations", "meta")
DAY = 86400


def _session_pieces() -> list[tuple[int, int, int, int, int]]:
    """(from, to, first weekday, last weekday, seconds the window had been open at ``from``)."""
    pieces = []
    for opens, closes, first, last in SESSION_WINDOWS:
        pieces.append((opens, min(closes, DAY), first, last, 0))
        if closes > DAY:
            pieces.append((0, closes - DAY, (first + 1) % 7, (last + 1) % 7, DAY - opens))
    return pieces


def _elapsed_expr() -> str:
    tod, dow = "feedops:beijing_time_of_day_seconds", "feedops:beijing_day_of_week"
    parts = []
    for start, end, first, last, before in _session_pieces():
        shift = before - start
        value = f"{tod} {'+' if shift >= 0 else '-'} {abs(shift)}"
        parts.append(f"({value} and on() {tod} >= {start} < {end} and on() {dow} >= {first} <= {last})")
    return "\n  or ".join(parts)


def recording_rules(T: dict = THRESHOLDS) -> list[dict[str, str]]:
    expected = T["ticks_per_open_instrument"]
    return [
        # the session clock (Beijing wall time): only for "must be running" alerts, never for tick alerts
        {"record": "feedops:beijing_time_of_day_seconds", "expr": f"vector((time() + {BEIJING_OFFSET_SECONDS}) % {DAY})"},
        {"record": "feedops:beijing_day_of_week", "expr": f"day_of_week(vector(time() + {BEIJING_OFFSET_SECONDS}))"},
        {"record": "feedops:session_window_elapsed_seconds", "expr": _elapsed_expr()},
        {"record": "feedops:session_window_open", "expr": "feedops:session_window_elapsed_seconds >= bool 0 or on() vector(0)"},
        # the last successful runbook action in an environment was a shutdown: workers are meant to be down
        {"record": "env:feedops_stopped_by_runbook",
         "expr": 'max by (env) (feedops_runbook_last_success_timestamp_seconds{mode="shutdown"}) '
                 '> on(env) max by (env) (feedops_runbook_last_success_timestamp_seconds{mode!="shutdown"})'},
        # market open as the feed knows it (exchange calendar over the subscribed instruments)
        {"record": "instance:feedops_instruments_open:sum", "expr": "sum by (env, job, instance) (feedops_instruments_open)"},
        {"record": "instance_exchange:feedops_instruments_open:sum",
         "expr": "sum by (env, job, instance, exchange) (feedops_instruments_open)"},
        # coverage by exchange and product class across workers (dashboard heatmap)
        {"record": "exchange_product_class:feedops_coverage:ratio",
         "expr": "sum by (env, exchange, product_class) (feedops_instruments_fresh) "
                 "/ (sum by (env, exchange, product_class) (feedops_instruments_open) > 0)"},
        {"record": "instance:feedops_last_tick_age_seconds",
         "expr": "time() - max by (env, job, instance) (feedops_last_tick_timestamp_seconds)"},
        {"record": "instance:feedops_ticks_received:rate5m",
         "expr": "sum by (env, job, instance) (rate(feedops_ticks_received_total[5m]))"},
        {"record": "instance_exchange:feedops_ticks_received:rate5m",
         "expr": "sum by (env, job, instance, exchange) (rate(feedops_ticks_received_total[5m]))"},
        {"record": "instance_exchange:feedops_ticks_published:rate5m",
         "expr": "sum by (env, job, instance, exchange) (rate(feedops_ticks_published_total[5m]))"},
        {"record": "instance:feedops_ticks_expected_per_second", "expr": f"{expected:g} * instance:feedops_instruments_open:sum"},
        {"record": "instance_exchange:feedops_tick_latency_seconds:p99",
         "expr": "histogram_quantile(0.99, sum by (env, job, instance, exchange, le) (rate(feedops_tick_latency_seconds_bucket[5m])))"},
        {"record": "instance_exchange:feedops_tick_latency_seconds:p50",
         "expr": "histogram_quantile(0.5, sum by (env, job, instance, exchange, le) (rate(feedops_tick_latency_seconds_bucket[5m])))"},
        {"record": "instance:feedops_pipeline_latency_seconds:p99",
         "expr": "histogram_quantile(0.99, sum by (env, job, instance, le) (rate(feedops_pipeline_latency_seconds_bucket[5m])))"},
        # consumer-group lag in seconds of stream time: stream ids are millisecond timestamps
        {"record": "feedops:redis_stream_group_lag_seconds",
         "expr": 'label_replace((redis_stream_last_generated_id - ignoring(group) group_right redis_stream_group_last_delivered_id) '
                 '/ 1000, "exchange", "$1", "stream", ".*:([^:]+)")'},
    ]


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def _dump(doc: dict) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=200, allow_unicode=True)


HEADER = ("# Generated by `python -m feedops.monitoring.rules` from lib/feedops/monitoring/; do not edit.\n"
          "# Tests: monitoring/prometheus/tests/ (promtool test rules), tests/unit/test_alert_rules.py.\n")


def rule_files(T: dict = THRESHOLDS) -> dict[str, str]:
    """Repository-relative path -> content of every rule file.

    One group: Prometheus evaluates a group's rules in order at one timestamp, so every
    alert sees the recording rules of the same evaluation (separate groups run in no
    fixed order and an alert would see the previous evaluation's value).
    """
    rules: list[dict] = list(recording_rules(T))
    alerts = catalog(T)
    for group in GROUPS:
        for alert in (a for a in alerts if a.group == group):
            for rule in alert.rule_dicts():
                if not rule["for"]:
                    del rule["for"]
                rules.append(rule)
    return {f"{RULES_DIR}/feedops.yml": HEADER + _dump({"groups": [{"name": "feedops", "rules": rules}]})}


def _block(lines: tuple[str, ...]) -> str:
    return "```bash\n" + "\n".join(lines) + "\n```"


def _not_run(reason: str) -> str:
    return f"<!-- not-run: {reason} -->\n" if reason else ""


def render_page(alert: Alert) -> str:
    pipe = "\\|"
    rules = "\n".join(f"| {r.severity} | `{' '.join(r.expr.split()).replace('|', pipe)}` | {r.for_ or '-'} |" for r in alert.rules)
    market = ("Silent while the market is closed: it holds only while the worker reports open instruments "
              "(`feedops_instruments_open`, from the exchange calendar).\n\n" if alert.market_hours else "")
    return f"""<!-- Generated by `python -m feedops.monitoring.rules` from lib/feedops/monitoring/; do not edit. -->
# {alert.name}

Summary: `{alert.summary.replace("{threshold}", "<threshold>")}`

| severity | expression | for |
|---|---|---|
{rules}

{market}Fix: `{alert.fix}`

## Meaning

{alert.page.meaning}

## Impact

{alert.page.impact}

## Diagnosis

{_not_run(alert.page.diagnosis_not_run)}{_block(alert.page.diagnosis)}

## Mitigation

{_block(alert.page.mitigation)}

## Escalation

{alert.page.escalation}
"""


def render_index() -> str:
    rows = []
    for group in GROUPS:
        for a in (a for a in ALERTS if a.group == group):
            severities = ", ".join(r.severity for r in a.rules)
            rows.append(f"| {group} | [{a.name}]({a.name}.md) | {severities} | `{a.fix}` |")
    return ("<!-- Generated by `python -m feedops.monitoring.rules` from lib/feedops/monitoring/; do not edit. -->\n"
            "# Alert runbooks\n\n"
            "One page per alert of `monitoring/prometheus/rules/`; every alert's `runbook_url` is the page's path "
            f"(`{RUNBOOK_DIR}/<AlertName>.md`) and its `fix` annotation the command below.\n"
            "Thresholds: `lib/feedops/monitoring/config.py`.\n\n"
            "| group | alert | severity | fix |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")


def page_files() -> dict[str, str]:
    files = {f"{RUNBOOK_DIR}/{a.name}.md": render_page(a) for a in ALERTS}
    files[f"{RUNBOOK_DIR}/README.md"] = render_index()
    return files


def all_files() -> dict[str, str]:
    return {**rule_files(), **page_files()}


def stale_files(root: Path) -> list[str]:
    """Committed files that differ from the rendering (or are missing)."""
    out = []
    for rel, text in all_files().items():
        path = root / rel
        if not path.is_file() or path.read_text() != text:
            out.append(rel)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feedops.monitoring.rules", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare with the committed files and run promtool check rules")
    parser.add_argument("--root", type=Path, default=paths.ROOT, help="repository root")
    parser.add_argument("--env", choices=("dev", "staging", "prod"), help="render the rule file(s) with this environment's thresholds")
    parser.add_argument("--out", type=Path, help="with --env: directory to write the rule file(s) into")
    args = parser.parse_args(argv)
    if args.env or args.out:
        if not (args.env and args.out):
            parser.error("--env and --out go together")
        try:
            feed = load_settings(args.env).feed
        except ConfigError as exc:
            sys.stderr.write(f"rules: {exc}\n")
            return 2
        args.out.mkdir(parents=True, exist_ok=True)
        for rel, text in rule_files(thresholds(feed)).items():
            (args.out / Path(rel).name).write_text(text)
            sys.stdout.write(f"wrote {args.out / Path(rel).name}\n")
        return 0
    if args.check:
        stale = stale_files(args.root)
        for rel in stale:
            sys.stderr.write(f"stale: {rel} (regenerate: python -m feedops.monitoring.rules)\n")
        promtool = shutil.which("promtool")
        if promtool is None:
            sys.stderr.write("promtool not installed: apt-get install prometheus\n")
            return 3
        files = sorted(str(args.root / rel) for rel in rule_files())
        result = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return 1 if stale or result.returncode else 0
    for rel, text in all_files().items():
        path = args.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
