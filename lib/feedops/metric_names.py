"""Every Prometheus metric name feedops exposes or pushes, defined once.

Code creates metrics from these specs (``spec.name``, ``spec.help``,
``spec.labels``); alert rules, dashboards and docs refer to the same names and a
test checks they only use names listed here. Conventions: one prefix
(``feedops_``), base units in the name (``_seconds``, ``_ratio``, ``_bytes``),
counters end in ``_total`` (the name given here is the exposed name; for
prometheus-client counters pass ``spec.base`` which drops ``_total``), labels are
low-cardinality only: exchange, product_class, profile, reason (never an
instrument).
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "feedops_"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # counter | gauge | histogram | info
    help: str
    labels: tuple[str, ...] = ()

    @property
    def base(self) -> str:
        """Name to hand to prometheus-client (it appends ``_total`` to counters itself)."""
        if self.kind == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        if self.kind == "info" and self.name.endswith("_info"):
            return self.name[: -len("_info")]
        return self.name

    def create(self, registry, **kwargs):
        """The prometheus-client metric for this spec, registered in ``registry``."""
        import prometheus_client as pc  # lazy: checkers keep their import time small

        cls = {"counter": pc.Counter, "gauge": pc.Gauge, "histogram": pc.Histogram, "info": pc.Info}[self.kind]
        return cls(self.base, self.help, self.labels, registry=registry, **kwargs)


def _m(name: str, kind: str, help_: str, *labels: str) -> MetricSpec:
    return MetricSpec(PREFIX + name, kind, help_, tuple(labels))


# ---------------------------------------------------------------- worker (full_feed_subscription.py)
WORKER_INFO = _m("worker_info", "info", "Worker identity: profile, channel, environment, shard.")
WORKER_UP = _m("worker_start_time_seconds", "gauge", "Unix time the worker process started.")
FRONT_CONNECTED = _m("front_connected", "gauge", "1 while the market-data front is connected.", "profile")
LOGGED_IN = _m("logged_in", "gauge", "1 while the market-data session is logged in.", "profile")
RECONNECTS = _m("reconnects_total", "counter", "Front reconnections (connected again after a disconnect).", "profile")
DISCONNECTS = _m("disconnects_total", "counter", "Front disconnects by CTP reason code (e.g. 4097).", "profile", "reason")
LOGIN_FAILURES = _m("login_failures_total", "counter", "Rejected logins and authentications.", "profile", "reason")
FLOW_CONTROL_REFUSALS = _m("flow_control_refusals_total", "counter",
                           "Rate-limit incidents: requests refused by CTP flow control (-2, -3, query not ready).", "reason")
WATCHDOG_FIRED = _m("watchdog_fired_total", "counter", "Watchdog alarms (no_connection, no_ticks, disconnect_storm).", "reason")
INSTRUMENTS_KNOWN = _m("instruments_known", "gauge", "Instruments in this worker's shard of the instrument list.", "exchange", "product_class")
INSTRUMENTS_SUBSCRIBED = _m("instruments_subscribed", "gauge", "Instruments requested with SubscribeMarketData.", "exchange")
INSTRUMENTS_ACKNOWLEDGED = _m("instruments_acknowledged", "gauge", "Instruments whose subscription was acknowledged.", "exchange")
SUBSCRIBE_FAILURES = _m("subscribe_failures_total", "counter", "Instruments whose subscription was refused or not acknowledged.", "reason")
INSTRUMENTS_OPEN = _m("instruments_open", "gauge", "Subscribed instruments whose trading session is open now.", "exchange", "product_class")
INSTRUMENTS_FRESH = _m("instruments_fresh", "gauge",
                       "Open instruments that ticked within the staleness window.", "exchange", "product_class")
INSTRUMENTS_NEVER_TICKED = _m("instruments_never_ticked", "gauge", "Subscribed instruments with no tick since subscription.", "exchange")
COVERAGE_RATIO = _m("coverage_ratio", "gauge", "Fresh over open instruments (1 when none is open).", "exchange")
TICKS_RECEIVED = _m("ticks_received_total", "counter", "Depth-market-data callbacks received.", "exchange")
TICKS_PUBLISHED = _m("ticks_published_total", "counter", "Ticks written to the sink.", "exchange")
DUPLICATES_DROPPED = _m("ticks_dropped_total", "counter",
                        "Ticks dropped by the pipeline (duplicate, replay, backwards, invalid).", "reason")
QUEUE_DROPS = _m("queue_dropped_total", "counter", "Ticks dropped because the callback queue was full.")
QUEUE_DEPTH = _m("queue_depth", "gauge", "Ticks waiting in the callback-to-pipeline queue.")
QUEUE_CAPACITY = _m("queue_capacity", "gauge", "Bound of the callback-to-pipeline queue.")
TICK_LATENCY = _m("tick_latency_seconds", "histogram", "Exchange time to publish, corrected for clock skew.", "exchange")
CLOCK_SKEW = _m("clock_skew_seconds", "gauge",
                "Measured offset between the exchange's clock and ours (smallest receive - exchange time of the last "
                "minute when beyond 1 s, else 0): tick_latency_seconds excludes it, the true delay is latency + skew.")
PIPELINE_LATENCY = _m("pipeline_latency_seconds", "histogram",
                      "Callback receive to written by the sink: the worker's own share of the tick latency.")
LAST_TICK_TIMESTAMP = _m("last_tick_timestamp_seconds", "gauge", "Unix time the last tick was received.", "exchange")
SINK_UP = _m("sink_up", "gauge", "1 while the sink accepts writes.")
SINK_ERRORS = _m("sink_errors_total", "counter", "Sink write or connection errors.", "reason")
SINK_BUFFERED = _m("sink_buffered", "gauge", "Ticks buffered while the sink is down.")
SINK_DROPPED = _m("sink_dropped_total", "counter", "Ticks dropped because the sink buffer was full.")
INSTRUMENT_QUERY_DURATION = _m("instrument_query_duration_seconds", "gauge", "Time the last instrument-list query took.")
SUBSCRIBE_DURATION = _m("subscribe_duration_seconds", "gauge", "Time from login to all subscriptions acknowledged.")
CALENDAR_KNOWN_UNTIL = _m("calendar_known_until_timestamp_seconds", "gauge",
                          "Unix time the holiday calendar is known until (end of its last complete year, Beijing); "
                          "absent on the always-open calendar.")

# ---------------------------------------------------------------- checkers (pushed to Pushgateway)
CHECK_STATUS = _m("check_status", "gauge", "Outcome of the last checker run: 0 pass, 1 warn, 2 fail, 3 unknown.", "checker")
CHECK_VALUE = _m("check_observed_value", "gauge", "Observed value per check of the last run.", "checker", "check")
CHECK_CHECK_STATUS = _m("check_check_status", "gauge", "Status per check of the last run (0 pass, 1 warn, 2 fail, 3 unknown).", "checker", "check")
CHECK_DURATION = _m("check_duration_seconds", "gauge", "Wall time of the last checker run.", "checker")
CHECK_LAST_RUN = _m("check_last_run_timestamp_seconds", "gauge", "Unix time of the last checker run.", "checker")
CHECK_LAST_SUCCESS = _m("check_last_success_timestamp_seconds", "gauge", "Unix time of the last passing checker run.", "checker")

# ---------------------------------------------------------------- runbook (start_live_env.sh, pushed)
RUNBOOK_EXIT_CODE = _m("runbook_exit_code", "gauge", "Exit code of the last runbook run per mode.", "mode")
RUNBOOK_DURATION = _m("runbook_duration_seconds", "gauge", "Duration of the last runbook run per mode.", "mode")
RUNBOOK_LAST_RUN = _m("runbook_last_run_timestamp_seconds", "gauge", "Unix time of the last runbook run per mode.", "mode")
RUNBOOK_LAST_SUCCESS = _m("runbook_last_success_timestamp_seconds", "gauge", "Unix time of the last successful run per mode.", "mode")
ACTIVE_PROFILE = _m("active_profile", "gauge", "1 for the credential profile currently active.", "profile")

# ---------------------------------------------------------------- supervisor (native runtime keepers, pushed)
SUPERVISOR_RESTARTS = _m("supervisor_restarts_total", "counter",
                         "Restarts of a native component by its supervisor after it failed (state dir count).", "component")
SUPERVISOR_FAILOVERS = _m("supervisor_failovers_total", "counter",
                          "Automatic failovers to the other profile decided by a worker's supervisor.", "component")

# ---------------------------------------------------------------- ctp-sim
SIM_TICKS_SENT = _m("sim_ticks_sent_total", "counter", "Depth-market-data ticks the simulator sent.", "exchange")
SIM_SESSIONS = _m("sim_sessions", "gauge", "Client sessions connected to the simulator.", "kind")
SIM_LOGINS = _m("sim_logins_total", "counter", "Login attempts seen by the simulator.", "result")
SIM_SUBSCRIBED = _m("sim_instruments_subscribed", "gauge", "Instruments subscribed across simulator sessions.")
SIM_FAULT_ACTIVE = _m("sim_fault_active", "gauge", "1 while a fault is injected.", "fault")
SIM_QUERY_REFUSALS = _m("sim_flow_control_refusals_total", "counter", "Queries the simulator refused for flow control.", "reason")

# ---------------------------------------------------------------- reference consumer (feedops-consumer, scraped or pushed)
CONSUMER_TICKS = _m("consumer_ticks_total", "counter", "Ticks the reference consumer read from the sink.", "exchange")
CONSUMER_DUPLICATES = _m("consumer_duplicates_total", "counter",
                         "Ticks the reference consumer saw twice (same trading day, exchange time and volume).", "exchange")
CONSUMER_OUT_OF_ORDER = _m("consumer_out_of_order_total", "counter",
                           "Ticks older (exchange time) than the instrument's newest tick already read.", "exchange")
CONSUMER_GAPS = _m("consumer_gaps_total", "counter",
                   "Exchange-time gaps between consecutive ticks of an instrument beyond its usual rhythm "
                   "(closed session time not counted).", "exchange")
CONSUMER_GAP_MISSED = _m("consumer_gap_missed_ticks_total", "counter",
                         "Ticks the gaps swallowed, estimated from each instrument's usual interval.", "exchange")
CONSUMER_LAG = _m("consumer_lag_seconds", "histogram", "Time from the worker's receive time to the consumer reading the tick.")
CONSUMER_LAST_TICK = _m("consumer_last_tick_timestamp_seconds", "gauge",
                        "Exchange time of the newest tick the consumer read.", "exchange")
CONSUMER_INSTRUMENTS = _m("consumer_instruments", "gauge", "Instruments the consumer has read at least one tick of.")
CONSUMER_SOURCE_UP = _m("consumer_source_up", "gauge", "1 while the consumer's source (Redis, sink directory) answers.")
CONSUMER_PENDING = _m("consumer_pending", "gauge", "Entries delivered to the consumer's group and not yet acknowledged.")
CONSUMER_RECOVERY = _m("consumer_outage_recovery_seconds", "gauge",
                       "Outage start to coverage back above the threshold, seen by the consumer, per marked phase.", "phase")

# ---------------------------------------------------------------- failover drill (start_live_env.sh drill, pushed)
DRILL_RECOVERY = _m("drill_recovery_seconds", "gauge",
                    "Outage start to coverage back above the threshold, seen by the reference consumer "
                    "(phase failover or failback); absent when it did not recover.", "phase")
DRILL_RECOVERY_TARGET = _m("drill_recovery_target_seconds", "gauge",
                           "The drill's recovery target: instruments / subscribe batch size x pause + 5 s.")
DRILL_TICKS_MISSED = _m("drill_ticks_missed", "gauge", "Ticks the reference consumer missed in the outage window.", "phase")
DRILL_DUPLICATES = _m("drill_duplicates", "gauge", "Duplicate ticks the reference consumer saw during the drill.")
DRILL_OUT_OF_ORDER = _m("drill_out_of_order", "gauge", "Out-of-order ticks the reference consumer saw during the drill.")
DRILL_GAPS_OUTSIDE = _m("drill_gaps_outside_outages", "gauge",
                        "Gaps the reference consumer saw outside the drill's outage windows.")
DRILL_CONSUMER_LAG = _m("drill_consumer_lag_seconds", "gauge",
                        "Reference consumer lag (receive time to read) over the drill, by statistic (p50, p99, max).",
                        "statistic")
DRILL_EXIT_CODE = _m("drill_exit_code", "gauge", "Exit code of the last drill (docs/ops/exit-codes.md).")
DRILL_LAST_RUN = _m("drill_last_run_timestamp_seconds", "gauge", "Unix time the last drill's report was made.")

#: Pushgateway job names (grouping key ``job`` + ``instance``), one per pushing program.
PUSH_JOB_VALIDATE = "feedops_validate_env"
PUSH_JOB_HEALTH = "feedops_check_feed_health"
PUSH_JOB_RUNBOOK = "feedops_runbook"
PUSH_JOB_SUPERVISOR = "feedops_supervisor"
PUSH_JOB_CONSUMER = "feedops_consumer"
PUSH_JOB_DRILL = "feedops_drill"


def all_specs() -> list[MetricSpec]:
    return [v for v in globals().values() if isinstance(v, MetricSpec)]


def exposed_names() -> set[str]:
    """Every series-family name a scrape can show, including histogram/info suffixes."""
    names: set[str] = set()
    for spec in all_specs():
        names.add(spec.name)
        if spec.kind == "histogram":
            names.update({spec.name + "_bucket", spec.name + "_sum", spec.name + "_count", spec.name + "_created"})
        if spec.kind == "counter":
            names.add(spec.base + "_created")
    return names
