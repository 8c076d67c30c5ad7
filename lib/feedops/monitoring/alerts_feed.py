"""Alerts on the feed: the full-feed workers' own metrics (feedops.metric_names).

Tick alerts (market_hours=True) hold only while the worker reports open instruments
(``feedops_instruments_open``, computed from the exchange calendar), so they are
silent when the market is closed.
"""

from __future__ import annotations

from .config import WORKER_JOB
from .model import Alert, Page, Rule, warn_crit

OPEN = "instance:feedops_instruments_open:sum"
OPEN_X = "instance_exchange:feedops_instruments_open:sum"
WHILE_OPEN = f" and on(env, job, instance) {OPEN} > 0"
WHILE_OPEN_X = f" and on(env, job, instance, exchange) {OPEN_X} > 0"
WORKER = "worker {{ $labels.instance }} (env {{ $labels.env }})"

STATUS = "make status                                   # processes, profile, last runbook runs"
HEALTH = "make health ARGS='--format text'              # the checker's verdict, per check"
#: the worker's own view (FEEDOPS_WORKER_LISTEN); its log in the native runtime (compose: docker compose logs worker)
WORKER_STATUS = "curl -s http://127.0.0.1:9108/status | python3 -m json.tool"
WORKER_LOG = "tail -n 100 var/state/logs/worker-0.log"
WORKER_LOG_NOTE = WORKER_LOG + "          # native runtime; compose: docker compose logs worker"
ESCALATE_FEED = ("If the mitigation does not clear the alert within 10 minutes during a session, call the "
                 "feed on-call lead; during a session every minute is lost market data.")


def _pct(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def _secs(seconds: float) -> str:
    return f"{seconds:g}s"


def alerts(T: dict) -> tuple[Alert, ...]:
    """The feed alerts at thresholds ``T`` (:func:`feedops.monitoring.config.thresholds`)."""
    return (
        Alert(
            "FeedWorkerDown", "feed",
            (Rule("critical", f'up{{job="{WORKER_JOB}"}} == 0 and on() feedops:session_window_open == 1 '
                              "unless on(env) env:feedops_stopped_by_runbook", "2m"),),
            "Feed worker {{ $labels.instance }} is down during the session window",
            "Prometheus has not scraped " + WORKER + " for 2 minutes inside the Beijing session window "
            "(up = {{ $value }}); its shard of instruments is not recorded.",
            "make restart",
            Page("The worker's /metrics endpoint does not answer while a session is scheduled (weekdays 08:50-15:15 "
                 "and 20:50-02:30 Beijing) and the last runbook action was not a shutdown. Alertmanager mutes it while "
                 "the exchange calendar is closed (holidays, and the night before one).",
                 "No ticks from this worker's shard reach the sink: consumers see a gap for every instrument of the shard.",
                 (STATUS, WORKER_LOG_NOTE, HEALTH),
                 ("make restart                                  # restart the worker(s) on the same profile and verify",
                  "make failover ARGS='--to backup'              # if it dies again at login: the primary account/front is the cause"),
                 ESCALATE_FEED)),
        Alert(
            "FeedWorkerAbsent", "feed",
            (Rule("critical", f'absent(up{{job="{WORKER_JOB}"}}) and on() feedops:session_window_open == 1', "5m"),),
            "No feed worker is configured for scraping during the session window",
            f'Prometheus has no target of job {WORKER_JOB} (absent = {{{{ $value }}}}) for 5 minutes inside the Beijing '
            "session window: the scrape configuration lost the worker(s).",
            "make premarket",
            Page(f"Prometheus has no scrape target in job `{WORKER_JOB}` at all, so FeedWorkerDown cannot fire. "
                 "Judged on the same session window as FeedWorkerDown, and muted on exchange holidays likewise.",
                 "Nothing about the feed is watched: every feed alert is blind until the target is back.",
                 ("make status", "curl -s http://127.0.0.1:9090/api/v1/targets | python3 -m json.tool | grep -n scrapePool"),
                 ("make premarket                                # renders the monitoring configuration and starts the stack",),
                 "Tell the owner of the monitoring configuration (monitoring/prometheus/) the same day.")),
        Alert(
            "FeedNotLoggedIn", "feed",
            (Rule("critical", f"max by (env, job, instance) (feedops_logged_in) < 1{WHILE_OPEN}", "2m"),),
            "Feed worker {{ $labels.instance }} is not logged in while the market is open",
            WORKER + " has not been logged in to its market-data front for 2 minutes (feedops_logged_in = {{ $value }}) "
            "while its instruments are in session.",
            "make failover ARGS='--to backup'",
            Page("The worker runs and instruments are in session, but the market-data session is not logged in "
                 "(front unreachable, login refused, or reconnecting).",
                 "No ticks at all from this worker until it logs in again.",
                 (WORKER_STATUS, WORKER_LOG_NOTE, "make validate                                 # fronts reachable, credentials complete"),
                 ("make failover ARGS='--to backup'              # the backup account and fronts",
                  "make restart                                  # when the backup is not configured"),
                 ESCALATE_FEED + " Login refusals (feedops_login_failures_total) go to the broker.")),
        Alert(
            "FeedDisconnectStorm", "feed",
            (Rule("warning", f"sum by (env, job, instance) (increase(feedops_disconnects_total[5m])) >= "
                             f"{T['disconnect_storm_count']}{WHILE_OPEN}", "1m"),),
            "Feed worker {{ $labels.instance }} keeps losing its front",
            WORKER + " was disconnected {{ $value | printf \"%.0f\" }} times in 5 minutes "
            f"(storm: {T['disconnect_storm_count']} or more) while the market is open.",
            "make failover ARGS='--to backup'",
            Page(f"The front dropped the connection {T['disconnect_storm_count']} or more times in 5 minutes during a session.",
                 "Every disconnect loses the ticks until the re-login and resubscription; the worker's own watchdog "
                 "stops it after a storm (exit 15).",
                 (WORKER_STATUS + "  # the worker's own view", WORKER_LOG_NOTE, HEALTH),
                 ("make failover ARGS='--to backup'              # move to the backup front/account",),
                 ESCALATE_FEED + " Persistent storms on both profiles go to the broker's network team.")),
        Alert(
            "FeedCoverageLow", "feed",
            warn_crit(f'feedops_coverage_ratio{{exchange!="all"}} < @T@{WHILE_OPEN_X}',
                      T["coverage_warn_ratio"], T["coverage_crit_ratio"], "5m", _pct),
            "{{ $labels.exchange }} coverage on {{ $labels.instance }} is below {threshold}",
            "Only {{ $value | humanizePercentage }} of the open {{ $labels.exchange }} instruments on " + WORKER +
            " ticked within the staleness window (threshold {threshold}) for 5 minutes.",
            "make restart",
            Page("Coverage is fresh over open instruments per exchange: the share of instruments in session that "
                 "ticked within FEEDOPS_STALENESS_WINDOW_SECONDS.",
                 "Consumers miss prices of the uncovered instruments; strategies on them trade on stale data.",
                 (HEALTH, WORKER_STATUS + "  # stale sample per exchange", WORKER_LOG_NOTE),
                 ("make restart                                  # resubscribes everything",
                  "make failover ARGS='--to backup'              # if coverage stays low: the front misses instruments"),
                 ESCALATE_FEED)),
        Alert(
            "FeedStale", "feed",
            warn_crit(f"instance:feedops_last_tick_age_seconds > @T@{WHILE_OPEN}",
                      T["staleness_warn_seconds"], T["staleness_crit_seconds"], "1m", _secs),
            "Feed on {{ $labels.instance }} is stale (no tick for over {threshold})",
            "The newest tick on " + WORKER + " is {{ $value | humanizeDuration }} old (limit {threshold}) "
            "while instruments are in session.",
            "make restart",
            Page("No tick at all arrived on the worker for longer than the limit while instruments are in session.",
                 "The whole shard is frozen: every consumer sees old prices.",
                 (WORKER_STATUS, HEALTH, WORKER_LOG_NOTE),
                 ("make restart                                  # reconnect and resubscribe",
                  "make failover ARGS='--to backup'              # if the front itself sends nothing"),
                 ESCALATE_FEED)),
        Alert(
            "FeedInstrumentsNeverTicked", "feed",
            (Rule("warning",
                  "(sum by (env, job, instance, exchange) (feedops_instruments_never_ticked) - on(env, job, instance, exchange) "
                  f"(sum by (env, job, instance, exchange) (feedops_instruments_known) - {OPEN_X})) "
                  f"> on(env, job, instance, exchange) {T['never_ticked_ratio']:g} * {OPEN_X}", "30m"),),
            "{{ $labels.exchange }} instruments on {{ $labels.instance }} never ticked",
            "At least {{ $value | printf \"%.0f\" }} open {{ $labels.exchange }} instruments on " + WORKER +
            f" have had no tick since subscription for 30 minutes (more than {_pct(T['never_ticked_ratio'])} of the open ones).",
            "make restart",
            Page("Instruments in session that never ticked since they were subscribed. The count is a lower bound: "
                 "never-ticked instruments minus those not in session.",
                 "Those instruments are missing entirely for consumers; usually a subscription the front silently dropped.",
                 (WORKER_STATUS + "  # never_ticked lists them", HEALTH),
                 ("make restart                                  # resubscribes every instrument",),
                 ESCALATE_FEED)),
        Alert(
            "FeedSubscriptionsIncomplete", "feed",
            (Rule("warning",
                  "sum by (env, job, instance, exchange) (feedops_instruments_known) - on(env, job, instance, exchange) "
                  "sum by (env, job, instance, exchange) (feedops_instruments_acknowledged) > 0 "
                  "and on(env, job, instance) max by (env, job, instance) (feedops_logged_in) == 1",
                  f"{T['subscriptions_incomplete_minutes']}m"),),
            "Subscriptions incomplete on {{ $labels.instance }} ({{ $labels.exchange }})",
            "{{ $value | printf \"%.0f\" }} {{ $labels.exchange }} instruments of " + WORKER + " are still not acknowledged "
            f"{T['subscriptions_incomplete_minutes']} minutes after login.",
            "make restart",
            Page(f"The worker is logged in but, {T['subscriptions_incomplete_minutes']} minutes on, the front has not "
                 "acknowledged every instrument of its shard.",
                 "Unacknowledged instruments do not tick; coverage drops once they are in session.",
                 (WORKER_STATUS, WORKER_LOG + "  # worker.subscribe.* events"),
                 ("make restart                                  # subscribes again in batches",),
                 ESCALATE_FEED)),
        Alert(
            "FeedSubscribeFailures", "feed",
            (Rule("warning", "sum by (env, job, instance, reason) (increase(feedops_subscribe_failures_total[10m])) > 0", "1m"),),
            "Subscriptions refused on {{ $labels.instance }} ({{ $labels.reason }})",
            "{{ $value | printf \"%.0f\" }} subscriptions were refused or not acknowledged (reason {{ $labels.reason }}) on "
            + WORKER + " in the last 10 minutes.",
            "make restart",
            Page("The front refused subscriptions or did not acknowledge them after FEEDOPS_MAX_RETRIES.",
                 "The refused instruments do not tick until a resubscription succeeds.",
                 (WORKER_LOG + "  # worker.subscribe.* events", WORKER_STATUS),
                 ("make restart                                  # subscribe again",),
                 ESCALATE_FEED)),
        Alert(
            "FeedThroughputLow", "feed",
            (Rule("warning", "instance:feedops_ticks_received:rate5m < on(env, job, instance) "
                             f"{T['throughput_warn_ratio']:g} * instance:feedops_ticks_expected_per_second{WHILE_OPEN}", "10m"),),
            "Tick throughput on {{ $labels.instance }} is far below the expected rate",
            WORKER + " receives {{ $value | printf \"%.1f\" }} ticks/s, below "
            f"{_pct(T['throughput_warn_ratio'])} of the expected rate ({T['ticks_per_open_instrument']:g} per second per open "
            "instrument) for 10 minutes.",
            "make restart",
            Page(f"Ticks per second (5-minute rate) are below {_pct(T['throughput_warn_ratio'])} of the expectation: "
                 f"{T['ticks_per_open_instrument']:g} snapshots per second per open instrument, the session's ceiling "
                 "(the same expectation as check_feed_health's throughput check).",
                 "A partial outage: the front delivers a fraction of the market. Lower FEEDOPS_THROUGHPUT_WARN_RATIO "
                 "where illiquid options dominate the shard.",
                 (HEALTH, WORKER_STATUS),
                 ("make restart",
                  "make failover ARGS='--to backup'              # if the primary front is throttled"),
                 ESCALATE_FEED)),
        Alert(
            "FeedTickLatencyHigh", "feed",
            warn_crit(f"instance_exchange:feedops_tick_latency_seconds:p99 > @T@{WHILE_OPEN_X}",
                      T["latency_p99_warn_seconds"], T["latency_p99_crit_seconds"], "10m", _secs),
            "{{ $labels.exchange }} tick latency p99 on {{ $labels.instance }} is above {threshold}",
            "The p99 exchange-to-publish latency of {{ $labels.exchange }} on " + WORKER +
            " is {{ $value | humanizeDuration }} (limit {threshold}) over 5 minutes.",
            "make restart",
            Page("The 99th percentile of exchange time to written by the sink, per exchange, over 5 minutes.",
                 "Consumers get prices late; latency-sensitive strategies are exposed.",
                 (HEALTH, WORKER_STATUS + "  # pipeline latency vs tick latency: ours or the network's",
                  "# the machine's own figures, when the host is suspect (minutes, starts stacks of its own; not during a session): make bench"),
                 ("make restart                                  # clears a backed-up pipeline",
                  "make failover ARGS='--to backup'              # when the front or the network path is slow"),
                 ESCALATE_FEED)),
        Alert(
            "FeedQueueDropping", "feed",
            (Rule("critical", "increase(feedops_queue_dropped_total[5m]) > 0", "1m"),),
            "Worker {{ $labels.instance }} drops ticks: callback queue full",
            WORKER + " dropped {{ $value | printf \"%.0f\" }} ticks in 5 minutes because the callback-to-pipeline queue was full.",
            "make restart",
            Page("The pipeline thread does not keep up with the callback thread; ticks beyond FEEDOPS_QUEUE_MAX are dropped.",
                 "Dropped ticks are lost for good.",
                 (WORKER_STATUS, "top -b -n 1 | head -20                        # CPU starvation on the host"),
                 ("make restart", "# lasting: split the shard (FEEDOPS_SHARD) across more workers"),
                 ESCALATE_FEED)),
        Alert(
            "FeedQueueBacklogged", "feed",
            (Rule("warning", f"feedops_queue_depth / feedops_queue_capacity > {T['queue_backlog_ratio']:g}", "5m"),),
            "Worker {{ $labels.instance }} callback queue is backlogged",
            "The callback queue of " + WORKER + " is {{ $value | humanizePercentage }} full for 5 minutes "
            f"(limit {_pct(T['queue_backlog_ratio'])}).",
            "make restart",
            Page(f"The callback-to-pipeline queue stays more than {_pct(T['queue_backlog_ratio'])} full.",
                 "Latency grows with the queue; once full, ticks are dropped (FeedQueueDropping).",
                 (WORKER_STATUS, "top -b -n 1 | head -20"),
                 ("make restart",),
                 ESCALATE_FEED)),
        Alert(
            "FeedSinkDown", "feed",
            (Rule("critical", "feedops_sink_up == 0", "1m"),),
            "Sink of worker {{ $labels.instance }} is down",
            "The sink of " + WORKER + " refuses writes for 1 minute (feedops_sink_up = {{ $value }}); ticks are buffered.",
            "make premarket",
            Page("The worker cannot write to its sink (Redis unreachable or refusing, file system full or read-only).",
                 "Ticks are buffered up to FEEDOPS_SINK_BUFFER_MAX, then dropped (FeedSinkDropping); consumers see nothing new.",
                 (WORKER_LOG + "  # sink errors name the reason", "redis-cli -u redis://127.0.0.1:6379/0 PING", "df -h var/feed"),
                 ("make premarket                                # brings the stack (Redis) up and verifies the feed",),
                 ESCALATE_FEED)),
        Alert(
            "FeedSinkBuffering", "feed",
            (Rule("warning", "feedops_sink_buffered > 0", "5m"),),
            "Worker {{ $labels.instance }} is buffering ticks for its sink",
            WORKER + " holds {{ $value | printf \"%.0f\" }} ticks buffered for its sink for 5 minutes.",
            "make premarket",
            Page("Ticks wait in the worker's buffer because the sink does not accept them (or is slow).",
                 "Consumers get the ticks late; beyond FEEDOPS_SINK_BUFFER_MAX they are dropped.",
                 (WORKER_LOG_NOTE, "redis-cli -u redis://127.0.0.1:6379/0 INFO memory"),
                 ("make premarket                                # brings the stack (Redis) up and verifies the feed",),
                 ESCALATE_FEED)),
        Alert(
            "FeedSinkDropping", "feed",
            (Rule("critical", "increase(feedops_sink_dropped_total[5m]) > 0", "1m"),),
            "Worker {{ $labels.instance }} drops ticks: sink buffer full",
            WORKER + " dropped {{ $value | printf \"%.0f\" }} ticks in 5 minutes because the sink buffer was full.",
            "make premarket",
            Page("The sink has been down long enough for the buffer (FEEDOPS_SINK_BUFFER_MAX) to fill.",
                 "Dropped ticks are lost for good.",
                 (WORKER_LOG_NOTE, "redis-cli -u redis://127.0.0.1:6379/0 PING"),
                 ("make premarket                                # brings the stack (Redis) up and verifies the feed",),
                 ESCALATE_FEED)),
        Alert(
            "FeedRateLimited", "feed",
            (Rule("warning", "sum by (env, job, instance, reason) (increase(feedops_flow_control_refusals_total[10m])) >= "
                             f"{T['rate_limit_incidents_warn']}", "1m"),),
            "CTP flow control refuses requests of {{ $labels.instance }} ({{ $labels.reason }})",
            "{{ $value | printf \"%.0f\" }} requests of " + WORKER + " were refused by CTP flow control "
            "(reason {{ $labels.reason }}) in the last 10 minutes.",
            "make restart",
            Page("The front refused queries or subscriptions for flow control (-2 too many unprocessed, -3 too many per second).",
                 "Instrument queries and subscriptions are delayed by retries; repeated refusals can get the account throttled.",
                 (WORKER_LOG + "  # worker.instruments.retry, worker.subscribe.refused", "make validate"),
                 ("# lower FEEDOPS_QUERY_RATE_PER_SECOND / raise FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS in envs/<env>.env, then",
                  "make restart"),
                 "If refusals continue at the documented rates, ask the broker for the front's limits.")),
        Alert(
            "FeedWatchdogFired", "feed",
            (Rule("warning", "sum by (env, job, instance, reason) (increase(feedops_watchdog_fired_total[10m])) > 0", "1m"),),
            "Watchdog of {{ $labels.instance }} fired ({{ $labels.reason }})",
            "Watchdog alarms of " + WORKER + " in the last 10 minutes: {{ $value | printf \"%.0f\" }} (reason {{ $labels.reason }}).",
            "make failover ARGS='--to backup'",
            Page("The worker's watchdog saw no connection, no ticks while a session is open, or a disconnect storm.",
                 "The worker stops itself on no_connection and disconnect_storm; the feed is down until restarted.",
                 (WORKER_LOG + "  # worker.watchdog events", STATUS),
                 ("make failover ARGS='--to backup'              # the watchdog reasons are front-side",
                  "make restart                                  # when the backup is not configured"),
                 ESCALATE_FEED)),
    )
