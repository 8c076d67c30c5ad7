"""What the worker's HTTP endpoints answer: /livez, /readyz and /status.

Each answer is read from the running worker's parts (gateway, pipeline, queue, sink,
coverage) on the HTTP server's thread: the parts expose plain values that thread may read
(:class:`feedops.worker.http.HealthServer` calls these through :class:`feedops.worker.service.FeedWorker`).
:class:`LossWindow` keeps the ticks lost over the staleness window for ``ticks_lost_recent``.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any

from .. import clock
from .. import coverage as coverage_mod
from ..log import utc_timestamp
from .book_coverage import COVERAGE_REFRESH_SECONDS
from .sinks import public_target

if TYPE_CHECKING:
    from .service import FeedWorker

LIVENESS_STALL_SECONDS = 10.0


class LossWindow:
    """Ticks lost (queue full, sink buffer full) in the last ``window`` seconds, from the running totals
    sampled once a second: the increase since the oldest sample still inside the window."""

    def __init__(self, window: float, now: float):
        self.window = window
        self._samples: collections.deque[tuple[float, int, int]] = collections.deque([(now, 0, 0)])

    def sample(self, now: float, queue_dropped: int, sink_dropped: int) -> None:
        self._samples.append((now, queue_dropped, sink_dropped))
        while len(self._samples) > 1 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()

    def recent(self, queue_dropped: int, sink_dropped: int) -> dict[str, Any]:
        _, q0, s0 = self._samples[0]
        return {"window_seconds": self.window, "queue_dropped": queue_dropped - q0, "sink_dropped": sink_dropped - s0}


def live(worker: FeedWorker) -> tuple[bool, str]:
    """/livez: the pipeline thread and the main loop are running and not stalled."""
    now = time.monotonic()
    if worker.pipeline.error is not None:
        return False, f"pipeline failed: {worker.pipeline.error!r}"
    if worker.pipeline.is_alive() and now - worker.pipeline.heartbeat > LIVENESS_STALL_SECONDS:
        return False, f"pipeline stalled for {now - worker.pipeline.heartbeat:.0f} s"
    if now - worker.heartbeat > LIVENESS_STALL_SECONDS:
        return False, f"main loop stalled for {now - worker.heartbeat:.0f} s"
    return True, "ok"


def ready(worker: FeedWorker) -> tuple[bool, list[str]]:
    """/readyz: connected, logged in, subscribed, covered, the sink up; else the reasons why not."""
    reasons: list[str] = []
    g = worker.gateway
    if not g.connected:
        reasons.append("market-data front not connected")
    elif not g.logged_in:
        reasons.append("not logged in")
    elif not g.subscriptions.subscription_complete:
        reasons.append(f"subscribing: {len(g.subscriptions.acknowledged)} of {len(g.instruments)} acknowledged")
    elif g.instruments and len(g.subscriptions.failed) > (1.0 - worker.feed.coverage_crit_ratio) * len(g.instruments):
        reasons.append(f"{len(g.subscriptions.failed)} of {len(g.instruments)} subscriptions failed (tried again in rounds)")
    cov = worker.coverage.latest
    crit = worker.feed.coverage_crit_ratio
    if cov is None:
        reasons.append("coverage not computed yet")
    elif cov.ratio is not None and cov.ratio < crit:
        reasons.append(f"coverage {cov.ratio:.3f} below FEEDOPS_COVERAGE_CRIT_RATIO {crit}")
    if not worker.sink.up:
        reasons.append(f"{worker.sink.kind} sink down")
    return not reasons, reasons


def status(worker: FeedWorker, with_table: bool = False) -> dict[str, Any]:
    """/status (lib/feedops/schemas/worker-status.schema.json); ``with_table`` adds every instrument's last tick."""
    cov, columns, last = worker.coverage.compute(max_age=0.0 if with_table else COVERAGE_REFRESH_SECONDS)
    g, p, q, s = worker.gateway, worker.pipeline, worker.queue, worker.sink
    sink_samples = p.sink_latency.values()
    ready_now, reasons = ready(worker)
    by_exchange = {k: {"open": b.open, "fresh": b.fresh, "ratio": b.ratio} for k, b in sorted(cov.by_exchange.items())}
    by_class: dict[str, dict[str, Any]] = {}
    for key, bucket in cov.by_product_class.items():
        cls = key.split("|", 1)[1]
        entry = by_class.setdefault(cls, {"open": 0, "fresh": 0, "ratio": None})
        entry["open"] += bucket.open
        entry["fresh"] += bucket.fresh
    for entry in by_class.values():
        entry["ratio"] = entry["fresh"] / entry["open"] if entry["open"] else None
    front = getattr(g.md, "current_front", None) if g.md is not None else None
    address = f"tcp://{front[0]}:{front[1]}" if isinstance(front, tuple) and len(front) == 2 else g.front_address
    errors = s.errors_total + g.login_failures + len(g.subscriptions.failed) + p.dropped_by_reason.get("invalid", 0)
    body: dict[str, Any] = {
        "service": "feedops-worker",
        "version": "0.1.0",
        "time": utc_timestamp(),
        "now_unix": clock.time(),
        "started_unix": worker.started,
        "profile": worker.profile_name,
        "channel": worker.api.channel,
        "env": worker.feed.env,
        "shard": f"{worker.shard[0]}/{worker.shard[1]}",
        "calendar": worker.calendar.mode,
        "front": {
            "address": address,
            "connected": g.connected,
            "logged_in": g.logged_in,
            "connected_since_unix": g.connected_since,
            "reconnects": g.reconnects,
            "disconnects": {str(k): v for k, v in sorted(g.disconnect_counts.items())},
            "recent_disconnects": len(g.recent_disconnects),
            "login_failures": g.login_failures,
        },
        "trading_day": g.trading_day,
        "instruments": {
            "known": len(columns["instrument"]),
            "subscribed": len(g.subscriptions.subscribed),
            "acknowledged": len(g.subscriptions.acknowledged),
            "failed": len(g.subscriptions.failed),
            "never_ticked": cov.never_ticked.count,
            "open": cov.open,
            "fresh": cov.fresh,
        },
        "instrument_list": g.list_check.as_dict() if g.list_check is not None else None,
        "coverage": {"ratio": cov.ratio, "window_seconds": cov.window_seconds, "by_exchange": by_exchange,
                     "by_product_class": dict(sorted(by_class.items()))},
        "staleness": {"newest_tick_age_seconds": cov.newest_tick_age_seconds,
                      "oldest_open_tick_age_seconds": cov.oldest_open_tick_age_seconds},
        "throughput": {"ticks_per_second": round(p.ticks_per_second(), 3), "ticks_received_total": q.received,
                       "ticks_published_total": p.published_total, "expected_ticks_per_second": None},
        "latency": {**dict(zip(("p50_seconds", "p99_seconds"), p.percentiles(p.exchange_latency, (0.5, 0.99)))),
                    "clock_skew_seconds": round(p.skew, 6)},
        "pipeline_latency": {**dict(zip(("p50_seconds", "p99_seconds"), p.percentiles(sink_samples, (0.5, 0.99)))),
                             "samples": len(sink_samples)},
        "rate_limit_incidents_total": g.rate_limit_incidents,
        "errors_total": errors,
        "queue": {"depth": len(q), "capacity": q.capacity, "dropped_total": q.dropped},
        "ticks_lost_recent": worker.losses.recent(q.dropped, s.dropped_total),
        "sink": {"kind": s.kind, "target": public_target(s.target), "up": s.up, "buffered": s.buffered,
                 "dropped_total": s.dropped_total, "errors_total": s.errors_total},
        "ready": ready_now,
        "ready_reasons": reasons,
        "never_ticked": cov.never_ticked.as_dict(),
        "stale": cov.stale.as_dict(),
        "ticks_dropped": dict(sorted(p.dropped_by_reason.items())),
        "subscription_failed": sorted(g.subscriptions.failed)[:coverage_mod.DEFAULT_SAMPLE],
    }
    if with_table:
        body["instrument_table"] = worker.book.table_of(columns, last)
    return body
