"""The sinks' common part: bounded buffering, drop counting, reconnection pacing (:class:`Sink`).

The sinks themselves are :class:`feedops.worker.filesink.FileSink` and
:class:`feedops.worker.redissink.RedisSink`; :func:`feedops.worker.sinks.open_sink` builds
the one ``FEEDOPS_SINK_URL`` names.
"""

from __future__ import annotations

import collections
import operator
import time
from typing import Any, Callable

from ..log import get_logger
from .encode import Rows, encode

_log = get_logger("worker")


def _lines_of(rows: list[tuple] | Rows) -> list[bytes]:
    return rows.lines() if isinstance(rows, Rows) else list(map(_LINE, rows))


_LINE = operator.itemgetter(0)


#: At most this many records per write: a backlog is written in whole chunks of this size.
SEND_CHUNK = 20_000


class SinkError(Exception):
    """The sink cannot be opened at all (malformed URL, unwritable directory)."""


class Sink:
    """Base: bounded buffering, drop counting and reconnection pacing."""

    kind = "base"

    def __init__(self, target: str, buffer_max: int, reconnect_interval: float = 1.0,
                 on_error: Callable[[str], None] | None = None):
        self.target = target
        self.buffer: collections.deque[dict[str, Any]] = collections.deque()
        self.buffer_max = buffer_max
        self.reconnect_interval = reconnect_interval
        self.up = False
        self.published_total = 0
        self.dropped_total = 0
        self.errors_total = 0
        self._next_attempt = 0.0
        self._on_error = on_error or (lambda reason: None)
        # records are dicts (RECORD_KEYS) unless use_rows() switched to the writer's rows
        self.encode_all: Callable[[list[Any]], list[bytes]] = lambda records: [encode(r) for r in records]
        self.instrument_of: Callable[[Any], Any] = operator.itemgetter("instrument")
        self.exchange_of: Callable[[Any], str] = operator.itemgetter("exchange")
        self.trading_day_of: Callable[[Any], str] = operator.itemgetter("trading_day")

    #: Whether the sink takes a batch's rows as one text (:class:`~feedops.worker.encode.Rows`) best.
    takes_text = False

    def use_rows(self) -> None:
        """Take rows (:func:`feedops.worker.encode.rows_of_records`: the JSON line already built) as records instead
        of dicts."""
        self.encode_all = _lines_of
        self.instrument_of, self.exchange_of, self.trading_day_of = (operator.itemgetter(i) for i in (1, 2, 3))

    # subclasses implement these two
    def _connect(self) -> None:
        raise NotImplementedError

    def _send(self, records: list[Any]) -> list[Any]:
        """Write ``records`` whole and return them, or raise leaving none of them in the target (the Redis
        sink cannot know whether a call without a reply ran: it holds it, see :meth:`_requeue`)."""
        raise NotImplementedError

    def _requeue(self, failed: list[Any], rest: list[Any]) -> None:
        """A write of ``failed`` failed (``rest`` was not tried): keep both for the next attempt, in order
        (the Redis sink holds its in-flight batch itself, to re-send it with the same sequence numbers)."""
        self._buffer([*failed, *rest])

    def _held(self) -> int:
        """Records the sink holds outside the buffer (the Redis sink's unconfirmed batch)."""
        return 0

    def _resend_held(self) -> list[Any]:
        """Send what the sink holds from a failed attempt before anything else; return it once delivered."""
        return []

    def close(self) -> None:
        pass

    @property
    def buffered(self) -> int:
        return len(self.buffer) + self._held()

    def _error(self, reason: str, exc: BaseException) -> None:
        self.errors_total += 1
        self._on_error(reason)
        if self.up:
            _log.error("worker.sink.down", f"{self.kind} sink failed ({exc.__class__.__name__}: {exc}); buffering up to "
                       f"{self.buffer_max} ticks and reconnecting", sink=self.kind, target=self.target, reason=reason)
        self.up = False
        self._next_attempt = time.monotonic() + self.reconnect_interval

    def open(self) -> bool:
        """First connection; a refusal is logged and retried later (the worker keeps running)."""
        try:
            self._connect()
        except SinkError:
            raise
        except Exception as exc:  # any transport error means "down"
            self.up = True  # so that _error logs the transition once
            self._error("connect", exc)
            return False
        self.up = True
        return True

    def publish(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write ``records`` (after anything buffered); return the records that reached the target.

        A sink that was down counts as up again once a write succeeded, not when it merely
        reconnected (a full disk "reconnects" at once): one ``worker.sink.down`` ERROR per
        outage and one ``worker.sink.up`` when the backlog is written.
        """
        recovering = not self.up
        if recovering:
            if time.monotonic() < self._next_attempt:
                self._buffer(records)
                return []
            try:
                self._connect()
            except Exception as exc:
                self._error("connect", exc)
                self._buffer(records)
                return []
        batch = records
        if self.buffer:
            self.buffer.extend(records)
            batch = list(self.buffer)
            self.buffer.clear()
        try:
            delivered: list[Any] = self._resend_held()
        except Exception as exc:
            self._error("write", exc)
            self._buffer(batch)
            return []
        # a backlog goes out in chunks, each written whole or not at all: a disk with room for part of it
        # takes that part, instead of refusing the whole backlog forever
        failed = False
        for start in range(0, max(1, len(batch)), SEND_CHUNK):
            chunk = batch if len(batch) <= SEND_CHUNK else batch[start:start + SEND_CHUNK]
            try:
                sent = self._send(chunk)
                if delivered:
                    delivered.extend(sent)
                else:  # the batch itself when it went out in one chunk with nothing before it (WriterProcess.write)
                    delivered = sent
            except Exception as exc:
                self._error("write", exc)
                self._requeue(chunk, batch[start + SEND_CHUNK:])
                failed = True
                break
        self.published_total += len(delivered)
        if recovering and not failed:
            self.up = True
            _log.info("worker.sink.up", f"{self.kind} sink is back; wrote {len(delivered)} ticks including the "
                      "buffered ones", sink=self.kind, target=self.target, written=len(delivered))
        return delivered

    def _buffer(self, records: list[dict[str, Any]]) -> None:
        self.buffer.extend(records)
        overflow = len(self.buffer) + self._held() - self.buffer_max  # a held batch counts against the bound
        if overflow > 0:
            for _ in range(overflow):
                self.buffer.popleft()
            if self.dropped_total == 0:
                _log.error("worker.sink.dropping", f"{self.kind} sink buffer is full ({self.buffer_max} ticks); "
                           "dropping the oldest", sink=self.kind, target=self.target)
            self.dropped_total += overflow

    def flush(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Try to deliver the buffer before shutdown (bounded in time); return what was delivered."""
        deadline = time.monotonic() + timeout
        delivered: list[dict[str, Any]] = []
        while self.buffered and time.monotonic() < deadline:
            self._next_attempt = 0.0
            sent = self.publish([])
            delivered.extend(sent)
            if not sent:
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return delivered

