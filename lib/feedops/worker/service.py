"""The full-feed worker: wires gateway, queue, pipeline, sink, coverage and HTTP together, and runs them.

:class:`FeedWorker` is built from the loaded settings (every problem in the setup
raises :class:`WorkerError` with its exit code before anything connects), then
:meth:`FeedWorker.run` runs on the main thread until :meth:`request_stop`
(SIGTERM/SIGINT in the CLI: :func:`stop_on_signals`) or a fatal condition. Shutdown
order: release the CTP API (main thread), drain the queue through the pipeline, flush
and close the sink, stop the HTTP server.

What the HTTP endpoints answer is in :mod:`feedops.worker.status`, the coverage and its
gauges in :mod:`feedops.worker.book_coverage`, the one-shot ``--probe`` in
:mod:`feedops.worker.probe`.
"""

from __future__ import annotations

import faulthandler
import signal
import threading
import time
from typing import Any, Callable

from .. import clock
from ..ctpapi import CtpApi
from ..exitcodes import Worker
from ..log import get_logger
from ..settings import parse_shard
from . import resume
from . import status as status_mod
from .book import InstrumentBook
from .book_coverage import COVERAGE_REFRESH_SECONDS, BookCoverage
from .dedupe import Deduper
from .errors import WorkerError
from .gateway import Gateway
from .http import HealthServer
from .inputs import load_api_of, load_calendar
from .metrics import LATENCY_BUCKETS, WorkerMetrics
from .pipeline import Pipeline, TickQueue
from .sinks import SinkError, public_target
from .status import LossWindow
from .ticks import Normaliser
from .tuning import tune_interpreter
from .writer import SinkWriter

_log = get_logger("worker")


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


#: A stop that has not finished this long after the request dumps the threads' stacks (docs/ops/worker.md).
STOP_STACKS_AFTER_SECONDS = 30.0


def stop_on_signals(request_stop: Callable[[str], None]) -> None:
    """SIGTERM and SIGINT call ``request_stop("received SIGTERM")``. The handler logs nothing: it runs on the
    main thread between two bytecodes, possibly inside the logger's (non-reentrant) lock, where a log line
    would deadlock the worker until the runbook's SIGKILL."""
    def on_signal(signum: int, _frame: Any) -> None:
        request_stop(f"received {signal.Signals(signum).name}")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)


class FeedWorker:
    """One worker process: one profile, one shard, one CTP session."""

    def __init__(self, settings, *, profile: str | None = None, api: CtpApi | None = None):
        feed = settings.feed
        self.settings = settings
        self.feed = feed
        self.profile_name = profile or feed.active_profile
        self.shard = parse_shard(feed.shard)
        self.calendar = load_calendar(feed)
        self.api = load_api_of(feed.channel, api)
        self.metrics = WorkerMetrics(self.profile_name)
        self.metrics.info.info({"profile": self.profile_name, "channel": feed.channel, "env": feed.env,
                                "shard": feed.shard, "api_version": self.api.version})
        self.started = time.time()
        self.metrics.start_time.set(self.started)
        self.metrics.calendar_horizon(self.calendar)
        self.book = InstrumentBook()
        self.queue = TickQueue(feed.queue_max)
        self.normaliser = Normaliser(self.calendar, self.book.exchange_of)
        self.deduper = Deduper(self.book.ids)  # one id per instrument for dedupe and coverage
        try:
            self.sink = SinkWriter(feed, self.shard, LATENCY_BUCKETS,
                                   on_error=lambda reason: self.metrics.sink_errors.labels(reason=reason).inc())
        except SinkError as exc:
            raise WorkerError(Worker.SINK, f"FEEDOPS_SINK_URL: {exc}; fix: use file:<writable dir> or "
                              "redis://host:port/db", event="worker.sink.invalid") from None
        self.pipeline = Pipeline(self.queue, self.normaliser, self.deduper, self.book, self.sink, self.metrics)
        self.coverage = BookCoverage(self.book, self.calendar, feed.staleness_window_seconds, self.metrics)
        self.gateway = Gateway(self.api, settings, self.profile_name, self.metrics, self.queue.offer, self.calendar,
                               last_tick_age=self._last_tick_age, any_open=self.coverage.any_open, shard=self.shard)
        self.gateway.on_login = self._on_login
        self._stop = threading.Event()
        self._stop_reason = "stop requested"
        self._stop_requested = False  # set before the event: a nested request returns before its lock
        self.heartbeat = time.monotonic()  # of the main loop (/livez)
        self._next_coverage = 0.0
        # /status reports the ticks lost over the staleness window (the health check reads the Prometheus counters
        # over the same window, at least 60 s there: increase() needs a few scrapes)
        self.losses = LossWindow(float(feed.staleness_window_seconds), time.monotonic())
        self.http: HealthServer | None = None
        self._bind(feed.worker_listen)

    # ------------------------------------------------------------------ setup
    def _bind(self, listen: str) -> None:
        host, port = _split_listen(listen)
        try:
            self.http = HealthServer(host, port, metrics=self.metrics.render, live=self.live, ready=self.ready,
                                     status=self.status)
        except OSError as exc:
            self.sink.close()
            raise WorkerError(Worker.LISTEN, f"FEEDOPS_WORKER_LISTEN: cannot listen on {listen} ({exc.strerror or exc}); "
                              "fix: stop what uses the port or choose another with --listen host:port",
                              event="worker.listen.failed") from None

    @property
    def listen_address(self) -> str:
        return self.http.address if self.http else ""

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask :meth:`run` to stop. Safe in a signal handler: it only sets a flag and logs nothing (a handler
        that logged while the main thread held the log's lock would deadlock the worker).

        Only the first request does anything. A stop brings two SIGTERMs (the runbook signals the process
        group and the supervisor forwards its own), and the second handler can run inside the first one's
        ``Event.set()``, which holds the event's lock (not reentrant): had it called ``set()`` too, the main
        thread would wait for its own lock forever (CI saw it, the stacks showing set() inside set())."""
        if self._stop_requested:
            return
        self._stop_requested = True
        self._stop_reason = reason
        self._stop.set()
        # still running this long after the request: every thread's stack to stderr (the log), from C, no lock
        faulthandler.dump_traceback_later(STOP_STACKS_AFTER_SECONDS, exit=False)

    def _on_login(self, trading_day: str | None) -> None:
        if trading_day:
            self.deduper.session_trading_day = trading_day
            self.normaliser.session_trading_day = trading_day

    # ------------------------------------------------------------------ run
    def run(self) -> Worker:
        """Run until stopped; return Worker.OK, Worker.TICKS_LOST (stopped, but ticks were discarded: the
        count is logged at ERROR by :meth:`shutdown`) or raise WorkerError."""
        code = self._run()
        return Worker.TICKS_LOST if code == Worker.OK and self.lost_ticks() else code

    def lost_ticks(self) -> dict[str, int]:
        """Ticks this worker received and had to discard, by where (only the non-zero ones)."""
        counts = {"queue_full": self.queue.dropped, "queue_abandoned": len(self.queue),
                  "sink_buffer_full": self.sink.dropped_total, "sink_unflushed": self.sink.buffered}
        return {where: n for where, n in counts.items() if n}

    def _run(self) -> Worker:
        assert self.http is not None
        self.http.start()
        try:
            try:
                self.sink.open()
            except SinkError as exc:
                raise WorkerError(Worker.SINK, f"FEEDOPS_SINK_URL: {exc}; fix: point it at a writable directory",
                                  event="worker.sink.invalid") from None
            self.pipeline.start()
            _log.info("worker.started", f"worker up: profile {self.profile_name}, channel {self.api.channel}, shard "
                      f"{self.feed.shard}, sink {self.sink.kind}, listening on {self.listen_address}",
                      profile=self.profile_name, channel=self.api.channel, listen=self.listen_address,
                      sink=public_target(self.sink.target))
            try:
                instruments = self.gateway.load_instruments(stop=self._stop.is_set)
            except WorkerError as exc:
                if exc.code == Worker.OK:
                    _log.info("worker.stopping", f"{self._stop_reason} while loading instruments: stopping",
                              reason=self._stop_reason)
                    return Worker.OK
                raise
            self.book.load(instruments)
            self._resume_dedupe()
            tune_interpreter()
            self.gateway.start_md()
            while not self._stop.is_set():
                self.heartbeat = time.monotonic()
                self.gateway.step(0.1)
                if self.pipeline.error is not None:
                    raise WorkerError(Worker.INTERNAL, f"the pipeline thread failed: {self.pipeline.error!r}",
                                      event="worker.internal")
                if time.monotonic() >= self._next_coverage:
                    self.refresh()
            _log.info("worker.stopping", f"{self._stop_reason}: releasing the API, draining the queue, flushing the sink",
                      reason=self._stop_reason)
            return Worker.OK
        finally:
            self.shutdown()

    def _resume_dedupe(self) -> None:
        """Seed the deduper with the last tick per instrument the sink holds (before subscribing: a replaying
        front after a restart or a failover then adds nothing). A sink that cannot be read is logged; the
        worker runs with the in-process state only."""
        started = time.monotonic()
        wanted = set(self.book.instruments)
        try:
            state, source = resume.from_sink(self.feed, self.shard, wanted)
        except Exception as exc:  # any read failure: start without the sink's state
            _log.warning("worker.dedupe.resume_failed", f"cannot read the last ticks back from the {self.sink.kind} "
                         f"sink ({exc.__class__.__name__}); a replaying front may add duplicates until it has moved on",
                         sink=self.sink.kind)
            return
        seeded = self.deduper.seed(state)
        _log.info("worker.dedupe.resumed", f"dedupe state rebuilt from the sink: {seeded} of {len(wanted)} instruments "
                  f"from {source} in {time.monotonic() - started:.2f} s", seeded=seeded, instruments=len(wanted),
                  source=source)

    def shutdown(self) -> None:
        self.gateway.close()
        if self.pipeline.is_alive():
            self.pipeline.stop()
        else:
            self.sink.flush(timeout=1.0)
        self.sink.close()
        if self.http is not None:
            self.http.stop()
            self.http = None
        _log.info("worker.stopped", f"worker stopped: {self.pipeline.published_total} ticks published, "
                  f"{self.queue.dropped} dropped at the queue, {self.sink.dropped_total} dropped at the sink, "
                  f"{self.sink.buffered} left in the sink buffer",
                  published=self.pipeline.published_total, queue_dropped=self.queue.dropped,
                  sink_dropped=self.sink.dropped_total, sink_buffered=self.sink.buffered)
        lost = self.lost_ticks()
        if lost:
            total = sum(lost.values())
            where = ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in lost.items())
            _log.error("worker.ticks.lost", f"{total} received ticks were discarded and are not in the sink ({where}); "
                       f"a stop on request exits {int(Worker.TICKS_LOST)} (TICKS_LOST)", lost=total, **lost)
        faulthandler.cancel_dump_traceback_later()  # stopped in time: no stacks

    # ------------------------------------------------------------------ coverage and health
    def _last_tick_age(self) -> float | None:
        last = self.pipeline.last_tick_unix
        return None if last is None else max(0.0, clock.time() - last)

    def refresh(self) -> None:
        """Recompute coverage and set the per-exchange gauges (once a second)."""
        self._next_coverage = time.monotonic() + COVERAGE_REFRESH_SECONDS
        self.coverage.refresh(self.gateway.subscriptions.subscribed, self.gateway.subscriptions.acknowledged)
        self.losses.sample(time.monotonic(), self.queue.dropped, self.sink.dropped_total)
        self.metrics.clock_skew.set(self.pipeline.skew)

    def live(self) -> tuple[bool, str]:
        return status_mod.live(self)

    def ready(self) -> tuple[bool, list[str]]:
        return status_mod.ready(self)

    def status(self, with_table: bool = False) -> dict[str, Any]:
        return status_mod.status(self, with_table)
