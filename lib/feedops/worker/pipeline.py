"""The callback queue and the pipeline thread.

CTP's callback thread calls :meth:`TickQueue.offer` with the depth struct and returns:
the offer copies the struct's bytes into a bounded ring of structs (one memory copy,
layout :mod:`feedops.worker.layout`); when the ring is full the tick is dropped and
counted (the pipeline logs the drops once a second and exports them), the callback never
blocks.

The pipeline thread drains the ring in batches (numpy arrays of structs): normalise
(:meth:`Normaliser.batch`) -> de-duplicate -> last tick per instrument (coverage) -> the
sink writer process
(:mod:`feedops.worker.writer`), which builds the JSON, writes it and reports back what
it wrote. Latency is measured in the writer after the write: from the callback's
receive time, and from the exchange time corrected for clock skew (the smallest
(receive - exchange) offset of the last minute is taken as the skew between our clock
and the exchange's when it exceeds one second).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable

import numpy as np

from .. import clock
from .. import log as log_mod
from ..log import get_logger
from .book import InstrumentBook
from .compiled import _jsonlines
from .dedupe import Deduper
from .layout import DEPTH_DTYPE, DEPTH_SIZE
from .metrics import WorkerMetrics
from .ticks import Normaliser
from .writer import LATENCY_SAMPLE, SinkWriter

_log = get_logger("worker")
HOUSEKEEPING_SECONDS = 0.5
#: After an idle spell, how long the pipeline lets ticks gather before its first batch: at most this much
#: latency added, a batch per burst instead of a batch per first tick (docs/ops/worker.md, "Pipeline").
COALESCE_SECONDS = 0.001


class TickQueue:
    """Bounded, non-blocking hand-off from the callback thread to the pipeline: a ring of depth structs.

    One producer (the callback) and one consumer (the pipeline). The callback writes the
    struct at ``head`` and then advances ``head``; the pipeline copies the structs between
    ``tail`` and ``head`` out and then advances ``tail``: under the interpreter lock neither
    ever sees the other's slot half-written, with no lock taken per tick. The callback's
    side is compiled (``_jsonlines.Ring``, :mod:`feedops.worker.compiled`): :attr:`offer`
    copies the struct's bytes through its pointer and stamps the receive time (``clock.time``)
    in one C call, with no Python frame.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.ring = np.zeros(capacity, dtype=DEPTH_DTYPE)
        self.recv = np.zeros(capacity, dtype=np.float64)  # receive time of each slot
        # touch every page now: the callback's first pass over the ring would otherwise take the page faults
        # (measured: 1.7 instead of 0.5 us per tick until the ring had wrapped once)
        self.ring.view(np.uint8).fill(0)
        self.recv.fill(0.0)
        self._ring_rows = self.ring.view(np.uint8).reshape(capacity, DEPTH_SIZE)
        self._peeked = 0
        self.wakeup = threading.Event()
        self._side = _jsonlines.Ring(self.ring.view(np.uint8), self.recv, DEPTH_SIZE, clock.time, self._wake)
        #: The callback's whole job: copy the struct's bytes into the ring (or count a drop, copying nothing).
        #: The pointer is valid only during the callback (the library reuses its buffer for the next tick): the
        #: bytes are copied then, and neither the struct nor the address is kept.
        self.offer: Callable[[Any], None] = self._side.offer

    def _wake(self) -> None:
        self.wakeup.set()

    # the ring's counters, as the pipeline and the tests read and move them
    head = property(lambda self: self._side.head, lambda self, v: setattr(self._side, "head", v))
    tail = property(lambda self: self._side.tail, lambda self, v: setattr(self._side, "tail", v))
    received = property(lambda self: self._side.received, lambda self, v: setattr(self._side, "received", v))
    dropped = property(lambda self: self._side.dropped, lambda self, v: setattr(self._side, "dropped", v))
    idle = property(lambda self: self._side.idle, lambda self, v: setattr(self._side, "idle", bool(v)))

    def peek(self, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``limit`` of the oldest structs and their receive times, in place: views of the ring (a copy
        only when the batch wraps around its end). Their slots stay taken, so the callback cannot write over
        them, until :meth:`release`."""
        tail = self.tail
        n = min(self.head - tail, limit)
        start = tail % self.capacity
        end = start + n
        self._peeked = n
        if end <= self.capacity:
            return self.ring[start:end], self.recv[start:end]
        wrap = end - self.capacity
        rows = np.concatenate((self._ring_rows[start:], self._ring_rows[:wrap]))
        return rows.view(DEPTH_DTYPE).reshape(n), np.concatenate((self.recv[start:], self.recv[:wrap]))

    def release(self) -> None:
        """Free the slots of what :meth:`peek` returned: only now may the callback reuse them."""
        self.tail += self._peeked
        self._peeked = 0

    def take(self, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Copy out up to ``limit`` of the oldest structs and their receive times, then free their slots."""
        tail = self.tail
        n = min(self.head - tail, limit)
        start = tail % self.capacity
        end = start + n
        raw = self._ring_rows  # copied as bytes (one memcpy), not field by field
        if end <= self.capacity:
            rows, recv = raw[start:end].copy(), self.recv[start:end].copy()
        else:  # the batch wraps around the end of the ring
            wrap = end - self.capacity
            rows = np.concatenate((raw[start:], raw[:wrap]))
            recv = np.concatenate((self.recv[start:], self.recv[:wrap]))
        self.tail = tail + n  # only now may the callback reuse these slots
        return rows.view(DEPTH_DTYPE).reshape(n), recv

    def __len__(self) -> int:
        return self.head - self.tail


class LatencySamples:
    """The last ``capacity`` latencies (seconds), for /status's percentiles: a ring of doubles that the writer's
    reports extend with their bytes as they come (no Python float per tick: the reader thread's largest cost
    when it was a deque). Written by the reader thread, copied by whoever reads."""

    def __init__(self, capacity: int = LATENCY_SAMPLE):
        self._ring = np.zeros(capacity, dtype=np.float64)
        self._written = 0

    def extend(self, raw: bytes) -> None:
        """Add the doubles of ``raw`` (native byte order, as ``ndarray.tobytes`` wrote them), oldest first."""
        values = np.frombuffer(raw, dtype=np.float64)
        ring, capacity = self._ring, len(self._ring)
        added = len(values)
        values = values[-capacity:]
        start = (self._written + added - len(values)) % capacity
        first = min(len(values), capacity - start)
        ring[start:start + first] = values[:first]
        ring[:len(values) - first] = values[first:]
        self._written += added

    def __len__(self) -> int:
        return min(self._written, len(self._ring))

    def values(self) -> np.ndarray:
        """A copy of the samples held (in no particular order)."""
        return self._ring[:len(self)].copy()


class Pipeline(threading.Thread):
    """Drains the queue: normalise, dedupe, coverage, sink, metrics."""

    def __init__(self, queue: TickQueue, normaliser: Normaliser, deduper: Deduper, book: InstrumentBook,
                 sink: SinkWriter, metrics: WorkerMetrics, batch_max: int = 1000):
        super().__init__(name="feedops-pipeline", daemon=True)
        if deduper.ids is not book.ids:  # the ids dedupe hands out index the book's last tick times
            raise ValueError("the deduper and the book must share their instrument ids: Deduper(book.ids)")
        self.queue = queue
        self.normaliser = normaliser
        self.deduper = deduper
        self.book = book
        self.sink = sink
        sink.on_account = self._account  # called on the writer's reader thread
        self.metrics = metrics
        self.batch_max = batch_max
        self.stopping = threading.Event()
        self.heartbeat = time.monotonic()
        self.published_total = 0
        self.dropped_by_reason: collections.Counter[str] = collections.Counter()
        self.last_tick_unix: float | None = None
        self.sink_latency = LatencySamples()  # receive -> sink
        self.exchange_latency = LatencySamples()  # exchange -> sink
        self.rate_buckets: collections.deque[list[int]] = collections.deque(maxlen=16)  # [second, ticks]
        self.skew = 0.0  # as estimated by the writer
        self._seen_drops = 0
        self._seen_sink_dropped = 0
        self._next_housekeeping = 0.0
        self._received_children: dict[str, Any] = {}
        self._published_children: dict[str, Any] = {}
        self._last_tick_children: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.drain_deadline = float("inf")
        self.flush_seconds = 5.0

    # -------------------------------------------------------------- thread
    def run(self) -> None:
        log_mod.name_native_thread("pipeline")
        try:
            self._loop()
        except BaseException as exc:  # reported by /livez and the main loop
            self.error = exc
            _log.critical("worker.pipeline.crashed", f"pipeline thread crashed: {exc.__class__.__name__}: {exc}")

    def _loop(self) -> None:
        queue = self.queue
        while True:
            self.heartbeat = time.monotonic()
            if self.heartbeat >= self._next_housekeeping:
                self.housekeeping()
            if self.stopping.is_set() and (not len(queue) or time.monotonic() > self.drain_deadline):
                if len(queue):
                    _log.error("worker.queue.abandoned", f"drain timeout: {len(queue)} queued ticks not published",
                               abandoned=len(queue))
                break
            if not len(queue):
                # idle: the callback sets the event (once) from here on; the queue is looked at again after
                # saying so, so a tick offered in between is not left waiting for the timeout
                queue.idle = True
                if not len(queue):
                    if queue.wakeup.wait(0.05) and len(queue) < self.batch_max:
                        # woken by the first tick of a burst: let the rest of it come before taking a batch
                        # (a batch costs ~100 us of fixed work: one per burst, not one per first tick)
                        time.sleep(COALESCE_SECONDS)
                queue.idle = False
                queue.wakeup.clear()
                continue
            self.process_next()
        self.sink.flush(self.flush_seconds)
        self.housekeeping()

    def process_next(self) -> None:
        """Process the next batch in place in the ring (no copy of the structs), then free its slots."""
        try:
            self.process(self.queue.peek(self.batch_max))
        finally:
            self.queue.release()

    def _take(self) -> tuple[np.ndarray, np.ndarray]:
        return self.queue.take(self.batch_max)

    def stop(self, drain_seconds: float = 10.0, flush_seconds: float = 5.0) -> None:
        """Drain what is queued (for at most ``drain_seconds``), flush the sink, stop."""
        self.drain_deadline = time.monotonic() + drain_seconds
        self.flush_seconds = flush_seconds
        self.stopping.set()
        self.queue.wakeup.set()
        self.join(drain_seconds + flush_seconds + 5.0)

    # -------------------------------------------------------------- work
    def process(self, batch: tuple[np.ndarray, np.ndarray]) -> None:
        """Normalise, dedupe and hand over one batch (depth structs and their receive times)."""
        rows, recv = batch
        prepared = self.normaliser.batch(rows, recv)
        if prepared.invalid:
            self.dropped_by_reason["invalid"] += prepared.invalid
            self.metrics.ticks_dropped.labels(reason="invalid").inc(prepared.invalid)
        for exchange, count in prepared.exchange_counts.items():
            child = self._received_children.get(exchange)
            if child is None:
                child = self._received_children[exchange] = self.metrics.ticks_received.labels(exchange=exchange)
            child.inc(count)
        keep, dropped, ids = self.deduper.check_batch(prepared)
        for reason, count in dropped.items():
            self.dropped_by_reason[reason] += count
            self.metrics.ticks_dropped.labels(reason=reason).inc(count)
        records = prepared.records
        if keep is not None:
            records, ids = records[keep], ids[keep]
        if len(records):
            received_at = records["recv_ts"]
            self.book.record(ids, received_at)
            self.last_tick_unix = float(received_at[-1])
            self._submit(records)
        second = int(time.monotonic())
        buckets = self.rate_buckets
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += len(rows)
        else:
            buckets.append([second, len(rows)])

    def _submit(self, out: np.ndarray) -> None:
        """Hand the batch to the writer once it has room (back pressure: the callback queue absorbs the wait)."""
        sink = self.sink
        while not sink.wait_room(0.25):
            self.heartbeat = time.monotonic()
            if self.heartbeat >= self._next_housekeeping:
                self.housekeeping()
        sink.submit(out)

    def _account(self, acct: dict[str, Any]) -> None:
        """What the writer wrote (on the writer's reader thread): metrics, latency samples, published count."""
        now = acct["now"]
        # histograms first: a scrape (which reads the published counters before them) never sees
        # more ticks published than latencies observed
        sums = acct["sums"]
        for exchange, counts in acct["histogram"].items():
            self.metrics.latency.merge(exchange, counts, sums[exchange])
        self.metrics.pipeline_latency.merge("", acct["pipeline_histogram"], acct["pipeline_sum"])
        for exchange, count in acct["per_exchange"].items():
            child = self._published_children.get(exchange)
            if child is None:
                child = self._published_children[exchange] = self.metrics.ticks_published.labels(exchange=exchange)
            child.inc(count)
            child = self._last_tick_children.get(exchange)
            if child is None:
                child = self._last_tick_children[exchange] = self.metrics.last_tick.labels(exchange=exchange)
            child.set(now)
        self.sink_latency.extend(acct["sink_latency"])
        self.exchange_latency.extend(acct["exchange_latency"])
        self.skew = acct["skew"]
        self.published_total += acct["delivered"]

    def housekeeping(self) -> None:
        """Gauges and loud drop accounting, twice a second."""
        self._next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
        m = self.metrics
        q = self.queue
        m.queue_depth.set(len(q))
        m.queue_capacity.set(q.capacity)
        dropped = q.dropped
        if dropped > self._seen_drops:
            m.queue_drops.inc(dropped - self._seen_drops)
            _log.error("worker.queue.dropped", f"callback queue full ({q.capacity}): dropped "
                       f"{dropped - self._seen_drops} ticks (total {dropped}); the pipeline cannot keep up",
                       dropped=dropped - self._seen_drops, dropped_total=dropped)
            self._seen_drops = dropped
        sink = self.sink
        m.sink_up.set(1 if sink.up else 0)
        m.sink_buffered.set(sink.buffered)
        if sink.dropped_total > self._seen_sink_dropped:
            m.sink_dropped.inc(sink.dropped_total - self._seen_sink_dropped)
            self._seen_sink_dropped = sink.dropped_total

    # -------------------------------------------------------------- readings
    def ticks_per_second(self, window: float = 10.0) -> float:
        """Received ticks per second over the last ``window`` seconds (whole seconds)."""
        now = int(time.monotonic())
        total = sum(n for second, n in list(self.rate_buckets) if now - second < window)
        return total / window

    @staticmethod
    def percentiles(samples: LatencySamples | list[float], qs: tuple[float, ...]) -> list[float | None]:
        """Nearest-rank percentiles from one sorted copy."""
        values = np.sort(samples.values() if isinstance(samples, LatencySamples) else np.asarray(samples, dtype=float))
        if not len(values):
            return [None] * len(qs)
        last = len(values) - 1
        return [float(values[min(last, max(0, int(round(q * last))))]) for q in qs]
