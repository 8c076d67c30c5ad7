"""Alerts downstream (Redis Streams consumer groups, from prometheus-redis-exporter),
on operations (checkers and runbook runs pushed to the Pushgateway) and on the
monitoring itself (meta)."""

from __future__ import annotations

from .. import metric_names as mn
from .config import PREMARKET_LEAD_SECONDS, PUSHGATEWAY_JOB
from .model import Alert, Page, Rule, warn_crit

GROUP = "group {{ $labels.group }} on stream {{ $labels.stream }} (env {{ $labels.env }})"
EXCHANGE = '"exchange", "$1", "stream", ".*:([^:]+)"'
HEALTH = "make health ARGS='--format text'              # redis:consumer-lag and redis:consumer-pending per stream/group"
XINFO = "redis-cli -u redis://127.0.0.1:6379/0 XINFO GROUPS feedops:md:SHFE   # per stream (FEEDOPS_REDIS_STREAM_PREFIX:<EXCHANGE>)"
ESCALATE_DOWNSTREAM = ("The consumer belongs to its owning team: page them with the group and stream names; the feed "
                       "itself is healthy unless the stream's MAXLEN trims entries the group has not read.")
ESCALATE_OPS = "Raise it with the feed on-call lead before the next session."
ESCALATE_META = "Tell the owner of the monitoring stack: until fixed, alerts may not reach anyone."
STATUS = "make status                                   # processes, profile, last runbook runs"
CHECK_RULES = ".venv/bin/python -m feedops.monitoring.rules --check"
CHECK_AM = ".venv/bin/python -m feedops.monitoring.alertmanager check"

HEALTH_STATUS = 'feedops_check_status{checker="check_feed_health"}'


def downstream(T: dict) -> tuple[Alert, ...]:
    """Redis Streams consumer-group alerts at thresholds ``T``."""
    return (
        Alert(
            "RedisConsumerLagHigh", "downstream",
            warn_crit("feedops:redis_stream_group_lag_seconds > @T@", T["consumer_lag_warn_seconds"],
                      T["consumer_lag_crit_seconds"], "5m", lambda v: f"{v}s"),
            "Consumer group {{ $labels.group }} is {threshold}+ behind on {{ $labels.stream }}",
            "Consumer " + GROUP + " is {{ $value | humanizeDuration }} of stream time behind the newest entry "
            "(limit {threshold}) for 5 minutes.",
            "make health ARGS='--format text'",
            Page("How far the group's last delivered entry is behind the stream's newest one, in seconds of stream time "
                 "(stream ids are millisecond timestamps: last generated id minus the group's last delivered id).",
                 "The consumer acts on old prices; once the lag exceeds what FEEDOPS_REDIS_STREAM_MAXLEN keeps, "
                 "entries are trimmed before it reads them.",
                 (HEALTH, XINFO),
                 ("make health ARGS='--format text'              # confirm which group; the fix is on the consumer's side",),
                 ESCALATE_DOWNSTREAM)),
        Alert(
            "RedisConsumerBacklogGrowing", "downstream",
            (Rule("warning", f"label_replace(redis_stream_group_messages_pending, {EXCHANGE}) > {T['consumer_pending_warn']} "
                             "and ignoring(exchange) deriv(redis_stream_group_messages_pending[10m]) > 0", "10m"),),
            "Unacknowledged backlog of {{ $labels.group }} on {{ $labels.stream }} keeps growing",
            "Consumer " + GROUP + " holds {{ $value | printf \"%.0f\" }} delivered but unacknowledged entries "
            f"(limit {T['consumer_pending_warn']}) and the number grew over 10 minutes.",
            "make health ARGS='--format text'",
            Page("Entries delivered to the group's consumers but not acknowledged (XACK) pile up.",
                 "The consumer reads but does not finish: a crash loop or a stuck handler. Memory grows in Redis.",
                 (HEALTH, XINFO, "redis-cli -u redis://127.0.0.1:6379/0 XPENDING feedops:md:SHFE <group>"),
                 ("make health ARGS='--format text'              # confirm which group; the fix is on the consumer's side",),
                 ESCALATE_DOWNSTREAM)),
        Alert(
            "RedisConsumerStalled", "downstream",
            (Rule("warning", f"label_replace(changes(redis_stream_group_last_delivered_id[10m]), {EXCHANGE}) == 0 "
                             "and ignoring(group, exchange) changes(redis_stream_last_generated_id[10m]) > 0", "5m"),),
            "Consumer group {{ $labels.group }} stopped reading {{ $labels.stream }}",
            "Consumer " + GROUP + " has not been delivered a new entry for 10 minutes while the stream grew.",
            "make health ARGS='--format text'",
            Page("The group's last delivered id did not move for 10 minutes although new entries arrived.",
                 "Nobody reads the stream for this group: its lag grows with the market.",
                 (HEALTH, XINFO, "redis-cli -u redis://127.0.0.1:6379/0 XINFO CONSUMERS feedops:md:SHFE <group>"),
                 ("make health ARGS='--format text'              # confirm which group; the fix is on the consumer's side",),
                 ESCALATE_DOWNSTREAM)),
    )


def operations(T: dict) -> tuple[Alert, ...]:
    """Checker and runbook alerts at thresholds ``T``."""
    missing_after = T["health_check_interval_seconds"] * T["health_check_missed_runs"]
    return (
        Alert(
            "HealthCheckFailing", "operations",
            (Rule("warning", f"{HEALTH_STATUS} == 1 or {HEALTH_STATUS} == 3", "15m", "WARNING or UNKNOWN"),
             Rule("critical", f"{HEALTH_STATUS} == 2", "3m", "CRITICAL")),
            "Feed health check reports {threshold} in {{ $labels.env }}",
            "check_feed_health pushed verdict {{ $value }} (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) for "
            "{{ $labels.instance }} in env {{ $labels.env }} on every run of the last period.",
            "make restart",
            Page("The cron health check (check_feed_health.py) keeps pushing a bad verdict.",
                 "The feed is degraded or the checker cannot read it; the report names the failing checks.",
                 ("make health ARGS='--format text'              # the same check, with reasons", STATUS),
                 ("make restart                                  # most failing checks are the worker's",
                  "make failover ARGS='--to backup'              # when the front checks fail"),
                 ESCALATE_OPS)),
        Alert(
            "HealthCheckMissing", "operations",
            (Rule("warning", f"time() - max by (env, job, instance) (push_time_seconds{{job=\"{mn.PUSH_JOB_HEALTH}\", result=\"\"}}) "
                             f"> {missing_after}", "1m"),),
            "Feed health check stopped pushing in {{ $labels.env }}",
            "The last push of check_feed_health for {{ $labels.instance }} (env {{ $labels.env }}) was "
            f"{{{{ $value | humanizeDuration }}}} ago: {T['health_check_missed_runs']} runs missed (cron every "
            f"{T['health_check_interval_seconds']}s).",
            "make health",
            Page(f"No health-check push reached the Pushgateway for {T['health_check_missed_runs']} intervals: the timer "
                 "or crontab line that runs it every minute (docs/ops/scheduling.md) stopped, or its pushes fail.",
                 "Nothing checks the feed between alerts on its metrics; pre-market freshness is not judged.",
                 ("systemctl list-timers 'feedops-health@*'      # or: crontab -l -u feedops | grep 'start_live_env.sh health'",
                  "make health                                   # one run; its report's push section says whether the push worked"),
                 ("make health                                   # proves the check and the push work",
                  "sudo systemctl enable --now feedops-health@prod.timer   # or restore the line of deploy/crontab"),
                 ESCALATE_OPS, diagnosis_not_run="systemctl reads the timers of a host that runs deploy/systemd's units")),
        Alert(
            "PremarketNotDone", "operations",
            (Rule("critical", 'time() - max by (env) (feedops_runbook_last_success_timestamp_seconds{mode="premarket"}) '
                              f"> on() group_left feedops:session_window_elapsed_seconds + {PREMARKET_LEAD_SECONDS}", "1m"),),
            "Pre-market was not done before the session in {{ $labels.env }}",
            "The last successful pre-market run in env {{ $labels.env }} was {{ $value | humanizeDuration }} ago: "
            "none in the hour before this session window opened.",
            "make premarket",
            Page("Inside a session window (weekdays 08:50-15:15, 20:50-02:30 Beijing) no pre-market run succeeded in the "
                 "hour before the window opened. Judged from the runbook's pushed "
                 "feedops_runbook_last_success_timestamp_seconds{mode=\"premarket\"} and the wall clock; Alertmanager "
                 "mutes it while the exchange calendar is closed (holidays, and the night before one). A pre-market "
                 "that never succeeded at all (no series) does not raise it: FeedWorkerDown does.",
                 "The feed may run on yesterday's configuration and instrument list, or not at all.",
                 (STATUS, "make validate"),
                 ("make premarket",),
                 ESCALATE_OPS)),
        Alert(
            "PremarketFailed", "operations",
            (Rule("critical", 'feedops_runbook_exit_code{mode="premarket"} != 0', "1m"),),
            "Pre-market failed on {{ $labels.instance }} in {{ $labels.env }}",
            "The last pre-market run on {{ $labels.instance }} (env {{ $labels.env }}) exited with {{ $value }} "
            "(docs/ops/exit-codes.md).",
            "make premarket",
            Page("The last `start_live_env.sh premarket` run exited non-zero; the exit code names the failed stage.",
                 "The feed may not be running, or runs without a verified health check.",
                 (STATUS + "  # outcome and detail of the last run", "make validate"),
                 ("make premarket                                # after fixing what the exit code names",),
                 ESCALATE_OPS)),
        Alert(
            "ConfigurationInvalid", "operations",
            (Rule("critical", 'feedops_check_status{checker="validate_env"} >= 2', "1m"),),
            "Configuration invalid in {{ $labels.env }}",
            "validate_env pushed verdict {{ $value }} (2 CRITICAL, 3 UNKNOWN) for {{ $labels.instance }} in env {{ $labels.env }}.",
            "make validate",
            Page("The pre-market configuration checklist (validate_env.py) failed: a setting, secret, front or directory is wrong.",
                 "The runbook refuses to start the feed on an invalid configuration.",
                 ("make validate                                 # names each failed check with its fix",),
                 ("make validate                                 # after fixing envs/<env>.env or the secrets directory",),
                 ESCALATE_OPS)),
        Alert(
            "RunbookModeFailed", "operations",
            (Rule("warning", 'feedops_runbook_exit_code{mode!~"premarket|drill"} != 0', "1m"),),
            "Runbook {{ $labels.mode }} failed on {{ $labels.instance }}",
            "The last `{{ $labels.mode }}` run on {{ $labels.instance }} (env {{ $labels.env }}) exited with {{ $value }} "
            "(docs/ops/exit-codes.md).",
            "make status",
            Page("A runbook mode other than premarket and drill (restart, shutdown, failover, rollback, rotate) exited non-zero.",
                 "The operation did not complete: the feed may run on the old profile or release, or be stopped.",
                 (STATUS + "  # which mode failed, its exit code and detail",),
                 ("make status                                   # then run the failed mode again, e.g. make restart",),
                 ESCALATE_OPS)),
        Alert(
            "DrillOverdue", "operations",
            (Rule("warning", 'time() - max by (env) (feedops_runbook_last_success_timestamp_seconds{mode="drill"}) > '
                             f"{T['drill_max_age_days'] * 86400}", "1h"),),
            "No successful failover drill for {{ $value | humanizeDuration }} in {{ $labels.env }}",
            "The last successful drill in env {{ $labels.env }} was {{ $value | humanizeDuration }} ago "
            f"(limit {T['drill_max_age_days']} days).",
            "make drill",
            Page(f"No `start_live_env.sh drill` succeeded in the last {T['drill_max_age_days']} days.",
                 "Failover is unproven: the backup account or fronts may have rotted.",
                 (STATUS,),
                 ("make drill                                    # on ctp-sim, outside trading hours",),
                 ESCALATE_OPS)),
        Alert(
            "DrillFailed", "operations",
            (Rule("warning", 'feedops_runbook_exit_code{mode="drill"} != 0', "1m"),),
            "Failover drill failed on {{ $labels.instance }}",
            "The last drill on {{ $labels.instance }} (env {{ $labels.env }}) exited with {{ $value }} (docs/ops/exit-codes.md).",
            "make drill",
            Page("The last failover drill exited non-zero: failover or failback did not recover in time (70), or "
                 "both recovered but the reference consumer saw duplicates, out-of-order ticks, gaps outside the "
                 "outage windows or a recovery beyond its target (77, DRILL_FAILED). The drill's own figures are "
                 "pushed as feedops_drill_* (job feedops_drill) and kept in var/state/drill/last-report.json "
                 "(docs/ops/consumer.md).",
                 "A real failover may fail the same way, or lose or repeat ticks for the subscribers.",
                 ("make status                                   # last runs; last drill: recovery per phase, ticks "
                  "missed, duplicates, why it failed",
                  "tail -n 100 var/state/logs/worker-0.log"),
                 ("make drill                                    # after fixing what the exit code names",),
                 ESCALATE_OPS)),
        Alert(
            "ComponentRestarting", "operations",
            warn_crit("increase(feedops_supervisor_restarts_total[15m]) >= @T@", T["restarts_warn"], T["restarts_crit"],
                      "1m", lambda v: f"{v} restart{'s' if v != 1 else ''}"),
            "{{ $labels.component }} on {{ $labels.instance }} was restarted ({threshold} in 15m)",
            "The supervisor restarted {{ $labels.component }} on {{ $labels.instance }} (env {{ $labels.env }}) "
            "{{ $value | printf \"%.0f\" }} time(s) in 15 minutes (limit {threshold}) after it failed.",
            "make status",
            Page("A native component (worker, ctp-sim, monitoring) exited on failure or was killed, and its supervisor "
                 "started it again (docs/ops/supervisor.md). One restart is a warning; several in 15 minutes are a "
                 "crash loop.",
                 "Each restart of a worker is a gap in the feed (the restart time plus the backoff: 1 s, doubling per "
                 "failure up to FEEDOPS_RESTART_BACKOFF_MAX_SECONDS); ticks it held when it was killed are lost. "
                 "Repeated login or storm exits may have failed the feed over to the other profile.",
                 (STATUS + "  # restarts, last exit and profile per component",
                  "tail -n 100 var/state/logs/worker-0.log       # why it exited (the component's log)"),
                 ("make status                                   # an exit code a restart cannot fix stops the restarts: "
                  "fix it (docs/ops/exit-codes.md), then make restart",),
                 ESCALATE_OPS)),
        Alert(
            "CalendarRunningOut", "operations",
            warn_crit("feedops_calendar_known_until_timestamp_seconds - time() < @T@", T["calendar_warn_days"] * 86400,
                      T["calendar_crit_days"] * 86400, "1h", lambda v: f"{v // 86400} days"),
            "Holiday calendar of {{ $labels.instance }} runs out within {threshold}",
            "The holiday calendar of " + "{{ $labels.instance }} (env {{ $labels.env }}) is known for {{ $value | humanizeDuration }} "
            "more (limit {threshold}).",
            "make restart",
            Page("The holiday list (lib/feedops/data/holidays.txt or FEEDOPS_HOLIDAYS_FILE) ends soon: after its last year "
                 "every weekday counts as a trading day.",
                 "On unlisted holidays the feed expects sessions: coverage and staleness alerts fire, night sessions "
                 "before holidays are expected.",
                 ("tail -n 5 lib/feedops/data/holidays.txt", "make health ARGS='--format text'   # calendar:holiday-list"),
                 ("# add next year's exchange holidays to lib/feedops/data/holidays.txt (or FEEDOPS_HOLIDAYS_FILE), then",
                  "make restart"),
                 ESCALATE_OPS)),
    )


def meta(T: dict) -> tuple[Alert, ...]:  # same signature as the others; no thresholds
    """Alerts on the monitoring itself."""
    return (
        Alert(
            "Watchdog", "meta",
            (Rule("none", "vector(1)", ""),),
            "Alerting pipeline heartbeat",
            "Always firing: proves Prometheus evaluates rules and Alertmanager delivers to the heartbeat receiver.",
            CHECK_AM,
            Page("A dead man's switch: this alert always fires. Its absence at the heartbeat receiver is the alarm.",
                 "None while it fires. When the heartbeat stops, no alert of this environment reaches anyone.",
                 ("curl -s http://127.0.0.1:9093/api/v2/alerts | python3 -m json.tool | grep -n Watchdog",
                  "curl -s http://127.0.0.1:9090/api/v1/rules | python3 -m json.tool | grep -n health"),
                 (CHECK_AM + "   # the rendered configuration is accepted by amtool",
                  "make premarket                                # starts the monitoring stack"),
                 ESCALATE_META)),
        Alert(
            "PrometheusRuleEvaluationFailures", "meta",
            (Rule("critical", "increase(prometheus_rule_evaluation_failures_total[5m]) > 0", "1m"),),
            "Prometheus fails to evaluate rules in group {{ $labels.rule_group }}",
            "Prometheus {{ $labels.instance }} (env {{ $labels.env }}) failed {{ $value | printf \"%.0f\" }} rule evaluations "
            "of group {{ $labels.rule_group }} in 5 minutes.",
            CHECK_RULES,
            Page("Rule evaluations fail (usually many-to-many matching after a label change in a scrape or push).",
                 "Alerts of the failing group cannot fire.",
                 ("curl -s http://127.0.0.1:9090/api/v1/rules | python3 -m json.tool "
                  "| grep -n -e lastError -e '\"health\": \"err' || echo 'no rule reports an error now'",
                  CHECK_RULES + "   # the committed rules are the generated ones and promtool accepts them"),
                 (CHECK_RULES,),
                 ESCALATE_META)),
        Alert(
            "AlertmanagerNotificationsFailing", "meta",
            (Rule("critical", "sum by (env, job, instance, integration) (rate(alertmanager_notifications_failed_total[5m])) > 0",
                  "5m"),),
            "Alertmanager cannot deliver to {{ $labels.integration }}",
            "Alertmanager {{ $labels.instance }} (env {{ $labels.env }}) fails {{ $value | printf \"%.3f\" }} notifications/s "
            "to {{ $labels.integration }} for 5 minutes.",
            CHECK_AM,
            Page("Notifications to a receiver integration (webhook, slack, wechat, email) fail.",
                 "Alerts are not delivered to the ops channel.",
                 ("curl -s http://127.0.0.1:9093/metrics | grep alertmanager_notifications_failed_total",
                  CHECK_AM + "   # which receivers are configured"),
                 (CHECK_AM, "make premarket                                # re-renders and restarts the stack"),
                 ESCALATE_META)),
        Alert(
            "PushgatewayDown", "meta",
            (Rule("critical", f'up{{job="{PUSHGATEWAY_JOB}"}} == 0', "2m"),),
            "Pushgateway {{ $labels.instance }} is down",
            "Prometheus cannot scrape the Pushgateway {{ $labels.instance }} (env {{ $labels.env }}) for 2 minutes "
            "(up = {{ $value }}): health-check and runbook outcomes are not seen.",
            "make premarket",
            Page("The Pushgateway does not answer Prometheus.",
                 "Health-check, validation and runbook outcomes are invisible; HealthCheckMissing follows.",
                 (STATUS, "curl -s http://127.0.0.1:9091/-/ready"),
                 ("make premarket                                # starts the monitoring stack",),
                 ESCALATE_META)),
    )
