"""The full-feed worker: wires gateway, queue, pipeline, sink, coverage and HTTP together.

:class:`FeedWorker` is built from the loaded settings (every problem in the setup
raises :class:`WorkerError` with its exit code before anything connects), then
:meth:`FeedWorker.run` runs on the main thread until :meth:`request_stop`
(SIGTERM/SIGINT in the CLI) or a fatal condition. Shutdown order: release the CTP
API (main thread), drain the queue through the pipeline, flush and close the sink,
stop the HTTP server.

:func:`probe` is the one-shot check behind ``--probe``.
"""

from __future__ import annotations

import collections
import faulthandler
import signal
import threading
import time
from typing import Any, Callable

import numpy as np

from .. import clock
from .. import coverage as coverage_mod
from ..calendar import CalendarError, TradingCalendar
from ..ctpapi import CtpApi, CtpApiError, load_api
from ..exitcodes import Check, Worker
from ..log import get_logger, utc_timestamp
from ..settings import parse_shard
from . import resume
from .errors import WorkerError
from .gateway import Gateway
from .http import HealthServer
from .metrics import LATENCY_BUCKETS, WorkerMetrics
from .pipeline import InstrumentBook, Pipeline, TickQueue
from .sinks import SinkError, public_target
from .ticks import Deduper, Normaliser
from .tuning import tune_interpreter
from .writer import SinkWriter

_log = get_logger("worker")
COVERAGE_REFRESH_SECONDS = 1.0
LIVENESS_STALL_SECONDS = 10.0
SAMPLE_SIZE = 20


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


def _calendar(feed) -> TradingCalendar:
    try:
        return TradingCalendar.from_settings(feed)
    except CalendarError as exc:
        raise WorkerError(Worker.CONFIG, str(exc), event="worker.config.invalid") from None


def _api(channel: str, api: CtpApi | None) -> CtpApi:
    if api is not None:
        return api
    try:
        return load_api(channel)
    except CtpApiError as exc:
        raise WorkerError(Worker.CONFIG, str(exc), event="worker.config.invalid") from None


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
        self.calendar = _calendar(feed)
        self.api = _api(feed.channel, api)
        self.metrics = WorkerMetrics(self.profile_name)
        self.metrics.info.info({"profile": self.profile_name, "channel": feed.channel, "env": feed.env,
                                "shard": feed.shard, "api_version": self.api.version})
        self.started = time.time()
        self.metrics.start_time.set(self.started)
        self.metrics.calendar_horizon(self.calendar)
        self.book = InstrumentBook()
        self.queue = TickQueue(feed.queue_max)
        self.normaliser = Normaliser(self.calendar, self.book.exchange_of)
        self.deduper = Deduper()
        try:
            self.sink = SinkWriter(feed, self.shard, LATENCY_BUCKETS,
                                   on_error=lambda reason: self.metrics.sink_errors.labels(reason=reason).inc())
        except SinkError as exc:
            raise WorkerError(Worker.SINK, f"FEEDOPS_SINK_URL: {exc}; fix: use file:<writable dir> or "
                              "redis://host:port/db", event="worker.sink.invalid") from None
        self.pipeline = Pipeline(self.queue, self.normaliser, self.deduper, self.book, self.sink, self.metrics)
        self.gateway = Gateway(self.api, settings, self.profile_name, self.metrics, self.queue.offer, self.calendar,
                               last_tick_age=self._last_tick_age, any_open=self._any_open, shard=self.shard)
        self.gateway.on_login = self._on_login
        self._stop = threading.Event()
        self._stop_reason = "stop requested"
        self._heartbeat = time.monotonic()
        self._coverage: coverage_mod.Coverage | None = None
        self._computed: tuple[float, coverage_mod.Coverage, dict[str, list[str]], np.ndarray, Any] | None = None
        self._counted: dict[str, tuple[tuple[int, int], dict[str, int]]] = {}
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
        that logged while the main thread held the log's lock would deadlock the worker)."""
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
                self._heartbeat = time.monotonic()
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

    # ------------------------------------------------------------------ coverage
    def _last_tick_age(self) -> float | None:
        last = self.pipeline.last_tick_unix
        return None if last is None else max(0.0, clock.time() - last)

    def _any_open(self) -> bool:
        cov = self._coverage
        return bool(cov and cov.open) or (cov is None and self.calendar.any_open(clock.now()))

    def compute_coverage(self, max_age: float = 0.0) -> tuple[coverage_mod.Coverage, dict[str, list[str]], np.ndarray]:
        """Coverage, the instrument columns and their last tick times; one computed less than
        ``max_age`` s ago (for the same instrument list) is reused."""
        cached = self._computed
        if cached is not None and time.monotonic() - cached[0] < max_age and cached[4] is self.book.instruments:
            return cached[1], cached[2], cached[3]
        instruments = self.book.instruments
        columns, coded, last = self.book.snapshot()
        cov = coverage_mod.compute_coded(coded, last, calendar=self.calendar, at=clock.now(),
                                         window_seconds=self.feed.staleness_window_seconds)
        self._computed = (time.monotonic(), cov, columns, last, instruments)
        return cov, columns, last

    def refresh(self) -> None:
        """Recompute coverage and set the per-exchange gauges (once a second)."""
        self._next_coverage = time.monotonic() + COVERAGE_REFRESH_SECONDS
        cov, _, _ = self.compute_coverage()
        self._coverage = cov
        m = self.metrics
        self.losses.sample(time.monotonic(), self.queue.dropped, self.sink.dropped_total)
        m.clock_skew.set(self.pipeline.skew)
        for key, bucket in cov.by_product_class.items():
            exchange, cls = key.split("|", 1)
            m.instruments_open.labels(exchange=exchange, product_class=cls).set(bucket.open)
            m.instruments_fresh.labels(exchange=exchange, product_class=cls).set(bucket.fresh)
        subscribed = self._per_exchange("subscribed", self.gateway.subscribed)
        acked = self._per_exchange("acknowledged", self.gateway.acknowledged)
        for exchange, bucket in cov.by_exchange.items():
            m.coverage.labels(exchange=exchange).set(1.0 if bucket.ratio is None else bucket.ratio)
            m.instruments_never_ticked.labels(exchange=exchange).set(bucket.never_ticked)
            m.instruments_subscribed.labels(exchange=exchange).set(subscribed.get(exchange, 0))
            m.instruments_acknowledged.labels(exchange=exchange).set(acked.get(exchange, 0))
        m.coverage.labels(exchange="all").set(1.0 if cov.ratio is None else cov.ratio)

    def _per_exchange(self, key: str, names: Any) -> dict[str, int]:
        """Instruments of ``names`` per exchange, recounted only when the set's size or the book changed
        (20,000 lookups a second would hold the interpreter lock the tick path needs)."""
        stamp = (len(names), id(self.book.instruments))
        cached = self._counted.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        counts: dict[str, int] = {}
        exchange_of = self.book.exchange_of
        for name in list(names):
            ex = exchange_of.get(name, "")
            counts[ex] = counts.get(ex, 0) + 1
        self._counted[key] = (stamp, counts)
        return counts

    # ------------------------------------------------------------------ health
    def live(self) -> tuple[bool, str]:
        now = time.monotonic()
        if self.pipeline.error is not None:
            return False, f"pipeline failed: {self.pipeline.error!r}"
        if self.pipeline.is_alive() and now - self.pipeline.heartbeat > LIVENESS_STALL_SECONDS:
            return False, f"pipeline stalled for {now - self.pipeline.heartbeat:.0f} s"
        if now - self._heartbeat > LIVENESS_STALL_SECONDS:
            return False, f"main loop stalled for {now - self._heartbeat:.0f} s"
        return True, "ok"

    def ready(self) -> tuple[bool, list[str]]:
        reasons: list[str] = []
        g = self.gateway
        if not g.connected:
            reasons.append("market-data front not connected")
        elif not g.logged_in:
            reasons.append("not logged in")
        elif not g.subscription_complete:
            reasons.append(f"subscribing: {len(g.acknowledged)} of {len(g.instruments)} acknowledged")
        elif g.instruments and len(g.failed) > (1.0 - self.feed.coverage_crit_ratio) * len(g.instruments):
            reasons.append(f"{len(g.failed)} of {len(g.instruments)} subscriptions failed (tried again in rounds)")
        cov = self._coverage
        crit = self.feed.coverage_crit_ratio
        if cov is None:
            reasons.append("coverage not computed yet")
        elif cov.ratio is not None and cov.ratio < crit:
            reasons.append(f"coverage {cov.ratio:.3f} below FEEDOPS_COVERAGE_CRIT_RATIO {crit}")
        if not self.sink.up:
            reasons.append(f"{self.sink.kind} sink down")
        return not reasons, reasons

    def status(self, with_table: bool = False) -> dict[str, Any]:
        cov, columns, last = self.compute_coverage(max_age=0.0 if with_table else COVERAGE_REFRESH_SECONDS)
        g, p, q, s = self.gateway, self.pipeline, self.queue, self.sink
        sink_samples = list(p.sink_latency)
        ready, reasons = self.ready()
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
        errors = s.errors_total + g.login_failures + len(g.failed) + p.dropped_by_reason.get("invalid", 0)
        body: dict[str, Any] = {
            "service": "feedops-worker",
            "version": "0.1.0",
            "time": utc_timestamp(),
            "now_unix": clock.time(),
            "started_unix": self.started,
            "profile": self.profile_name,
            "channel": self.api.channel,
            "env": self.feed.env,
            "shard": f"{self.shard[0]}/{self.shard[1]}",
            "calendar": self.calendar.mode,
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
                "subscribed": len(g.subscribed),
                "acknowledged": len(g.acknowledged),
                "failed": len(g.failed),
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
            "ticks_lost_recent": self.losses.recent(q.dropped, s.dropped_total),
            "sink": {"kind": s.kind, "target": public_target(s.target), "up": s.up, "buffered": s.buffered,
                     "dropped_total": s.dropped_total, "errors_total": s.errors_total},
            "ready": ready,
            "ready_reasons": reasons,
            "never_ticked": cov.never_ticked.as_dict(),
            "stale": cov.stale.as_dict(),
            "ticks_dropped": dict(sorted(p.dropped_by_reason.items())),
            "subscription_failed": sorted(g.failed)[:coverage_mod.DEFAULT_SAMPLE],
        }
        if with_table:
            body["instrument_table"] = self.book.table_of(columns, last)
        return body


# ---------------------------------------------------------------------- probe
def probe(settings, *, profile: str | None = None, api: CtpApi | None = None, sample_size: int = SAMPLE_SIZE,
          timeout: float | None = None) -> tuple[Check, dict[str, Any]]:
    """Connect, log in, subscribe a sample, wait for its ticks; return (Nagios code, JSON report)."""
    feed = settings.feed
    profile_name = profile or feed.active_profile
    started = time.monotonic()
    report: dict[str, Any] = {"service": "feedops-worker-probe", "time": utc_timestamp(), "profile": profile_name,
                              "channel": feed.channel, "status": "fail", "logged_in": False, "trading_day": None,
                              "instruments_listed": 0, "sample": 0, "acknowledged": 0, "ticked": 0, "never_ticked": [],
                              "message": ""}
    calendar = _calendar(feed)
    api = _api(feed.channel, api)
    metrics = WorkerMetrics(profile_name)
    ticked: set[str] = set()

    def on_depth(depth: Any) -> None:
        ticked.add(depth.InstrumentID)

    gateway = Gateway(api, settings, profile_name, metrics, on_depth, calendar, last_tick_age=lambda: None,
                      any_open=lambda: False, shard=parse_shard(feed.shard))
    code = Check.CRITICAL
    try:
        instruments = gateway.load_instruments()
        report["instruments_listed"] = len(instruments)
        if not instruments:
            raise WorkerError(Worker.INSTRUMENTS, "the instrument list of this shard is empty")
        step = max(1, len(instruments) // sample_size)
        sample = instruments[::step][:sample_size]
        gateway.instruments = sample
        report["sample"] = len(sample)
        names = {i.instrument for i in sample}
        gateway.start_md()
        deadline = time.monotonic() + (timeout if timeout is not None else feed.connect_timeout_seconds + 10.0)
        while time.monotonic() < deadline:
            gateway.step(0.1)
            if gateway.subscription_complete and names <= ticked:
                break
        report["logged_in"] = gateway.logged_in
        report["trading_day"] = gateway.trading_day
        report["acknowledged"] = len(gateway.acknowledged)
        report["ticked"] = len(names & ticked)
        report["never_ticked"] = sorted(names - ticked)
        if not gateway.ever_connected:
            report["message"] = "no market-data front connected"
        elif not gateway.logged_in:
            report["message"] = "not logged in before the probe timeout"
        elif report["ticked"] == len(names):
            code, report["status"], report["message"] = Check.OK, "pass", "logged in; every sampled instrument ticked"
        else:
            code, report["status"] = Check.WARNING, "warn"
            report["message"] = f"logged in; {len(names) - report['ticked']} of {len(names)} sampled instruments did not tick"
    except WorkerError as exc:
        report["message"] = str(exc)
        code = Check.UNKNOWN if exc.code == Worker.CONFIG else Check.CRITICAL
    finally:
        gateway.close()
    report["duration_seconds"] = round(time.monotonic() - started, 3)
    report["exit_code"] = int(code)
    return code, report
