"""The Grafana dashboards, as code: plain dicts written out as the JSON Grafana provisions.

    python -m feedops.monitoring.dashboards --out monitoring/grafana/dashboards   # regenerate
    python -m feedops.monitoring.dashboards --check monitoring/grafana/dashboards # exit 1 if stale

Two dashboards (``docs/ops/monitoring-dashboard.md`` explains every panel): the feed
overview and operations, built from the blocks of :mod:`.panels`. Both query the datasource
provisioned with uid :data:`.panels.DATASOURCE_UID` (``monitoring/grafana/provisioning/datasources/``) and have the
variables env, exchange and worker (the ``instance`` label), each "All" = ``.*`` so that
series without the label still match. Metric names come from :mod:`feedops.metric_names`
(the exporters' own names are written out: ``up`` and prometheus-redis-exporter's
``redis_stream_*``). Thresholds drawn on panels are the settings model's defaults.

:func:`.dashboard_queries.panel_queries` gives every panel query with the variables
substituted, ready for the Prometheus HTTP API.

This module stays whole at about 360 lines: it is the declarative table of the two
dashboards' panels, one job.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import metric_names as mn
from ..settings import FeedSettings
from .panels import (
    ACTIVE_STANDBY,
    CHECK_MAPPINGS,
    DATASOURCE,
    ENV,
    EXCHANGE,
    RATE,
    RUNBOOK_MAPPINGS,
    STREAM,
    WORKER,
    YES_NO,
    bar_gauge,
    dashboard,
    events,
    quantile,
    sel,
    stat,
    state_timeline,
    threshold_steps,
    timeseries,
)


def _default(field: str) -> float:
    return FeedSettings.model_fields[field].default


# ---------------------------------------------------------------- feed overview
def feed_overview() -> dict:
    cov_warn, cov_crit = _default("coverage_warn_ratio"), _default("coverage_crit_ratio")
    stale_warn, stale_crit = _default("staleness_warn_seconds"), _default("staleness_crit_seconds")
    lat_warn, lat_crit = _default("latency_p99_warn_seconds"), _default("latency_p99_crit_seconds")
    by_class = "sum by (exchange, product_class)"
    published = f"sum by (exchange) (rate({sel(mn.TICKS_PUBLISHED, EXCHANGE)}{RATE}"
    coverage = [
        state_timeline(
            "Coverage by exchange and product class",
            "Fresh over open instruments per exchange and product class, summed over the workers. "
            "Empty while a bucket has no open instrument (market closed).",
            [(f"{by_class} ({sel(mn.INSTRUMENTS_FRESH, EXCHANGE)})"
              f" / ({by_class} ({sel(mn.INSTRUMENTS_OPEN, EXCHANGE)}) > 0)",
              "{{exchange}} {{product_class}}")],
            w=24, h=9, unit="percentunit", min=0, max=1,
            thresholds=threshold_steps(("red", None), ("yellow", cov_crit), ("green", cov_warn))),
        timeseries(
            "Instruments open, fresh and never ticked",
            "Per exchange: open now, ticked within the staleness window, and subscribed but never ticked.",
            [(f"sum by (exchange) ({sel(mn.INSTRUMENTS_OPEN, EXCHANGE)})", "{{exchange}} open"),
             (f"sum by (exchange) ({sel(mn.INSTRUMENTS_FRESH, EXCHANGE)})", "{{exchange}} fresh"),
             (f"sum by (exchange) ({sel(mn.INSTRUMENTS_NEVER_TICKED, EXCHANGE)})", "{{exchange}} never ticked")]),
        timeseries(
            "Seconds since the last tick",
            "Age of the newest tick per exchange (any worker). Grows while the market is closed.",
            [(f"time() - max by (exchange) ({sel(mn.LAST_TICK_TIMESTAMP, EXCHANGE)})", "{{exchange}}")],
            unit="s", thresholds=threshold_steps(("green", None), ("yellow", stale_warn), ("red", stale_crit))),
    ]
    throughput = [
        timeseries(
            "Ticks published per exchange, against $baseline earlier",
            "Solid: ticks per second written to the sink. Dashed: the same time $baseline earlier "
            "(on a Monday or after a holiday pick 3d or 7d: 1d earlier was not a trading day).",
            [(f"{published}))", "{{exchange}}"),
             (f"{published} offset $baseline))", "{{exchange}} $baseline earlier")],
            w=16, axis_label="ticks/s",
            overrides=[{"matcher": {"id": "byRegexp", "options": ".* earlier$"},
                        "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                                       {"id": "custom.fillOpacity", "value": 0}]}]),
        timeseries(
            "Ticks received, published and dropped",
            "All selected exchanges: callbacks received, ticks written, and ticks the pipeline dropped by reason.",
            [(f"sum(rate({sel(mn.TICKS_RECEIVED, EXCHANGE)}{RATE}))", "received"),
             (f"sum(rate({sel(mn.TICKS_PUBLISHED, EXCHANGE)}{RATE}))", "published"),
             (events(mn.DUPLICATES_DROPPED, "reason", "rate"), "dropped: {{reason}}")],
            w=8, axis_label="ticks/s"),
    ]
    latency = [
        timeseries(
            "Tick latency p50 and p99 (exchange time to published)",
            "Per exchange, corrected for clock skew. Lines at the p99 warning and critical thresholds.",
            [(quantile(0.5, mn.TICK_LATENCY, EXCHANGE, "exchange, "), "{{exchange}} p50"),
             (quantile(0.99, mn.TICK_LATENCY, EXCHANGE, "exchange, "), "{{exchange}} p99")],
            unit="s", thresholds=threshold_steps(("green", None), ("yellow", lat_warn), ("red", lat_crit))),
        timeseries(
            "Pipeline latency p50 and p99 (received to written)",
            "The worker's own share of the tick latency, all selected workers.",
            [(quantile(0.5, mn.PIPELINE_LATENCY, WORKER), "p50"), (quantile(0.99, mn.PIPELINE_LATENCY, WORKER), "p99")],
            unit="s"),
    ]
    connection = [
        state_timeline(
            "Front connected and logged in, per worker",
            "Per worker and profile: is the market-data front connected, is the session logged in.",
            [(f"max by (instance, profile) ({sel(mn.FRONT_CONNECTED, WORKER)})", "{{instance}} connected ({{profile}})"),
             (f"max by (instance, profile) ({sel(mn.LOGGED_IN, WORKER)})", "{{instance}} logged in ({{profile}})")],
            mappings=YES_NO),
        timeseries(
            "Reconnects and disconnect reasons",
            "Events per rate window: reconnects per profile, disconnects by CTP reason code, rejected logins.",
            [(events(mn.RECONNECTS, "profile"), "reconnects ({{profile}})"),
             (events(mn.DISCONNECTS, "reason"), "disconnect {{reason}}"),
             (events(mn.LOGIN_FAILURES, "reason"), "login failure {{reason}}")],
            bars=True),
        timeseries(
            "Rate-limit incidents",
            "Requests refused by CTP flow control, by reason, per rate window.",
            [(events(mn.FLOW_CONTROL_REFUSALS, "reason"), "{{reason}}")],
            w=8, bars=True),
        timeseries(
            "Subscribe failures",
            "Instruments whose subscription was refused or not acknowledged, by reason, per rate window.",
            [(events(mn.SUBSCRIBE_FAILURES, "reason"), "{{reason}}")],
            w=8, bars=True),
        timeseries(
            "Watchdog alarms",
            "The worker's watchdog alarms by reason (no_connection, no_ticks, disconnect_storm), per rate window.",
            [(events(mn.WATCHDOG_FIRED, "reason"), "{{reason}}")],
            w=8, bars=True),
    ]
    subscriptions = [
        timeseries(
            "Subscription progress",
            "Per exchange: instruments in the shards, requested, and acknowledged by the front.",
            [(f"sum by (exchange) ({sel(spec, EXCHANGE)})", "{{exchange}} " + word) for spec, word in
             ((mn.INSTRUMENTS_KNOWN, "known"), (mn.INSTRUMENTS_SUBSCRIBED, "subscribed"),
              (mn.INSTRUMENTS_ACKNOWLEDGED, "acknowledged"))],
            w=16),
        stat(
            "Start-up timings",
            "Per worker, from its last login: the instrument-list query, and login to all subscriptions acknowledged.",
            [(f"max by (instance) ({sel(mn.INSTRUMENT_QUERY_DURATION, WORKER)})", "{{instance}} instrument query"),
             (f"max by (instance) ({sel(mn.SUBSCRIBE_DURATION, WORKER)})", "{{instance}} subscribe")],
            w=8, unit="s"),
    ]
    per_worker = "max by (instance) ({})"
    queue_sink = [
        timeseries(
            "Callback queue depth and capacity",
            "Ticks waiting between the callback and the pipeline, against the queue's bound.",
            [(per_worker.format(sel(mn.QUEUE_DEPTH, WORKER)), "{{instance}} depth"),
             (per_worker.format(sel(mn.QUEUE_CAPACITY, WORKER)), "{{instance}} capacity")]),
        timeseries(
            "Ticks lost: queue full, sink buffer full",
            "Ticks per second dropped because the callback queue or the sink's buffer was full. Should be 0.",
            [(f"sum by (instance) (rate({sel(mn.QUEUE_DROPS, WORKER)}{RATE}))", "{{instance}} queue full"),
             (f"sum by (instance) (rate({sel(mn.SINK_DROPPED, WORKER)}{RATE}))", "{{instance}} sink buffer full")],
            axis_label="ticks/s"),
        state_timeline(
            "Sink up",
            "Per worker: does the sink (Redis stream or file) accept writes.",
            [(per_worker.format(sel(mn.SINK_UP, WORKER)), "{{instance}}")], mappings=YES_NO),
        timeseries(
            "Sink buffered ticks and errors",
            "Ticks held in memory while the sink is down, and sink errors by reason per rate window.",
            [(per_worker.format(sel(mn.SINK_BUFFERED, WORKER)), "{{instance}} buffered"),
             (events(mn.SINK_ERRORS, "reason"), "errors: {{reason}}")]),
    ]
    consumer_checks = ENV + ',checker="check_feed_health",check=~"redis:consumer-.*"'
    lag_ms = (f"max by (stream, group) ({sel('redis_stream_last_generated_id', STREAM)}"
              f" - on (job, instance, db, stream) group_right () {sel('redis_stream_group_last_delivered_id', STREAM)})")
    consumers = [
        timeseries(
            "Consumer lag per stream and group",
            "Newest entry's id minus the group's last delivered id; stream ids are milliseconds, so this is how far "
            "behind the group reads, in time (prometheus-redis-exporter). 0 when caught up.",
            [(lag_ms, "{{stream}} {{group}}")], unit="ms"),
        timeseries(
            "Pending entries and stream length",
            "Delivered but unacknowledged entries per group, and entries kept per stream (trimmed to the maxlen).",
            [(f"max by (stream, group) ({sel('redis_stream_group_messages_pending', STREAM)})",
              "{{stream}} {{group}} pending"),
             (f"max by (stream) ({sel('redis_stream_length', STREAM)})", "{{stream}} length")]),
        timeseries(
            "Consumer lag in entries (health check)",
            "Undelivered and pending entries per group as the health check last saw them (XINFO GROUPS).",
            [(f"max by (check) ({sel(mn.CHECK_VALUE, consumer_checks)})", "{{check}}")]),
        timeseries(
            "Consumer idle time",
            "Seconds since each consumer last read or acknowledged (prometheus-redis-exporter).",
            [(f"max by (stream, group, consumer) ({sel('redis_stream_group_consumer_idle_seconds', STREAM)})",
              "{{stream}} {{group}} {{consumer}}")], unit="s"),
    ]
    return dashboard(
        "feedops-feed-overview", "feedops / Feed overview",
        "The market-data feed: coverage, throughput, latency, connection, subscriptions, queue, sink and consumers. "
        "Panels are explained in docs/ops/monitoring-dashboard.md.",
        [("Coverage", coverage), ("Throughput", throughput), ("Latency", latency),
         ("Connection and rate limits", connection), ("Subscriptions", subscriptions), ("Queue and sink", queue_sink),
         ("Consumers (Redis Streams)", consumers)],
        baseline=True)


# ---------------------------------------------------------------- operations
def active_profile(matchers: str = ENV) -> str:
    """The profile recorded by the latest runbook run (every mode's push carries the profile active when it ended)."""
    last_run = sel(mn.RUNBOOK_LAST_RUN, ENV)
    latest = f"{last_run} == on (instance, env) group_left () max by (instance, env) ({last_run})"
    return f"max by (env, profile) ({sel(mn.ACTIVE_PROFILE, matchers)} and on (instance, env, mode) ({latest}))"


def operations() -> dict:
    checker = ENV + ',checker="{}"'

    def per_check(name: str) -> str:  # each check of a checker's last pushed run
        return f"max by (check) ({sel(mn.CHECK_CHECK_STATUS, checker.format(name))})"
    since = "time() - max by ({by}) ({sel})"
    to_backup = active_profile(ENV + ',profile="backup"')
    failovers = {"name": "Failovers", "datasource": DATASOURCE, "enable": True, "hide": False, "iconColor": "orange",
                 "expr": f"changes(({to_backup})[2m:15s]) > 0",
                 "step": "1m", "titleFormat": "active profile changed", "textFormat": "env {{env}}",
                 "tagKeys": "env", "useValueForTime": False}
    targets = [
        state_timeline(
            "Scrape targets up",
            "Every target Prometheus scrapes (workers, simulators, Pushgateway, redis-exporter, itself).",
            [(f"max by (job, instance) ({sel('up', ENV)})", "{{job}} {{instance}}")], w=24, mappings=YES_NO),
    ]
    health = [
        state_timeline(
            "Checker status history",
            "Verdict of each checker's last pushed run (check_feed_health, validate_env).",
            [(f"max by (checker) ({sel(mn.CHECK_STATUS, ENV)})", "{{checker}}")], w=24, h=5, mappings=CHECK_MAPPINGS),
        state_timeline(
            "Health checks by check",
            "Status of each check of check_feed_health's last run (component:measurement/component).",
            [(per_check("check_feed_health"), "{{check}}")],
            w=24, h=10, mappings=CHECK_MAPPINGS),
        timeseries(
            "Since each checker's last run and last success",
            "Seconds since the last pushed run and the last passing run. A rising sawtooth is the schedule; "
            "a straight climb is a stopped cron.",
            [(since.format(by="checker", sel=sel(mn.CHECK_LAST_RUN, ENV)), "{{checker}} last run"),
             (since.format(by="checker", sel=sel(mn.CHECK_LAST_SUCCESS, ENV)), "{{checker}} last success")],
            unit="s"),
        timeseries(
            "Checker run time",
            "Wall time of each checker's last run.",
            [(f"max by (checker) ({sel(mn.CHECK_DURATION, ENV)})", "{{checker}}")], unit="s"),
    ]
    runbook = [
        state_timeline(
            "Runbook outcome by mode",
            "Exit code of the last run of each mode (premarket, restart, shutdown, failover, rollback, drill, rotate).",
            [(f"max by (mode) ({sel(mn.RUNBOOK_EXIT_CODE, ENV)})", "{{mode}}")], w=24, h=7, mappings=RUNBOOK_MAPPINGS),
        timeseries(
            "Runbook duration by mode",
            "Duration of the last run of each mode.",
            [(f"max by (mode) ({sel(mn.RUNBOOK_DURATION, ENV)})", "{{mode}}")], unit="s"),
        bar_gauge(
            "Since the last run and the last success, by mode",
            "Pre-market should have succeeded before every session; a mode whose last success is older than its "
            "last run failed last time.",
            [(since.format(by="mode", sel=sel(mn.RUNBOOK_LAST_RUN, ENV)), "{{mode}} last run"),
             (since.format(by="mode", sel=sel(mn.RUNBOOK_LAST_SUCCESS, ENV)), "{{mode}} last success")],
            unit="s"),
    ]
    profile = [
        state_timeline(
            "Active profile and worker sessions",
            "The credential profile recorded by the latest runbook run, and the profile each worker is logged in "
            "with. Failovers are marked as annotations.",
            [(active_profile(), "active: {{profile}}"),
             (f"max by (instance, profile) ({sel(mn.LOGGED_IN, WORKER)})", "{{instance}} logged in ({{profile}})")],
            w=18, mappings=ACTIVE_STANDBY),
        stat(
            "Holiday calendar known for",
            "Time until the end of the holiday calendar the workers use (absent on the always-open calendar).",
            [(f"min({sel(mn.CALENDAR_KNOWN_UNTIL, WORKER)}) - time()", "calendar")],
            w=6, unit="s", thresholds=threshold_steps(("red", None), ("orange", 30 * 86400), ("green", 90 * 86400))),
    ]
    validate = [
        state_timeline(
            "validate_env checks",
            "Status of each check of the last validate_env run (skipped checks are not pushed).",
            [(per_check("validate_env"), "{{check}}")],
            w=18, h=9, mappings=CHECK_MAPPINGS),
        stat(
            "validate_env verdict",
            "The last validate_env run: OK, WARNING or CRITICAL.",
            [(f"max({sel(mn.CHECK_STATUS, checker.format('validate_env'))})", "verdict")],
            w=6, h=9, mappings=CHECK_MAPPINGS),
    ]
    drill = ENV + ',mode="drill"'
    drills = [
        state_timeline(
            "Drill outcome",
            "Exit code of the last failover drill (make drill).",
            [(f"max({sel(mn.RUNBOOK_EXIT_CODE, drill)})", "drill")], mappings=RUNBOOK_MAPPINGS),
        stat(
            "Since the last successful drill",
            "Time since a drill last passed.",
            [(f"time() - max({sel(mn.RUNBOOK_LAST_SUCCESS, drill)})", "drill")], w=6, unit="s"),
        stat(
            "Last drill duration",
            "How long the last drill took (failover there and back).",
            [(f"max({sel(mn.RUNBOOK_DURATION, drill)})", "drill")], w=6, unit="s"),
    ]
    return dashboard(
        "feedops-operations", "feedops / Operations",
        "The checkers, the runbook, the active profile, the configuration and the drills. "
        "Panels are explained in docs/ops/monitoring-dashboard.md.",
        [("Targets", targets), ("Health checks", health), ("Pre-market and runbook", runbook),
         ("Profile and failover", profile), ("Configuration (validate_env)", validate), ("Drills", drills)],
        annotations=(failovers,))


DASHBOARDS = {"feed-overview.json": feed_overview, "operations.json": operations}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: json.dumps(build(), indent=2, ensure_ascii=False) + "\n" for name, build in DASHBOARDS.items()}



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feedops.monitoring.dashboards", description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", type=Path, help="write the dashboards' JSON into this directory")
    group.add_argument("--check", type=Path, help="exit 1 if the JSON in this directory differs from the generator's")
    args = parser.parse_args(argv)
    rendered = render()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in rendered.items():
            (args.out / name).write_text(text)
        return 0
    stale = [name for name, text in rendered.items()
             if not (args.check / name).is_file() or (args.check / name).read_text() != text]
    if stale:
        parser.exit(1, f"stale dashboards in {args.check}: {', '.join(stale)}; regenerate with --out {args.check}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
