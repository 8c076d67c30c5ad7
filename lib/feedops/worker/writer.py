"""The sink writer: a child process that turns normalised ticks into JSON and writes them.

On a 2-vCPU machine the worker is CPU-bound in Python: CTP's callback thread and the
pipeline share one interpreter lock. Building the JSON records and writing them run in
a child process with its own interpreter; the pipeline only pickles batches of
records (a numpy array, :data:`feedops.worker.ticks.RECORD_DTYPE`: one buffer) into a
pipe. The child turns a batch into one JSON object line per tick without a dict per tick
(:func:`~feedops.worker.sinks.rows_of_records`: one orjson call for the floats, one for
the ints). Encoding in
the worker instead was measured worse: py-spy ``--gil`` showed it holding the
interpreter lock 15 % of the time.

The child runs two threads: one receives batches from the pipe and builds their rows,
the other writes them (coalescing what queued up) and reports back, so building the
next batch overlaps a Redis round trip or a disk write.

The child owns the real :class:`~feedops.worker.sinks.Sink` (file or Redis) with its
buffering, drop counting and reconnection, and measures what happened to every tick:
after each write it sends back the counts per exchange, the latency samples
(callback -> written, and exchange time -> written, skew-corrected) and the sink state
(up, buffered, dropped, errors). :class:`SinkWriter` is its proxy in the worker: the
same attributes as a ``Sink`` (``kind``, ``target``, ``up``, ``buffered``,
``dropped_total``, ``errors_total``, ``published_total``), ``open``/``flush``/``close``
synchronous, ``submit`` asynchronous with at most ``max_in_flight`` batches under way
(beyond that the pipeline waits and the callback queue absorbs the burst: back pressure
without blocking CTP's thread).

Shutdown: ``flush`` asks the child to write what it buffered (bounded in time) and
answers when it is done; ``close`` stops it. The child ignores SIGINT/SIGTERM (the
worker drives the shutdown) and exits when the pipe closes, after a last flush, so a
dead worker never leaves it behind.
"""

from __future__ import annotations

import array
import atexit
import bisect
import collections
import multiprocessing
import multiprocessing.util  # registers its exit hook (joins children) before _close_all below
import queue as queue_mod
import signal
import sys
import threading
import time
import traceback
import weakref
from dataclasses import dataclass
from typing import Any, Callable

from .. import clock
from .. import log as log_mod
from ..log import get_logger
from .sinks import SinkError, open_sink, rows_of_records
from .tuning import tune_interpreter

_log = get_logger("worker")
SKEW_THRESHOLD_SECONDS = 1.0
SKEW_WINDOW_SECONDS = 60
LATENCY_SAMPLE = 20_000
REPLY_TIMEOUT_SECONDS = 30.0
#: After the pipe from the writer closed unexpectedly: how long to wait for its exit status.
EXIT_STATUS_WAIT_SECONDS = 5.0
_LIVE: "weakref.WeakSet[SinkWriter]" = weakref.WeakSet()


@dataclass(frozen=True)
class SinkConfig:
    """What the child needs to build the sink (the subset of the feed settings open_sink reads)."""

    sink_url: str
    redis_stream_prefix: str
    redis_stream_maxlen: int
    sink_buffer_max: int
    shard: tuple[int, int]


# ---------------------------------------------------------------------- child side
def rows_of(records: Any) -> list[tuple]:
    """The rows (JSON line and the fields the sinks route by) of a batch of records."""
    return rows_of_records(records)


class Accountant:
    """Skew estimate and per-batch accounting of delivered records (runs in the child)."""

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self._skew_minimums: dict[int, float] = {}
        self.skew = 0.0

    def update_skew(self, rows: list[tuple]) -> None:
        """The smallest (receive - exchange) offset of the last minute, when beyond one second, is the skew."""
        if not rows:
            return
        offset = min([row[5] - row[4] for row in rows])
        second = int(time.monotonic())
        known = self._skew_minimums.get(second)
        if known is None or offset < known:
            self._skew_minimums[second] = offset
        if len(self._skew_minimums) > SKEW_WINDOW_SECONDS:
            for key in sorted(self._skew_minimums)[:-SKEW_WINDOW_SECONDS]:
                del self._skew_minimums[key]
        skew = min(self._skew_minimums.values())
        self.skew = skew if abs(skew) > SKEW_THRESHOLD_SECONDS else 0.0

    def bucket_counts(self, values: list[float]) -> list[int]:
        """Histogram bucket counts of ``values`` (sorted in place): bucket i holds bound[i-1] < v <= bound[i]
        (Prometheus "le"), the last one everything above the last bound."""
        values.sort()
        counts, below = [], 0
        for bound in self.buckets:
            upto = bisect.bisect_right(values, bound)
            counts.append(upto - below)
            below = upto
        counts.append(len(values) - below)
        return counts

    def account(self, delivered: list[tuple]) -> dict[str, Any]:
        """Counts, latency samples and histogram buckets of the rows (:func:`~feedops.worker.sinks.rows_of_records`)
        just written.

        Bulk operations instead of a bisect per tick: latencies by list comprehension,
        then per exchange one sort and one bisect per bucket bound.
        """
        now = clock.time()
        skew = self.skew
        sink_latency = [max(0.0, now - row[5]) for row in delivered]  # (a wall-clock step back: not negative)
        exchange_latency = [max(0.0, now - row[4] - skew) for row in delivered]
        by_exchange: dict[str, list[float]] = {}
        for row, latency in zip(delivered, exchange_latency):
            values = by_exchange.get(row[2])
            if values is None:
                values = by_exchange[row[2]] = []
            values.append(latency)
        histogram = {exchange: self.bucket_counts(values) for exchange, values in by_exchange.items()}
        return {"delivered": len(delivered), "now": now,
                "per_exchange": {exchange: len(values) for exchange, values in by_exchange.items()},
                "histogram": histogram, "sums": {exchange: sum(values) for exchange, values in by_exchange.items()},
                "pipeline_histogram": self.bucket_counts(list(sink_latency)), "pipeline_sum": sum(sink_latency),
                "sink_latency": array.array("d", sink_latency[-LATENCY_SAMPLE:]).tobytes(),
                "exchange_latency": array.array("d", exchange_latency[-LATENCY_SAMPLE:]).tobytes(), "skew": skew}


def _child_main(conn, config: SinkConfig, buckets: tuple[float, ...], log_defaults: dict[str, str],
                secrets: list[str]) -> None:
    """The writer process: build the sink, then write every batch the pipe brings."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker drives the shutdown (drain, flush, close)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # at the file size limit (RLIMIT_FSIZE) a write must fail with EFBIG, which the file sink rolls back,
    # not kill the process (Python ignores SIGXFSZ already; said here because the file sink relies on it)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    log_mod.configure(log_defaults.get("level"), log_defaults.get("fmt"))
    for secret in secrets:
        log_mod.register_secret(secret)
    errors: collections.Counter[str] = collections.Counter()
    try:
        sink = open_sink(config, config.shard, on_error=lambda reason: errors.update((reason,)))
    except SinkError as exc:
        conn.send(("sink_error", str(exc)))
        return
    sink.use_rows()  # records are rows whose JSON line is built per batch (rows_of_records): no dict per tick
    tune_interpreter()  # as the worker does
    accountant = Accountant(buckets)

    def state() -> dict[str, Any]:
        body = {"up": sink.up, "buffered": sink.buffered, "dropped_total": sink.dropped_total,
                "errors_total": sink.errors_total, "published_total": sink.published_total, "errors": dict(errors)}
        errors.clear()
        return body

    def write(batches: int, rows: list[tuple]) -> None:
        accountant.update_skew(rows)
        delivered = sink.publish(rows)
        conn.send(("acct", batches, accountant.account(delivered), state()))

    # Two threads: this one receives from the pipe and builds the rows (CPU), the writing
    # thread publishes them, so building the next rows overlaps the sink's round trip (a
    # Redis reply, a disk write) instead of waiting for it. Only the writing thread sends
    # on the pipe; control messages are queued behind the batches, so order is kept.
    work: collections.deque[tuple] = collections.deque()
    ready = threading.Condition()
    crashed: list[BaseException] = []

    def finish() -> None:
        """The worker is gone: write what the sink still buffers (5 s at most), then close it."""
        try:
            sink.flush(5.0)
        finally:
            sink.close()

    def writing() -> None:
        try:
            while True:
                with ready:
                    while not work:
                        if sink.buffered:  # down with ticks waiting: retry at the sink's pace even when nothing comes
                            if not ready.wait(max(0.05, sink.reconnect_interval)):
                                break
                        else:
                            ready.wait()
                    items = list(work)
                    work.clear()
                if not items:
                    write(0, [])
                    continue
                batches, rows = 0, []
                for item in items:
                    kind = item[0]
                    if kind == "rows":  # behind: everything waiting goes out as one write
                        batches += 1
                        rows.extend(item[1])
                        continue
                    if batches:
                        write(batches, rows)
                        batches, rows = 0, []
                    if kind == "open":
                        try:
                            ok = sink.open()
                        except SinkError as exc:
                            conn.send(("reply", "sink_error", str(exc), state()))
                            continue
                        conn.send(("reply", "opened", ok, state()))
                    elif kind == "flush":
                        delivered = sink.flush(item[1])
                        conn.send(("acct", 0, accountant.account(delivered), state()))
                        conn.send(("reply", "flushed", None, state()))
                    elif kind == "close":
                        sink.close()
                        conn.send(("reply", "closed", None, state()))
                        return
                    elif kind == "eof":  # the worker went away: write what is left, then go
                        finish()
                        return
                if batches:
                    write(batches, rows)
        except (EOFError, OSError):  # the pipe broke under a send: the worker is gone
            finish()
        except BaseException as exc:  # a bug: the process exits non-zero and the worker reports it
            crashed.append(exc)
            _log.critical("worker.sink.writer_crashed", f"sink writer thread crashed: {exc.__class__.__name__}: {exc}",
                          traceback=traceback.format_exc())
            try:
                sink.close()
            except Exception:  # closing what is left, best effort
                pass

    writer = threading.Thread(target=writing, name="feedops-sink-write", daemon=True)
    writer.start()

    def hand(item: tuple) -> None:
        with ready:
            work.append(item)
            ready.notify()

    try:
        while writer.is_alive():
            if not conn.poll(0.5):  # (a crashed writing thread ends the process: the worker sees the pipe close)
                continue
            message = conn.recv()
            if message[0] == "batch":
                hand(("rows", rows_of(message[1])))
            else:
                hand(message)
                if message[0] == "close":
                    break
    except (EOFError, OSError):
        hand(("eof",))
    except BaseException as exc:  # a bug: write what was built, exit non-zero, the worker reports it
        _log.critical("worker.sink.receiver_crashed", f"sink writer could not take a batch: {exc.__class__.__name__}: "
                      f"{exc}", traceback=traceback.format_exc())
        crashed.append(exc)
        hand(("eof",))
    writer.join(REPLY_TIMEOUT_SECONDS)
    if crashed:
        sys.exit(1)


# ---------------------------------------------------------------------- worker side
class SinkWriter:
    """The worker's handle on the writer process (the attributes of a Sink; see the module docstring)."""

    def __init__(self, feed, shard: tuple[int, int], buckets: tuple[float, ...],
                 on_error: Callable[[str], None] | None = None, max_in_flight: int = 16):
        self.config = SinkConfig(feed.sink_url, feed.redis_stream_prefix, feed.redis_stream_maxlen,
                                 feed.sink_buffer_max, shard)
        probe = open_sink(self.config, shard)  # validates the URL here (SinkError), connects nothing
        self.kind, self.target = probe.kind, probe.target
        probe.close()
        self.buckets = buckets
        self._on_error = on_error or (lambda reason: None)
        self.on_account: Callable[[dict[str, Any]], None] = lambda acct: None
        self.max_in_flight = max_in_flight
        self.up = False
        self.buffered = 0
        self.dropped_total = 0
        self.errors_total = 0
        self.published_total = 0
        self.error: str | None = None
        self.in_flight = 0
        self._cond = threading.Condition()
        self._replies: queue_mod.Queue[tuple[str, Any]] = queue_mod.Queue()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn = None
        self._reader: threading.Thread | None = None
        self._closing = False
        self._send_lock = threading.Lock()

    # -------------------------------------------------------------- process
    def _start(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # never fork a process that runs CTP's threads
        parent, child = ctx.Pipe(duplex=True)
        secrets = sorted(getattr(log_mod, "_secrets", ()))
        self._process = ctx.Process(target=_child_main, name="feedops-sink-writer",
                                    args=(child, self.config, self.buckets, dict(log_mod._defaults), secrets))
        self._process.start()
        child.close()
        self._conn = parent
        self._reader = threading.Thread(target=self._read, name="feedops-sink-reader", daemon=True)
        self._reader.start()
        _LIVE.add(self)

    def _read(self) -> None:
        conn = self._conn
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "acct":
                _, batches, acct, state = message
                self._state(state)
                if acct["delivered"]:
                    self.on_account(acct)
                with self._cond:
                    self.in_flight -= batches
                    self._cond.notify_all()
            elif kind == "reply":
                self._state(message[3])
                self._replies.put((message[1], message[2]))
            elif kind == "sink_error":  # the child could not build the sink: open() raises SinkError
                self._closing = True
                self._replies.put(("sink_error", message[1]))
                break
        if not self._closing:
            code = None
            if self._process is not None:
                # the pipe closes a moment before the child's exit status can be collected: wait for it
                # (bounded) so the report names the real code, not None
                self._process.join(EXIT_STATUS_WAIT_SECONDS)
                code = self._process.exitcode
            self.error = f"the sink writer process exited unexpectedly (exit code {code})"
            self.up = False
            _log.critical("worker.sink.writer_died", self.error)
        self._replies.put(("eof", None))
        with self._cond:
            self.in_flight = 0
            self._cond.notify_all()

    def _state(self, state: dict[str, Any]) -> None:
        self.up, self.buffered = state["up"], state["buffered"]
        self.dropped_total, self.errors_total = state["dropped_total"], state["errors_total"]
        self.published_total = state["published_total"]
        for reason, count in state["errors"].items():
            for _ in range(count):
                self._on_error(reason)

    def _send(self, message: tuple) -> None:
        with self._send_lock:
            self._conn.send(message)

    def _request(self, message: tuple, timeout: float) -> tuple[str, Any]:
        if self._conn is None or self.error is not None:
            return "eof", None
        try:
            self._send(message)
        except OSError:
            return "eof", None
        try:
            return self._replies.get(timeout=timeout)
        except queue_mod.Empty:
            return "timeout", None

    # -------------------------------------------------------------- Sink interface
    def open(self) -> bool:
        """Start the writer and connect the sink; False when the target refuses (retried later); SinkError when unusable."""
        if self._process is None:
            self._start()
        kind, value = self._request(("open",), REPLY_TIMEOUT_SECONDS)
        if kind == "sink_error":
            self.close()
            raise SinkError(value)
        return kind == "opened" and bool(value)

    def wait_room(self, timeout: float) -> bool:
        """Wait until fewer than ``max_in_flight`` batches are under way; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.in_flight < self.max_in_flight or self.error is not None, timeout)

    def submit(self, records: Any) -> None:
        """Hand a batch of records (RECORD_DTYPE) to the writer (asynchronous; pickled through the pipe)."""
        if self.error is not None:
            raise RuntimeError(self.error)
        with self._cond:
            self.in_flight += 1
        self._send(("batch", records))

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything sent is written and the buffer is flushed (at most ``timeout`` s for the buffer)."""
        if self._process is not None and self._conn is not None:
            self._request(("flush", timeout), timeout + REPLY_TIMEOUT_SECONDS)

    def close(self) -> None:
        if self._process is None:
            return
        self._closing = True
        if self.error is None and self._conn is not None:
            self._request(("close",), REPLY_TIMEOUT_SECONDS)
        if self._conn is not None:
            self._conn.close()
        self._process.join(10.0)
        if self._process.exitcode is None:
            self._process.kill()
            self._process.join(5.0)
        if self._reader is not None:
            self._reader.join(5.0)
        self._process = None
        _LIVE.discard(self)


@atexit.register
def _close_all() -> None:
    """Registered after multiprocessing's own exit hook (imported above), so it runs first: the writers
    are told to stop before multiprocessing joins its children (else the join waits forever)."""
    for writer in list(_LIVE):
        try:
            writer.close()
        except Exception:  # best effort at interpreter exit
            pass
