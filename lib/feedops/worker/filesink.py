"""The file sink: JSON lines per trading day, ``<dir>/<TradingDay>/ticks-<i>of<N>.jsonl`` (:class:`FileSink`).

One JSON object per line, appended with ``os.write`` after every batch (one file per
shard: several workers never interleave writes); only whole batches stay; a torn tail
left by a crash is cut off and kept aside (:func:`repair_torn_tail`). Layout for
consumers: docs/ops/worker.md.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from ..log import get_logger
from .encode import Rows
from .sinkbase import Sink, SinkError

_log = get_logger("worker")


#: FileSink starts the write-back of its file every this many bytes (see FileSink._write_back).
WRITEBACK_BYTES = 8 << 20
#: ... and drops from the page cache what lies this far behind the end (written back by then).
DROP_LAG_BYTES = 64 << 20
_SYNC_FILE_RANGE_WRITE = 2  # sync_file_range(2): start write-back of the range's dirty pages, do not wait


def _sync_file_range():
    """Linux's sync_file_range(2) through ctypes (Python has no binding), or None where libc has none."""
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    return call


_START_WRITE_BACK = _sync_file_range()


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
    takes_text = True  # a one-day batch's rows as one text are written as they are

    def __init__(self, directory: Path, shard: tuple[int, int], buffer_max: int, **kw: Any):
        super().__init__(f"file:{directory}", buffer_max, **kw)
        self.directory = directory
        self.file_name = f"ticks-{shard[0]}of{shard[1]}.jsonl"
        self._files: dict[str, int] = {}  # trading day -> descriptor
        self._committed: dict[str, int] = {}  # trading day -> end of the last whole batch
        self._written_back: dict[str, int] = {}  # trading day -> offset up to which write-back was started
        self._dropped: dict[str, int] = {}  # trading day -> offset up to which the page cache was told to drop
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
            self._dropped[trading_day] = committed
        return fd

    def _send(self, records: list[Any]) -> list[Any]:
        days = records.days if isinstance(records, Rows) else list(map(self.trading_day_of, records))
        by_day: dict[str, bytes] = {}
        if isinstance(records, Rows) and len(set(days)) == 1:  # the usual batch: its text as it is
            by_day[days[0]] = records.text
        else:
            lines_of: dict[str, list[bytes]] = {}
            for day, line in zip(days, self.encode_all(records)):
                lines = lines_of.get(day)
                if lines is None:
                    lines = lines_of[day] = []
                lines.append(line)
            for day, lines in lines_of.items():
                lines.append(b"")
                by_day[day] = b"\n".join(lines)
        touched: list[str] = []
        ends: dict[str, int] = {}
        try:
            for day, data in by_day.items():
                fd = self._file(day)
                touched.append(day)
                committed = self._committed[day]
                if os.fstat(fd).st_size != committed:  # an earlier roll-back did not complete
                    os.ftruncate(fd, committed)
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
        ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` on the range just written starts its
        write-back without waiting for it; what lies DROP_LAG_BYTES behind the end, written
        back by then, is dropped from the page cache (``POSIX_FADV_DONTNEED``), so the
        cache holds the file's recent tail (where readers tailing it read) and no more.
        ``POSIX_FADV_DONTNEED`` on the range just written, as before, did both at once and
        cost ~10x the system time of the writes themselves (2-2.8 against 0.25-0.3 us per
        1.1 kB line, 3 GB written, measured on this machine kind): the writer's largest cost.
        Without sync_file_range (not Linux) the advice alone starts the write-back.
        """
        end = self._committed[day]
        start = self._written_back.get(day, 0)
        if end - start < WRITEBACK_BYTES:
            return
        try:
            if _START_WRITE_BACK is not None:
                _START_WRITE_BACK(fd, start, end - start, _SYNC_FILE_RANGE_WRITE)
                dropped, upto = self._dropped.get(day, 0), end - DROP_LAG_BYTES
                if upto > dropped:
                    os.posix_fadvise(fd, dropped, upto - dropped, os.POSIX_FADV_DONTNEED)
                    self._dropped[day] = upto
            else:
                os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
        except OSError:  # advice only: a file system that refuses it loses nothing
            pass
        self._written_back[day] = end

    def _close_day(self, day: str) -> None:
        fd = self._files.pop(day)
        committed = self._committed.pop(day)
        self._written_back.pop(day, None)
        self._dropped.pop(day, None)
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

