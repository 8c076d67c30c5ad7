"""The worker's Prometheus metrics: one private registry built from feedops.metric_names.

Names, help texts and labels come only from the specs in :mod:`feedops.metric_names`;
this module builds the prometheus-client objects and keeps the few label values the
worker uses. Labels are at most exchange, product_class, profile and reason.
"""

from __future__ import annotations

import datetime as _dt

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily

from .. import metric_names as mn
from ..calendar import BEIJING

#: Latency buckets, seconds: sub-ms up to the 2 s critical threshold and beyond, finer between 5 and
#: 100 ms where the pipeline's p99 lives (50 ms is a bound, so "99 % within 50 ms" is read exactly).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5,
                   1.0, 2.0, 5.0, 10.0)


def build(spec: mn.MetricSpec, registry: CollectorRegistry):
    if spec.kind == "histogram":
        return spec.create(registry, buckets=LATENCY_BUCKETS)
    return spec.create(registry)


class LatencyHistogram:
    """A latency histogram as a collector (TICK_LATENCY by exchange, PIPELINE_LATENCY unlabelled: key "")
    to which the pipeline adds a whole batch without a lock per tick.

    prometheus-client's Histogram takes a lock per observation; at tens of thousands of
    ticks per second that is a measurable share of the pipeline, so the counts are
    plain lists per exchange, read by the scrape (a scrape may see a batch half-added:
    the counts are consistent again at the next one).
    """

    def __init__(self, spec: mn.MetricSpec, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self.spec = spec
        self.buckets = buckets
        self.counts: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}
        if not spec.labels:  # the one series exists (zero) from the start
            self.merge("", [0] * (len(buckets) + 1), 0.0)

    def merge(self, exchange: str, counts: list[int], total: float) -> None:
        """Add a batch's bucket counts (same buckets; the sink writer counts them) and its sum."""
        mine = self.counts.get(exchange)
        if mine is None:
            mine = self.counts[exchange] = [0] * (len(self.buckets) + 1)
            self.sums[exchange] = 0.0
        for i, count in enumerate(counts):
            if count:
                mine[i] += count
        self.sums[exchange] += total

    def collect(self):
        family = HistogramMetricFamily(self.spec.name, self.spec.help, labels=self.spec.labels)
        for exchange, counts in sorted(self.counts.items()):
            snapshot = list(counts)
            cumulative, running = [], 0
            for bound, count in zip(self.buckets, snapshot):
                running += count
                cumulative.append((repr(float(bound)), running))
            cumulative.append(("+Inf", running + snapshot[-1]))
            family.add_metric([exchange] if self.spec.labels else [], cumulative, self.sums.get(exchange, 0.0))
        yield family

    def describe(self):
        yield HistogramMetricFamily(self.spec.name, self.spec.help, labels=self.spec.labels)


class WorkerMetrics:
    """Every metric of one worker process, attribute names as in metric_names."""

    def __init__(self, profile: str):
        self.profile = profile
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = build(mn.WORKER_INFO, r)
        self.start_time = build(mn.WORKER_UP, r)
        self.front_connected = build(mn.FRONT_CONNECTED, r)
        self.logged_in = build(mn.LOGGED_IN, r)
        self.reconnects = build(mn.RECONNECTS, r)
        self.disconnects = build(mn.DISCONNECTS, r)
        self.login_failures = build(mn.LOGIN_FAILURES, r)
        self.flow_control = build(mn.FLOW_CONTROL_REFUSALS, r)
        self.watchdog = build(mn.WATCHDOG_FIRED, r)
        self.instruments_known = build(mn.INSTRUMENTS_KNOWN, r)
        self.instruments_subscribed = build(mn.INSTRUMENTS_SUBSCRIBED, r)
        self.instruments_acknowledged = build(mn.INSTRUMENTS_ACKNOWLEDGED, r)
        self.subscribe_failures = build(mn.SUBSCRIBE_FAILURES, r)
        self.instruments_open = build(mn.INSTRUMENTS_OPEN, r)
        self.instruments_fresh = build(mn.INSTRUMENTS_FRESH, r)
        self.instruments_never_ticked = build(mn.INSTRUMENTS_NEVER_TICKED, r)
        self.coverage = build(mn.COVERAGE_RATIO, r)
        self.ticks_received = build(mn.TICKS_RECEIVED, r)
        self.ticks_published = build(mn.TICKS_PUBLISHED, r)
        self.ticks_dropped = build(mn.DUPLICATES_DROPPED, r)
        self.queue_drops = build(mn.QUEUE_DROPS, r)
        self.queue_depth = build(mn.QUEUE_DEPTH, r)
        self.queue_capacity = build(mn.QUEUE_CAPACITY, r)
        self.latency = LatencyHistogram(mn.TICK_LATENCY)
        r.register(self.latency)
        # registered after ticks_published, and merged before it is counted (Pipeline._account): a scrape,
        # which collects in registration order, never sees more ticks published than latencies observed
        self.pipeline_latency = LatencyHistogram(mn.PIPELINE_LATENCY)
        r.register(self.pipeline_latency)
        self.clock_skew = build(mn.CLOCK_SKEW, r)
        self.last_tick = build(mn.LAST_TICK_TIMESTAMP, r)
        self.sink_up = build(mn.SINK_UP, r)
        self.sink_errors = build(mn.SINK_ERRORS, r)
        self.sink_buffered = build(mn.SINK_BUFFERED, r)
        self.sink_dropped = build(mn.SINK_DROPPED, r)
        self.query_duration = build(mn.INSTRUMENT_QUERY_DURATION, r)
        self.subscribe_duration = build(mn.SUBSCRIBE_DURATION, r)
        # series that must exist from the start (zero) so that rate() and alerts see them
        for metric in (self.front_connected, self.logged_in, self.reconnects):
            metric.labels(profile=profile)
        self.queue_drops.inc(0)
        self.sink_dropped.inc(0)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def calendar_horizon(self, calendar) -> None:
        """Export when the holiday calendar runs out (the end of its last complete year, Beijing
        time; 0 when no year is complete). Not exported on the always-open calendar."""
        if calendar.always_open:
            return
        known = calendar.known_until
        until = 0.0 if known is None else \
            _dt.datetime.combine(known + _dt.timedelta(days=1), _dt.time(), BEIJING).timestamp()
        build(mn.CALENDAR_KNOWN_UNTIL, self.registry).set(until)

    # helpers used by the gateway and pipeline
    def flow_refusal(self, reason: str) -> None:
        self.flow_control.labels(reason=reason).inc()

    def watchdog_fired(self, reason: str) -> None:
        self.watchdog.labels(reason=reason).inc()
