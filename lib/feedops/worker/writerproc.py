"""The sink writer process itself (the child side of :mod:`feedops.worker.writer`).

:class:`WriterProcess` is the process's main: it builds the sink (file or Redis), then runs
two threads. The receiving thread (the main one) takes messages from the pipe and turns
each batch of records into rows (:func:`feedops.worker.encode.rows_of_records`: the JSON
lines); the writing thread publishes them, coalescing what queued up, and reports back, so
building the next batch overlaps a Redis round trip or a disk write. Only the writing thread
sends on the pipe; control messages queue behind the batches, so their order is kept.

:class:`Accountant` measures what was written: counts per exchange, latency histograms
and samples (callback -> written, exchange time -> written, skew-corrected).

The messages on the pipe are tuples whose first item is a tag of :class:`Msg`.
"""

from __future__ import annotations

import collections
import multiprocessing
import operator
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import clock
from .. import log as log_mod
from ..log import get_logger
from .encode import Rows, rows_of_records, text_rows_of_records
from .sinks import SinkError, open_sink
from .ticks import RECORD_DTYPE
from .tuning import tune_interpreter

_log = get_logger("worker")
SKEW_THRESHOLD_SECONDS = 1.0
SKEW_WINDOW_SECONDS = 60
LATENCY_SAMPLE = 20_000
#: How long the writer waits for its writing thread at the end (and the worker for a reply).
REPLY_TIMEOUT_SECONDS = 30.0


class Msg:
    """Tags of the pipe's messages (the first item of each tuple)."""

    # worker -> writer
    BATCH = "batch"  # (BATCH, count), then the count records' bytes (RECORD_DTYPE) in a frame of their own
    OPEN = "open"  # (OPEN,): connect the sink; answered by REPLY
    FLUSH = "flush"  # (FLUSH, timeout): write what is buffered; answered by ACCT then REPLY
    CLOSE = "close"  # (CLOSE,): close the sink and exit; answered by REPLY
    # writer -> worker
    ACCT = "acct"  # (ACCT, batches written, Accountant.account(...), state)
    REPLY = "reply"  # (REPLY, answer, value, state); answers below
    SINK_ERROR = "sink_error"  # (SINK_ERROR, message): the sink cannot be built or opened (also an answer)
    # answers in a REPLY
    OPENED = "opened"  # value: whether the sink connected
    FLUSHED = "flushed"
    CLOSED = "closed"
    # inside the writer: the receiving thread's hand-over to the writing thread
    ROWS = "rows"  # (ROWS, rows of one batch)
    EOF = "eof"  # (EOF,): the pipe closed (the worker is gone); on the worker side, no answer will come
    TIMEOUT = "timeout"  # on the worker side: no answer in time


@dataclass(frozen=True)
class SinkConfig:
    """What the child needs to build the sink (the subset of the feed settings open_sink reads)."""

    sink_url: str
    redis_stream_prefix: str
    redis_stream_maxlen: int
    sink_buffer_max: int
    shard: tuple[int, int]


def rows_of(records: Any) -> list[tuple]:
    """The rows (JSON line and the fields the sinks route by) of a batch of records."""
    return rows_of_records(records)


class Accountant:
    """Skew estimate and per-batch accounting of delivered records (runs in the child).

    Bulk operations, no Python step per tick: the two times of the rows and their exchanges are
    read by C-level maps (:func:`columns`), the latencies are numpy arrays, their bucket one
    ``searchsorted``, the counts per (exchange, bucket) one ``bincount``.
    """

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self._bounds = np.array(buckets, dtype=np.float64)
        self._skew_minimums: dict[int, float] = {}
        self._codes: dict[str, int] = {}  # exchange -> its number in the bincounts (this process's, first met first)
        self.skew = 0.0

    def update_skew(self, times: tuple[np.ndarray, np.ndarray]) -> None:
        """The smallest (receive - exchange) offset of the last minute, when beyond one second, is the skew.
        ``times``: :func:`columns` of the rows about to be written."""
        exchange_ts, recv_ts = times
        if not len(exchange_ts):
            return
        offset = float((recv_ts - exchange_ts).min())
        second = int(time.monotonic())
        known = self._skew_minimums.get(second)
        if known is None or offset < known:
            self._skew_minimums[second] = offset
        if len(self._skew_minimums) > SKEW_WINDOW_SECONDS:
            for key in sorted(self._skew_minimums)[:-SKEW_WINDOW_SECONDS]:
                del self._skew_minimums[key]
        skew = min(self._skew_minimums.values())
        self.skew = skew if abs(skew) > SKEW_THRESHOLD_SECONDS else 0.0

    def _bucket_of(self, values: np.ndarray) -> np.ndarray:
        """Bucket i holds bound[i-1] < v <= bound[i] (Prometheus "le"), the last one everything above the last bound."""
        return np.searchsorted(self._bounds, values, side="left")

    def account(self, delivered: list[tuple], times: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
        """Counts, latency samples and histogram buckets of the rows (:func:`~feedops.worker.encode.rows_of_records`)
        just written; ``times``, their :func:`columns` when already read."""
        now = clock.time()
        skew = self.skew
        count, width = len(delivered), len(self.buckets) + 1
        exchange_ts, recv_ts = times if times is not None else columns(delivered)
        # a wall-clock step back: not negative
        sink_latency = np.maximum(0.0, now - recv_ts)
        exchange_latency = np.maximum(0.0, now - exchange_ts - skew)
        exchanges = delivered.exchanges if isinstance(delivered, Rows) else list(map(_EXCHANGE, delivered))
        codes_of = self._codes
        for exchange in set(exchanges).difference(codes_of):
            codes_of[exchange] = len(codes_of)
        names = list(codes_of)
        codes = np.fromiter(map(codes_of.__getitem__, exchanges), dtype=np.intp, count=count)
        known = len(names)
        per_exchange = np.bincount(codes, minlength=known)
        present = np.flatnonzero(per_exchange).tolist()
        cells = np.bincount(codes * width + self._bucket_of(exchange_latency),
                            minlength=known * width).reshape(known, width)[present].tolist()
        sums = np.bincount(codes, weights=exchange_latency, minlength=known)[present].tolist()
        present_names = [names[i] for i in present]
        return {"delivered": count, "now": now,
                "per_exchange": dict(zip(present_names, per_exchange[present].tolist())),
                "histogram": dict(zip(present_names, cells)), "sums": dict(zip(present_names, sums)),
                "pipeline_histogram": np.bincount(self._bucket_of(sink_latency), minlength=width).tolist(),
                "pipeline_sum": sum(sink_latency.tolist()),
                "sink_latency": sink_latency[-LATENCY_SAMPLE:].tobytes(),
                "exchange_latency": exchange_latency[-LATENCY_SAMPLE:].tobytes(), "skew": skew}


_EXCHANGE = operator.itemgetter(2)
_EXCHANGE_TS = operator.itemgetter(4)
_RECV_TS = operator.itemgetter(5)


def joined(parts: list[Any]) -> list[tuple] | Rows:
    """The rows of several batches as one batch, in order."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(part, Rows) for part in parts):
        return Rows.concat(parts)
    return [row for part in parts for row in part]


def columns(rows: list[tuple] | Rows) -> tuple[np.ndarray, np.ndarray]:
    """(exchange_ts, recv_ts) of every row, as float64 arrays."""
    if isinstance(rows, Rows):
        return rows.exchange_ts, rows.recv_ts
    return (np.fromiter(map(_EXCHANGE_TS, rows), dtype=np.float64, count=len(rows)),
            np.fromiter(map(_RECV_TS, rows), dtype=np.float64, count=len(rows)))


class WriterProcess:
    """The writer process: build the sink, then write every batch the pipe brings (see the module docstring)."""

    def __init__(self, conn, sink, buckets: tuple[float, ...], errors: collections.Counter[str]):
        self.conn = conn
        self.sink = sink
        self.errors = errors  # sink errors by reason since the last report
        self.accountant = Accountant(buckets)
        # a batch's rows: one text for the file sink (written as it is), a line per row for Redis (an entry each)
        self.rows_of = text_rows_of_records if getattr(sink, "takes_text", False) else rows_of_records
        self.work: collections.deque[tuple] = collections.deque()  # receiving thread -> writing thread
        self._buffer = bytearray(1 << 20)  # the receiving thread's, for a batch's records
        self.ready = threading.Condition()
        self.crashed: list[BaseException] = []

    @classmethod
    def main(cls, conn, config: SinkConfig, buckets: tuple[float, ...], log_defaults: dict[str, str],
             secrets: list[str]) -> None:
        """The process's target: set the process up, build the sink, run until the worker closes or goes."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker drives the shutdown (drain, flush, close)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # at the file size limit (RLIMIT_FSIZE) a write must fail with EFBIG, which the file sink rolls back,
        # not kill the process (Python ignores SIGXFSZ already; said here because the file sink relies on it)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        log_mod.dump_stacks_on_signal()  # the runbook's last word before a SIGKILL: where every thread waits
        log_mod.configure(log_defaults.get("level"), log_defaults.get("fmt"))
        for secret in secrets:
            log_mod.register_secret(secret)
        errors: collections.Counter[str] = collections.Counter()
        try:
            sink = open_sink(config, config.shard, on_error=lambda reason: errors.update((reason,)))
        except SinkError as exc:
            conn.send((Msg.SINK_ERROR, str(exc)))
            return
        sink.use_rows()  # records are rows whose JSON line is built per batch (rows_of_records): no dict per tick
        tune_interpreter()  # as the worker does
        process = cls(conn, sink, buckets, errors)
        process.run()
        if process.crashed:
            sys.exit(1)

    def run(self) -> None:
        writer = threading.Thread(target=self.writing, name="feedops-sink-write", daemon=True)
        writer.start()
        self.receive(writer)
        writer.join(REPLY_TIMEOUT_SECONDS)

    # -------------------------------------------------------------- receiving thread
    def receive(self, writer: threading.Thread) -> None:
        """Take messages from the pipe until CLOSE or the pipe closes; batches become rows here."""
        log_mod.name_native_thread("sink-receive")
        conn = self.conn
        try:
            while writer.is_alive():
                if not conn.poll(0.5):  # (a crashed writing thread ends the process: the worker sees the pipe close)
                    continue
                message = conn.recv()
                if message[0] == Msg.BATCH:  # the records' bytes follow in the next frame
                    records = self._records(message[1])
                    self.hand((Msg.ROWS, self.rows_of(records)))  # (the rows hold copies: the buffer is reused)
                else:
                    self.hand(message)
                    if message[0] == Msg.CLOSE:
                        break
        except (EOFError, OSError):
            self.hand((Msg.EOF,))
        except BaseException as exc:  # a bug: write what was built, exit non-zero, the worker reports it
            _log.critical("worker.sink.receiver_crashed", f"sink writer could not take a batch: "
                          f"{exc.__class__.__name__}: {exc}", traceback=traceback.format_exc())
            self.crashed.append(exc)
            self.hand((Msg.EOF,))

    def _records(self, count: int) -> np.ndarray:
        """The next frame, a batch of ``count`` records, read into this thread's buffer (reused: one copy out of
        the kernel, no new object per batch); the array is valid until the next call."""
        size = count * RECORD_DTYPE.itemsize
        if len(self._buffer) < size:
            self._buffer = bytearray(max(size, 2 * len(self._buffer)))
        try:
            got = self.conn.recv_bytes_into(self._buffer)
        except multiprocessing.BufferTooShort as exc:  # more bytes than the header said: refused below
            got = len(exc.args[0])
        if got != size:
            raise ValueError(f"a batch of {count} records came with {got} bytes, not {size}")
        return np.frombuffer(self._buffer, dtype=RECORD_DTYPE, count=count)

    def hand(self, item: tuple) -> None:
        with self.ready:
            self.work.append(item)
            self.ready.notify()

    # -------------------------------------------------------------- writing thread
    def state(self) -> dict[str, Any]:
        sink = self.sink
        body = {"up": sink.up, "buffered": sink.buffered, "dropped_total": sink.dropped_total,
                "errors_total": sink.errors_total, "published_total": sink.published_total, "errors": dict(self.errors)}
        self.errors.clear()
        return body

    def write(self, batches: int, rows: list[tuple]) -> None:
        times = columns(rows)
        self.accountant.update_skew(times)
        delivered = self.sink.publish(rows)  # the rows themselves when they all went out, with nothing before them
        self.conn.send((Msg.ACCT, batches, self.accountant.account(delivered, times if delivered is rows else None),
                        self.state()))

    def finish(self) -> None:
        """The worker is gone: write what the sink still buffers (5 s at most), then close it."""
        try:
            self.sink.flush(5.0)
        finally:
            self.sink.close()

    def _take(self) -> list[tuple]:
        """Everything queued, waiting for it; empty when the sink buffers ticks and it is time to retry."""
        sink = self.sink
        with self.ready:
            while not self.work:
                if sink.buffered:  # down with ticks waiting: retry at the sink's pace even when nothing comes
                    if not self.ready.wait(max(0.05, sink.reconnect_interval)):
                        break
                else:
                    self.ready.wait()
            items = list(self.work)
            self.work.clear()
        return items

    def _control(self, item: tuple) -> bool:
        """Carry out a control message; False once the writer is done (closed, or the worker gone)."""
        kind, sink, conn = item[0], self.sink, self.conn
        if kind == Msg.OPEN:
            try:
                ok = sink.open()
            except SinkError as exc:
                conn.send((Msg.REPLY, Msg.SINK_ERROR, str(exc), self.state()))
                return True
            conn.send((Msg.REPLY, Msg.OPENED, ok, self.state()))
        elif kind == Msg.FLUSH:
            delivered = sink.flush(item[1])
            conn.send((Msg.ACCT, 0, self.accountant.account(delivered), self.state()))
            conn.send((Msg.REPLY, Msg.FLUSHED, None, self.state()))
        elif kind == Msg.CLOSE:
            sink.close()
            conn.send((Msg.REPLY, Msg.CLOSED, None, self.state()))
            return False
        elif kind == Msg.EOF:  # the worker went away: write what is left, then go
            self.finish()
            return False
        return True

    def writing(self) -> None:
        log_mod.name_native_thread("sink-write")
        try:
            while True:
                items = self._take()
                if not items:
                    self.write(0, [])
                    continue
                parts: list[Any] = []
                for item in items:
                    if item[0] == Msg.ROWS:  # behind: everything waiting goes out as one write
                        parts.append(item[1])
                        continue
                    if parts:
                        self.write(len(parts), joined(parts))
                        parts = []
                    if not self._control(item):
                        return
                if parts:
                    self.write(len(parts), joined(parts))
        except (EOFError, OSError):  # the pipe broke under a send: the worker is gone
            self.finish()
        except BaseException as exc:  # a bug: the process exits non-zero and the worker reports it
            self.crashed.append(exc)
            _log.critical("worker.sink.writer_crashed", f"sink writer thread crashed: {exc.__class__.__name__}: {exc}",
                          traceback=traceback.format_exc())
            try:
                self.sink.close()
            except Exception:  # closing what is left, best effort
                pass
