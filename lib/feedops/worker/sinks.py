"""Tick sinks: JSON lines per trading day (file) and Redis Streams (redis).

Both share :class:`Sink`'s buffering: while the target refuses writes the records
wait in a bounded buffer (``FEEDOPS_SINK_BUFFER_MAX``); beyond it the oldest are
dropped and counted. Reconnection is attempted at most once per
``reconnect_interval`` seconds, in the sink writer process (:mod:`feedops.worker.writer`),
so a dead sink never blocks CTP's callback thread. Layouts for consumers are in
docs/ops/worker.md.

* ``file:<dir>``: ``<dir>/<TradingDay>/ticks-<i>of<N>.jsonl``, one JSON object per
  line, appended, written with ``os.write`` after every batch (one file per shard:
  several workers never interleave writes); only whole batches stay (:class:`FileSink`).
* ``redis://host:port/db``: one stream per exchange, ``<prefix>:<EXCHANGE>``; every tick
  is one entry ``XADD <stream> * instrument <id> tick <json>``, issued by a small Lua
  script per stream and batch (which then trims the stream once, ``MAXLEN ~ <maxlen>``)
  in one pipelined round trip, applied at most once per writer id and sequence number
  (:class:`RedisSink`).
"""

from __future__ import annotations

import collections
import operator
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson
from numpy.lib.recfunctions import structured_to_unstructured

from .. import paths
from ..addresses import check_sink_url, public_target
from ..log import get_logger
from .layout import ENCODING
from .ticks import DEPTH_LEVELS, RECORD_DTYPE, RECORD_KEYS, SCHEMA_VERSION, record_of

_log = get_logger("worker")
_loads = orjson.loads


def encode(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)


_KEYS = len(RECORD_KEYS) - 1  # the values of a line (``schema`` is a constant of the template)
#: One JSON object line per record: keys in RECORD_KEYS order, a %s per value, the schema version last.
_LINE = ("{" + ",".join(f'"{key}":"%s"' if key == "instrument" else f'"{key}":%s' for key in RECORD_KEYS[:-1])
         + f',"schema":{SCHEMA_VERSION}' + "}\n").encode()
#: Numbers by JSON type: floats print as floats, ints as ints (as the struct holds them).
_FLOAT_KEYS = [key for key in RECORD_KEYS[:-1] if RECORD_DTYPE.fields[key][0].kind == "f"]
_INT_KEYS = [key for key in RECORD_KEYS[:-1] if RECORD_DTYPE.fields[key][0].kind == "i"]
_TEXT_KEYS = ("exchange", "trading_day", "action_day", "update_time")
_POSITION = {key: i for i, key in enumerate(RECORD_KEYS)}
#: Levels 2-5: (column of the price in the floats, column of the volume in the ints).
_LEVEL_COLUMNS = [(_FLOAT_KEYS.index(price), _INT_KEYS.index(volume)) for price, volume in DEPTH_LEVELS]
#: The int standing for a null volume (a level without a price) until it is written as null.
_NULL_INT = np.iinfo(np.int64).min
_NULL_INT_TEXT = str(_NULL_INT).encode()
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
#: Bytes that make an instrument id need JSON escaping or re-encoding (GB18030 to UTF-8): the per-record path.
_PLAIN_ASCII = np.zeros(256, dtype=bool)
_PLAIN_ASCII[0x20:0x7F] = True
_PLAIN_ASCII[[ord('"'), ord("\\")]] = False
_PLAIN_ASCII[0] = True  # the NUL padding of the char array


class _Texts(dict):
    """ASCII bytes -> (JSON string token, str), for the few distinct exchanges, days and times of a batch."""

    def __missing__(self, raw: bytes) -> tuple[bytes, str]:
        text = raw.decode(ENCODING, errors="replace")
        value = (orjson.dumps(text), text)
        if len(self) > 10_000:
            self.clear()
        self[raw] = value
        return value


_TEXTS = _Texts()


def _tokens(matrix: np.ndarray, null: bytes | None = None) -> list[bytes]:
    """The numbers of a 2-D array as JSON tokens, row after row (one orjson call); NaN and ``null`` as null."""
    blob = orjson.dumps(matrix.reshape(-1), option=_NUMPY)[1:-1]
    if null is not None and null in blob:
        blob = blob.replace(null, b"null")
    return blob.split(b",")


def rows_of_records(records: np.ndarray) -> list[tuple]:
    """Rows ``(line, instrument, exchange, trading_day, exchange_ts, recv_ts)`` of a batch of records
    (:data:`~feedops.worker.ticks.RECORD_DTYPE`, as the pipeline hands them over).

    The hot path of the sink writer: no dict and no per-field Python work. Floats and ints
    are two 2-D arrays, each encoded by one orjson call; "no value" (the largest double,
    either sign, NaN, the infinities) becomes NaN, which orjson writes as ``null``, and the
    volume of a level 2-5 whose price has none a marker replaced by ``null``; the columns of tokens are
    interleaved in key order by slice assignment and one %-template per batch adds the keys.
    An instrument id that needs escaping or is not ASCII takes the per-record path (same output).
    """
    count = len(records)
    if not count:
        return []
    instruments = records["instrument"]
    if not _PLAIN_ASCII[np.ascontiguousarray(instruments).view(np.uint8)].all():
        return [row_of(record) for record in records]
    floats = structured_to_unstructured(records[_FLOAT_KEYS], dtype=np.float64)
    no_value = ~(np.abs(floats) < sys.float_info.max)
    floats[no_value] = np.nan  # orjson writes NaN as null
    ints = structured_to_unstructured(records[_INT_KEYS], dtype=np.int64)
    for price, volume in _LEVEL_COLUMNS:
        ints[no_value[:, price], volume] = _NULL_INT
    float_tokens = _tokens(floats)
    int_tokens = _tokens(ints, _NULL_INT_TEXT)
    tokens: list[Any] = [None] * (count * _KEYS)
    ids = instruments.tolist()
    tokens[_POSITION["instrument"]::_KEYS] = ids
    texts = _TEXTS
    columns = {}
    for key in _TEXT_KEYS:
        pairs = [texts[raw] for raw in records[key].tolist()]
        tokens[_POSITION[key]::_KEYS] = [token for token, _ in pairs]
        columns[key] = pairs
    width = len(_FLOAT_KEYS)
    for j, key in enumerate(_FLOAT_KEYS):
        tokens[_POSITION[key]::_KEYS] = float_tokens[j::width]
    width = len(_INT_KEYS)
    for j, key in enumerate(_INT_KEYS):
        tokens[_POSITION[key]::_KEYS] = int_tokens[j::width]
    lines = ((_LINE * count) % tuple(tokens)).split(b"\n")
    return list(zip(lines, ids, [text for _, text in columns["exchange"]], [text for _, text in columns["trading_day"]],
                    records["exchange_ts"].tolist(), records["recv_ts"].tolist()))


def row_of(record: np.void) -> tuple:
    """The row of one record (the per-record path; same line as the batch path)."""
    out = record_of(record)
    return (encode(out), out["instrument"].encode(), out["exchange"], out["trading_day"], out["exchange_ts"],
            out["recv_ts"])


def _lines_of(rows: list[tuple]) -> list[bytes]:
    return [row[0] for row in rows]


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

    def use_rows(self) -> None:
        """Take rows (:func:`rows_of_records`: the JSON line already built) as records instead of dicts."""
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
        self._buffer(failed + rest)

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
            chunk = batch[start:start + SEND_CHUNK]
            try:
                delivered.extend(self._send(chunk))
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


#: FileSink starts the write-back of its file every this many bytes (see FileSink._write_back).
WRITEBACK_BYTES = 8 << 20


class FileSink(Sink):
    """JSON lines per trading day; only whole records ever stay in the file.

    Each day file is written through its own descriptor (``O_APPEND``, no user-space
    buffer) and the sink tracks its *committed* offset: the end of the last batch written
    whole. A batch is written with as many ``write`` calls as the kernel needs; if one
    fails (ENOSPC, EFBIG at the file size limit, EIO), every file the batch touched is
    truncated back to its committed offset before the error is reported, so the batch,
    buffered and re-sent later, is written once. Before each write the file's size is
    checked against the committed offset (a truncation that failed is retried there).
    At start every day file of this shard, and later any day file opened for writing
    (a late tick of an older day), has a torn tail left by a crash repaired: the bytes
    after the last newline are copied to a side file ``<file>.torn-<offset>`` and cut
    off, with one ERROR line naming both.
    """

    kind = "file"

    def __init__(self, directory: Path, shard: tuple[int, int], buffer_max: int, **kw: Any):
        super().__init__(f"file:{directory}", buffer_max, **kw)
        self.directory = directory
        self.file_name = f"ticks-{shard[0]}of{shard[1]}.jsonl"
        self._files: dict[str, int] = {}  # trading day -> descriptor
        self._committed: dict[str, int] = {}  # trading day -> end of the last whole batch
        self._written_back: dict[str, int] = {}  # trading day -> offset up to which write-back was started
        self.repaired_total = 0  # torn tails cut off
        self._checked_tails = False
        self.rolled_back_total = 0  # failed writes truncated back

    def _connect(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create the file sink directory {self.directory} ({exc.strerror})") from None
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise SinkError(f"the file sink directory {self.directory} is not writable")
        if not self._checked_tails:
            self._checked_tails = True
            self._repair_existing()

    def _repair_existing(self) -> None:
        """At start: cut the torn tail of any of this shard's day files (a crash leaves it in the file being
        written), so that readers see whole records even before the first write of the day."""
        for path in sorted(self.directory.glob(f"*/{self.file_name}")):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            except OSError:
                continue  # repaired when the file is opened for writing, if it ever is
            try:
                if repair_torn_tail(path, fd) is not None:
                    self.repaired_total += 1
            except OSError as exc:
                _log.error("worker.sink.repair_failed", f"cannot repair the tail of {path} ({exc.strerror}); "
                           "retried when the file is opened for writing", path=str(path))
            finally:
                os.close(fd)

    def path_for(self, trading_day: str) -> Path:
        return self.directory / trading_day / self.file_name

    def _file(self, trading_day: str) -> int:
        fd = self._files.get(trading_day)
        if fd is None:
            path = self.path_for(trading_day)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)  # kept open across batches
            try:
                committed = repair_torn_tail(path, fd)
            except BaseException:
                os.close(fd)
                raise
            if committed is None:
                committed = os.fstat(fd).st_size
            else:
                self.repaired_total += 1
            self._files[trading_day] = fd
            self._committed[trading_day] = committed
            self._written_back[trading_day] = committed  # appending to an older file: from its end
        return fd

    def _send(self, records: list[Any]) -> list[Any]:
        by_day: dict[str, list[bytes]] = {}
        day_of = self.trading_day_of
        for record, line in zip(records, self.encode_all(records)):
            day = day_of(record)
            lines = by_day.get(day)
            if lines is None:
                lines = by_day[day] = []
            lines.append(line)
        touched: list[str] = []
        ends: dict[str, int] = {}
        try:
            for day, lines in by_day.items():
                fd = self._file(day)
                touched.append(day)
                committed = self._committed[day]
                if os.fstat(fd).st_size != committed:  # an earlier roll-back did not complete
                    os.ftruncate(fd, committed)
                lines.append(b"")
                data = b"\n".join(lines)
                _write_all(fd, data)
                ends[day] = committed + len(data)
        except BaseException:
            self._roll_back(touched)
            raise
        self._committed.update(ends)
        for day in ends:
            self._write_back(day, self._files[day])
        newest = max(self._files, default="")
        for old in [d for d in self._files if d < newest and d not in ends]:  # a new day began: the old file is done
            self._close_day(old)
        return records

    def _roll_back(self, days: list[str]) -> None:
        """Cut every file in ``days`` back to its committed offset (the failed batch leaves nothing)."""
        for day in days:
            fd, committed = self._files.get(day), self._committed.get(day)
            if fd is None or committed is None:
                continue
            try:
                size = os.fstat(fd).st_size
                if size != committed:
                    os.ftruncate(fd, committed)
                    self.rolled_back_total += 1
                    _log.warning("worker.sink.rolled_back", f"failed write: {self.path_for(day)} truncated from {size} "
                                 f"back to {committed} bytes (the last whole batch); the batch is buffered and "
                                 "written again", path=str(self.path_for(day)), size=size, committed=committed)
            except OSError as exc:  # retried before the next write to this file
                _log.error("worker.sink.roll_back_failed", f"cannot truncate {self.path_for(day)} back to {committed} "
                           f"bytes ({exc.strerror}); retried before the next write", path=str(self.path_for(day)),
                           committed=committed)

    def _write_back(self, day: str, fd: int) -> None:
        """Start the disk write of every WRITEBACK_BYTES appended, instead of leaving it to the kernel.

        Left alone, the kernel writes dirty pages back once they are 30 s old: on a
        40,000 ticks/s feed, ~800 MB in one burst, which stalled the machine enough to
        take the worker's p99 latency from ~30 ms to ~200 ms (measured on a 2-vCPU VM).
        ``POSIX_FADV_DONTNEED`` on the range just written starts its write-back without
        waiting for it (pages still dirty stay cached; readers tailing the file read them from memory).
        """
        end = self._committed[day]
        start = self._written_back.get(day, 0)
        if end - start >= WRITEBACK_BYTES:
            try:
                os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
            except OSError:  # advice only: a file system that refuses it loses nothing
                pass
            self._written_back[day] = end

    def _close_day(self, day: str) -> None:
        fd = self._files.pop(day)
        committed = self._committed.pop(day)
        self._written_back.pop(day, None)
        try:
            if os.fstat(fd).st_size != committed:  # a roll-back that failed: last chance before the file is left
                os.ftruncate(fd, committed)
        except OSError:
            pass  # the next open repairs a torn tail; see worker.sink.roll_back_failed
        try:
            os.close(fd)
        except OSError:
            pass

    def close(self) -> None:
        for day in list(self._files):
            self._close_day(day)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (a short write is continued; the error of a failed one is raised)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


#: How far back from the end a torn tail is looked for at a time.
_TAIL_CHUNK = 1 << 16


def repair_torn_tail(path: Path, fd: int) -> int | None:
    """Cut off the bytes after the last newline of ``path`` (open for writing as ``fd``), if any.

    They are the part of a record a crash interrupted (SIGKILL, power loss mid-write):
    left there, the next write would glue a new record onto them. They are copied to
    ``<file>.torn-<offset>`` (``-1``, ``-2``... if taken) for inspection, then truncated
    away; one ERROR line names the file, the offset, the byte count and the side file.
    Return the new size, or None when the file ended with a newline (or was empty).
    """
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    with open(path, "rb") as reader:
        reader.seek(size - 1)
        if reader.read(1) == b"\n":
            return None
        cut = 0
        end = size
        while end > 0:
            start = max(0, end - _TAIL_CHUNK)
            reader.seek(start)
            chunk = reader.read(end - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                cut = start + newline + 1
                break
            end = start
        reader.seek(cut)
        torn = reader.read(size - cut)
    side = _quarantine(path, cut, torn)
    os.ftruncate(fd, cut)
    where = f"copied to {side}" if side else "could not be copied (see the previous line); cut off anyway"
    _log.error("worker.sink.torn_tail", f"{path} ended in a torn record ({len(torn)} bytes after offset {cut}, no "
               f"newline): {where}; the file now ends at the last whole record", path=str(path), offset=cut,
               torn_bytes=len(torn), quarantine=str(side) if side else None)
    return cut


def _quarantine(path: Path, offset: int, torn: bytes) -> Path | None:
    for attempt in range(100):
        side = path.with_name(f"{path.name}.torn-{offset}" + (f"-{attempt}" if attempt else ""))
        try:
            fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            continue
        except OSError as exc:
            _log.error("worker.sink.quarantine_failed", f"cannot create {side} ({exc.strerror})", path=str(side))
            return None
        try:
            _write_all(fd, torn)
        except OSError as exc:
            _log.error("worker.sink.quarantine_failed", f"cannot write {side} ({exc.strerror})", path=str(side))
            os.close(fd)
            side.unlink(missing_ok=True)
            return None
        os.close(fd)
        return side
    return None


#: One round trip per stream and batch, applied at most once per (writer, sequence number).
#: KEYS[1] the stream, KEYS[2] the hash of applied sequence numbers; ARGV: MAXLEN, the hash field
#: (writer id and stream), the batch's sequence number, then (instrument, tick) pairs. A batch whose
#: number is not above the one recorded for its field was applied already (its reply was lost: a
#: stall past the socket timeout, a dropped connection) and is refused (-1). A key of the wrong type
#: is refused before anything is added, so a failed call adds nothing. The script XADDs every
#: pair, trims the stream once (approximate MAXLEN; trimming once per call instead of per entry costs
#: Redis ~9 % less CPU per tick; the script runs atomically, so readers never see more than the bound
#: plus the approximate trim's slack of about one node, 100 entries) and records the number, all
#: atomically: a reader never sees a batch whose number is not recorded, or the reverse.
XADD_MANY = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'stream' and kind ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. KEYS[1] .. ' holds a ' .. kind .. ', not a stream')
end
local seq = tonumber(ARGV[3])
local applied = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
if applied >= seq then
  return -1
end
for i = 4, #ARGV, 2 do
  redis.call('XADD', KEYS[1], '*', 'instrument', ARGV[i], 'tick', ARGV[i + 1])
end
redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return (#ARGV - 3) / 2
"""
REDIS_CHUNK = 2000
try:  # redis[hiredis]: the C command packer (redis-py's own is the fallback)
    from hiredis import pack_command as _pack_command
except ImportError:  # pragma: no cover - hiredis is a dependency
    _pack_command = None


class RedisSink(Sink):
    """Redis Streams, exactly once per (writer id, sequence number).

    Every script call carries this sink's writer id (random, one per writer process) and
    a sequence number that grows with every call. A call that fails (timeout, dropped
    connection, error reply) is kept, commands and numbers unchanged, and sent again
    before anything else once Redis answers; the script refuses a number it has already
    applied, so a batch Redis executed while its reply was lost is not added twice.
    """

    kind = "redis"

    def __init__(self, url: str, prefix: str, maxlen: int, buffer_max: int, **kw: Any):
        super().__init__(public_target(url), buffer_max, **kw)
        self.prefix = prefix
        self.maxlen = maxlen
        self.applied_key = applied_key(prefix)
        self.writer_id = uuid.uuid4().hex
        self._sequence = 0
        self._in_flight: tuple[list[tuple], list[Any]] | None = None  # (commands, records) not yet confirmed
        self.refused_total = 0  # script calls Redis had already applied
        import redis

        try:
            self.client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=1.0)
        except ValueError as exc:
            raise SinkError(f"malformed Redis URL {public_target(url)!r} ({exc})") from None
        self._sha = self.client.register_script(XADD_MANY).sha

    def stream(self, exchange: str) -> str:
        return f"{self.prefix}:{exchange or 'UNKNOWN'}"

    def _connect(self) -> None:
        self.client.ping()

    def _held(self) -> int:
        return len(self._in_flight[1]) if self._in_flight else 0

    def _resend_held(self) -> list[Any]:
        if self._in_flight is None:
            return []
        commands, records = self._in_flight
        self._confirm(commands, self._execute(commands))
        self._in_flight = None
        return records

    def _requeue(self, failed: list[Any], rest: list[Any]) -> None:
        if self._in_flight is not None and self._in_flight[1] is failed:
            self._buffer(rest)  # the failed call is held as it was sent, numbers included
        else:
            self._buffer(failed + rest)

    def _send(self, records: list[Any]) -> list[Any]:
        """One script call per stream and chunk (``XADD <stream> * instrument <id> tick <json>`` per entry, one
        ``XTRIM MAXLEN ~ n`` per call), each with the next sequence number, all in one round trip."""
        if not records:
            return records
        by_stream: dict[str, list[Any]] = {}
        exchange_of, instrument_of = self.exchange_of, self.instrument_of
        for record, line in zip(records, self.encode_all(records)):
            exchange = exchange_of(record)
            args = by_stream.get(exchange)
            if args is None:
                args = by_stream[exchange] = []
            args.append(instrument_of(record))
            args.append(line)
        chunk = 2 * REDIS_CHUNK
        commands = []
        for exchange, args in by_stream.items():
            stream = self.stream(exchange)
            field = f"{self.writer_id}:{stream}"
            for i in range(0, len(args), chunk):
                self._sequence += 1
                commands.append((b"EVALSHA", self._sha, 2, stream, self.applied_key, self.maxlen, field,
                                 self._sequence, *args[i:i + chunk]))
        self._in_flight = (commands, records)
        self._confirm(commands, self._execute(commands))
        self._in_flight = None
        return records

    def _confirm(self, commands: list[tuple], replies: list[Any]) -> None:
        refused = [command[7] for command, reply in zip(commands, replies) if reply == -1]
        if refused:
            self.refused_total += len(refused)
            _log.info("worker.sink.resend_ignored", f"Redis had already applied {len(refused)} re-sent batch(es) "
                      f"(sequence {refused[0]}..{refused[-1]} of writer {self.writer_id}) whose reply was lost; "
                      "not added twice", sink=self.kind, writer=self.writer_id, batches=len(refused))

    def _execute(self, commands: list[tuple]) -> list[Any]:
        """Send ``commands`` in one write, then read their replies (one round trip); return the replies.

        redis-py's pipeline would first ask ``SCRIPT EXISTS`` (a second round trip per
        batch) and convert every argument in Python; hiredis packs the commands in C. A
        server that lost its script cache (restarted, ``SCRIPT FLUSH``) answers NOSCRIPT
        before running anything: the script is loaded and the batch sent once more.
        """
        import redis

        pool = self.client.connection_pool
        for attempt in (1, 2):
            conn = pool.get_connection()
            try:
                packed = [_pack_command(c) for c in commands] if _pack_command else conn.pack_commands(commands)
                conn.send_packed_command(packed, check_health=False)
                return [conn.read_response() for _ in commands]
            except redis.exceptions.NoScriptError:
                conn.disconnect()  # the other replies are unread: this connection starts afresh
                if attempt == 2:
                    raise
                self.client.script_load(XADD_MANY)
            except BaseException:
                conn.disconnect()
                raise
            finally:
                pool.release(conn)
        return []

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


def applied_key(prefix: str) -> str:
    """The hash of applied sequence numbers (field ``<writer id>:<stream>``). Named with a dot, not a colon,
    so that a scan of ``<prefix>:*`` (the streams) does not find it."""
    return f"{prefix}.applied"


def open_sink(feed, shard: tuple[int, int], on_error: Callable[[str], None] | None = None) -> Sink:
    """Build the sink named by FEEDOPS_SINK_URL; raise :class:`SinkError` when it is unusable."""
    url = feed.sink_url
    reason = check_sink_url(url)  # the settings model checked it already; a FeedSettings built otherwise too
    if reason:
        raise SinkError(reason)
    if url.startswith("file:"):
        directory = paths.resolve(url[len("file:"):].removeprefix("//"))
        return FileSink(directory, shard, feed.sink_buffer_max, on_error=on_error)
    return RedisSink(url, feed.redis_stream_prefix, feed.redis_stream_maxlen, feed.sink_buffer_max, on_error=on_error)
