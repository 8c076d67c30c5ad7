"""The reference consumer at work: a read loop on a thread, its metrics, its HTTP endpoints.

:class:`ReferenceConsumer` reads batches from a source (:mod:`.sources`), counts them in
a :class:`~.tracker.TickTracker` at :func:`feedops.clock.time`, then acknowledges them
(a tick is acknowledged only once counted). A source that fails while running is
retried once a second (``consumer.source.down`` / ``consumer.source.up`` log lines);
the counts stay.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .. import clock
from .. import metric_names as mn
from ..httpserve import BackgroundServer, JsonHandler
from ..log import get_logger
from .tracker import TickTracker

_log = get_logger("consumer")
REPORT_VERSION = 1


class ConsumerMetrics:
    """The consumer's figures as Prometheus metrics (names from feedops.metric_names), labelled by exchange."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.ticks = mn.CONSUMER_TICKS.create(registry)
        self.duplicates = mn.CONSUMER_DUPLICATES.create(registry)
        self.out_of_order = mn.CONSUMER_OUT_OF_ORDER.create(registry)
        self.gaps = mn.CONSUMER_GAPS.create(registry)
        self.missed = mn.CONSUMER_GAP_MISSED.create(registry)
        self.lag = mn.CONSUMER_LAG.create(registry, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.last_tick = mn.CONSUMER_LAST_TICK.create(registry)
        self.instruments = mn.CONSUMER_INSTRUMENTS.create(registry)
        self.source_up = mn.CONSUMER_SOURCE_UP.create(registry)
        self.pending = mn.CONSUMER_PENDING.create(registry)
        self.recovery = mn.CONSUMER_RECOVERY.create(registry)

    def count(self, exchange: str, verdict: str, tick: dict, seen_at: float, missed: int) -> None:
        self.ticks.labels(exchange=exchange).inc()
        if verdict == "duplicate":
            self.duplicates.labels(exchange=exchange).inc()
        elif verdict == "out_of_order":
            self.out_of_order.labels(exchange=exchange).inc()
        elif verdict == "gap":
            self.gaps.labels(exchange=exchange).inc()
            self.missed.labels(exchange=exchange).inc(missed)
        self.lag.observe(max(0.0, seen_at - float(tick["recv_ts"])))
        if verdict in ("ok", "gap"):
            self.last_tick.labels(exchange=exchange).set(float(tick["exchange_ts"]))


class ReferenceConsumer:
    """Reads ``source`` on a daemon thread and counts what it sees (see the package docstring).

    ``now`` is the clock the ticks are seen at (:func:`feedops.clock.time`; tests pass their own).
    """

    def __init__(self, source, tracker: TickTracker | None = None, *, registry: CollectorRegistry | None = None,
                 now: Callable[[], float] = clock.time, group: str | None = None):
        self.source = source
        self.tracker = tracker or TickTracker()
        self.registry = registry or CollectorRegistry()
        self.metrics = ConsumerMetrics(self.registry)
        self.now = now
        self.group = group if group is not None else getattr(source, "group", None)
        self.started_at = now()
        self.source_up = False
        self.source_errors = 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failure: BaseException | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "ReferenceConsumer":
        """Open the source (raises :class:`~.sources.SourceError`) and start reading on a daemon thread."""
        self.source.open()
        self.source_up = True
        self.metrics.source_up.set(1)
        self._thread = threading.Thread(target=self._run, name="feedops-consumer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        """Stop reading (the batch in hand is counted and acknowledged) and return the final report."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        report = self.report()
        self.source.close()
        return report

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    batch = self.source.read(0.5)
                    if batch:
                        with self._lock:  # counted and acknowledged together: a report sees both or neither
                            self._count(batch)
                            self.source.ack([receipt for receipt, _ in batch if receipt is not None])
                    if not self.source_up:
                        self.source_up = True
                        self.metrics.source_up.set(1)
                        _log.info("consumer.source.up", f"{self.source.target} answers again", source=self.source.target)
                except Exception as exc:  # a source outage: keep the counts, retry
                    self.source_errors += 1
                    if self.source_up:
                        _log.error("consumer.source.down", f"reading {self.source.target} failed "
                                   f"({exc.__class__.__name__}: {exc}); retrying every second", source=self.source.target)
                    self.source_up = False
                    self.metrics.source_up.set(0)
                    self._stop.wait(1.0)
        except BaseException as exc:  # pragma: no cover - a bug: surfaced by the CLI as INTERNAL
            self.failure = exc
            _log.error("consumer.failed", f"the read loop died: {exc!r}")
            raise

    def _count(self, batch: list[tuple[Any, dict]]) -> None:
        with self._lock:
            tracker, metrics = self.tracker, self.metrics
            for _, tick in batch:
                seen_at = self.now()
                before = tracker.totals["gap_missed_ticks"]
                verdict = tracker.observe(tick, seen_at)
                if verdict != "malformed":
                    metrics.count(str(tick.get("exchange") or "UNKNOWN"), verdict, tick, seen_at,
                                  tracker.totals["gap_missed_ticks"] - before)
            metrics.instruments.set(len(tracker.instruments))
            self._changed.notify_all()

    # ------------------------------------------------------------------ outages
    def mark_outage(self, phase: str, at: float | None = None) -> float:
        """Mark the start of outage ``phase`` (just before the fault); returns the instant marked."""
        with self._lock:
            at = self.now() if at is None else at
            self.tracker.mark_outage(phase, at)
        _log.info("consumer.outage.start", f"outage {phase} starts", phase=phase, at=at)
        return at

    def mark_resume(self, phase: str, at: float | None = None) -> float:
        """Mark the start of the new session of ``phase`` (the old one stopped); raises KeyError without a start."""
        with self._lock:
            at = self.now() if at is None else at
            self.tracker.mark_resume(phase, at)
        _log.info("consumer.outage.resume", f"outage {phase}: the new session starts", phase=phase, at=at)
        return at

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """Wait (bounded) until ``predicate(report without instruments)`` holds; return that report or None."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                report = self.report(instruments=False)
                if predicate(report):
                    return report
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(min(remaining, 0.5))

    def wait_recovered(self, phase: str, timeout: float) -> dict[str, Any] | None:
        """The outage summary of ``phase`` once it recovered, or None at the timeout."""
        report = self.wait_for(lambda r: bool(r["outages"].get(phase, {}).get("recovered")), timeout)
        return None if report is None else report["outages"][phase]

    # ------------------------------------------------------------------ report
    def report(self, *, instruments: bool = True) -> dict[str, Any]:
        with self._lock:  # the counts and the acknowledgements of the same batches (the read loop holds it)
            stats = self.source.stats() if self.source_up else {
                "acknowledged": getattr(self.source, "acknowledged", None), "pending": None, "group_lag": None}
            body = self.tracker.report(instruments=instruments)
            for phase, summary in body["outages"].items():
                if summary["recovery_seconds"] is not None:
                    self.metrics.recovery.labels(phase=phase).set(summary["recovery_seconds"])
        if stats.get("pending") is not None:
            self.metrics.pending.set(stats["pending"])
        body["totals"].update({k: stats.get(k) for k in ("acknowledged", "pending", "group_lag")})
        return {"version": REPORT_VERSION, "source": self.source.target, "kind": self.source.kind, "group": self.group,
                "started_at": round(self.started_at, 3), "at": round(self.now(), 3), "source_up": self.source_up,
                "source_errors": self.source_errors, **body}

    def metrics_text(self) -> bytes:
        self.report(instruments=False)  # refreshes the pending and recovery gauges
        return generate_latest(self.registry)


class ConsumerHTTP(BackgroundServer):
    """``/metrics``, ``/report``, ``/livez`` and ``POST /outage`` on one port; bound in the constructor."""

    def __init__(self, consumer: ReferenceConsumer, host: str, port: int):
        super().__init__(host, port, _handler(consumer), "feedops-consumer-http")


def _handler(consumer: ReferenceConsumer):
    class Handler(JsonHandler):
        server_version = "feedops-consumer"

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            if url.path == "/metrics":
                self._send(200, consumer.metrics_text(), CONTENT_TYPE_LATEST)
            elif url.path == "/report":
                self._json(200, consumer.report(instruments=query.get("instruments", ["1"])[0] not in ("0", "false")))
            elif url.path == "/livez":
                alive = consumer.running
                self._json(200 if alive else 503, {"status": "pass" if alive else "fail", "source_up": consumer.source_up})
            else:
                self._json(404, {"error": f"no such path {url.path}; use /metrics, /report, /livez or POST /outage"})

        def do_POST(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            phase, event = query.get("phase", [""])[0], query.get("event", [""])[0]
            if url.path != "/outage":
                self._json(404, {"error": f"no such path {url.path}; POST /outage?phase=NAME&event=start|resume"})
            elif not phase or event not in ("start", "resume"):
                self._json(400, {"error": "POST /outage needs phase=NAME and event=start or event=resume"})
            else:
                try:
                    at = consumer.mark_outage(phase) if event == "start" else consumer.mark_resume(phase)
                except KeyError as exc:
                    self._json(409, {"error": str(exc.args[0])})
                    return
                self._json(200, {"phase": phase, "event": event, "at": at})

    return Handler
