"""The sink writer: a child process that turns normalised ticks into JSON and writes them.

On a 2-vCPU machine the worker is CPU-bound in Python: CTP's callback thread and the
pipeline share one interpreter lock. Building the JSON records and writing them run in
a child process with its own interpreter; the pipeline only writes batches of
records (a numpy array, :data:`feedops.worker.ticks.RECORD_DTYPE`: one buffer, sent as
its bytes behind a small pickled header) into a pipe. The child (:mod:`feedops.worker.writerproc`) turns a batch into one JSON object
line per tick without a dict per tick (:mod:`feedops.worker.encode`). Encoding in
the worker instead was measured worse: py-spy ``--gil`` showed it holding the
interpreter lock 15 % of the time.

The child owns the real :class:`~feedops.worker.sinks.Sink` (file or Redis) with its
buffering, drop counting and reconnection, and measures what happened to every tick:
after each write it sends back the counts per exchange, the latency samples
(callback -> written, and exchange time -> written, skew-corrected) and the sink state
(up, buffered, dropped, errors). :class:`SinkWriter`, this module, is its proxy in the
worker: the same attributes as a ``Sink`` (``kind``, ``target``, ``up``, ``buffered``,
``dropped_total``, ``errors_total``, ``published_total``), ``open``/``flush``/``close``
synchronous, ``submit`` asynchronous with at most ``max_in_flight`` batches under way
(beyond that the pipeline waits and the callback queue absorbs the burst: back pressure
without blocking CTP's thread). The messages between the two are tagged with
:class:`~feedops.worker.writerproc.Msg`.

Shutdown: ``flush`` asks the child to write what it buffered (bounded in time) and
answers when it is done; ``close`` stops it. The child ignores SIGINT/SIGTERM (the
worker drives the shutdown) and exits when the pipe closes, after a last flush, so a
dead worker never leaves it behind.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util  # registers its exit hook (joins children) before _close_all below
import queue as queue_mod
import threading
import weakref
from typing import Any, Callable

import numpy as np

from .. import log as log_mod
from ..log import get_logger
from .sinks import SinkError, open_sink
from .ticks import RECORD_DTYPE
from .writerproc import LATENCY_SAMPLE, REPLY_TIMEOUT_SECONDS, Accountant, Msg, SinkConfig, WriterProcess, rows_of

__all__ = ["LATENCY_SAMPLE", "Accountant", "SinkConfig", "SinkWriter", "rows_of"]

_log = get_logger("worker")
#: After the pipe from the writer closed unexpectedly: how long to wait for its exit status.
EXIT_STATUS_WAIT_SECONDS = 5.0
_LIVE: "weakref.WeakSet[SinkWriter]" = weakref.WeakSet()


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
        self._process = ctx.Process(target=WriterProcess.main, name="feedops-sink-writer",
                                    args=(child, self.config, self.buckets, dict(log_mod._defaults), secrets))
        self._process.start()
        child.close()
        self._conn = parent
        self._reader = threading.Thread(target=self._read, name="feedops-sink-reader", daemon=True)
        self._reader.start()
        _LIVE.add(self)

    def _read(self) -> None:
        log_mod.name_native_thread("sink-reader")
        conn = self._conn
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == Msg.ACCT:
                _, batches, acct, state = message
                self._state(state)
                if acct["delivered"]:
                    self.on_account(acct)
                with self._cond:
                    self.in_flight -= batches
                    self._cond.notify_all()
            elif kind == Msg.REPLY:
                self._state(message[3])
                self._replies.put((message[1], message[2]))
            elif kind == Msg.SINK_ERROR:  # the child could not build the sink: open() raises SinkError
                self._closing = True
                self._replies.put((Msg.SINK_ERROR, message[1]))
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
        self._replies.put((Msg.EOF, None))
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
            return Msg.EOF, None
        try:
            self._send(message)
        except OSError:
            return Msg.EOF, None
        try:
            return self._replies.get(timeout=timeout)
        except queue_mod.Empty:
            return Msg.TIMEOUT, None

    # -------------------------------------------------------------- Sink interface
    def open(self) -> bool:
        """Start the writer and connect the sink; False when the target refuses (retried later); SinkError when unusable."""
        if self._process is None:
            self._start()
        kind, value = self._request((Msg.OPEN,), REPLY_TIMEOUT_SECONDS)
        if kind == Msg.SINK_ERROR:
            self.close()
            raise SinkError(value)
        return kind == Msg.OPENED and bool(value)

    def wait_room(self, timeout: float) -> bool:
        """Wait until fewer than ``max_in_flight`` batches are under way; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.in_flight < self.max_in_flight or self.error is not None, timeout)

    def submit(self, records: Any) -> None:
        """Hand a batch of records (RECORD_DTYPE) to the writer (asynchronous): a small header, then the
        records' bytes as they are, written to the pipe from the array (no pickle, no copy in user space)."""
        if self.error is not None:
            raise RuntimeError(self.error)
        if getattr(records, "dtype", None) != RECORD_DTYPE:
            raise TypeError(f"a batch of records is a numpy array of RECORD_DTYPE, not {type(records).__name__}")
        records = np.ascontiguousarray(records)
        with self._cond:
            self.in_flight += 1
        with self._send_lock:  # the two frames stay together
            self._conn.send((Msg.BATCH, len(records)))
            self._conn.send_bytes(records.view(np.uint8))

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything sent is written and the buffer is flushed (at most ``timeout`` s for the buffer)."""
        if self._process is not None and self._conn is not None:
            self._request((Msg.FLUSH, timeout), timeout + REPLY_TIMEOUT_SECONDS)

    def close(self) -> None:
        if self._process is None:
            return
        self._closing = True
        if self.error is None and self._conn is not None:
            self._request((Msg.CLOSE,), REPLY_TIMEOUT_SECONDS)
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
