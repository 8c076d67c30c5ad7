"""Where the reference consumer reads ticks: the Redis streams (consumer group) or the file sink.

Both have the same small interface: :meth:`open` (raises :class:`SourceError` when the
source cannot be used at all), :meth:`read` (a batch of ``(receipt, tick)`` pairs,
waiting at most ``timeout`` seconds; raises a transport error while the source is
down), :meth:`ack` (acknowledge what was counted) and :meth:`stats`. Layouts are in
docs/ops/worker.md ("Sinks (for consumers)").
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson

from ..log import get_logger
from ..worker.sinks import public_target

_log = get_logger("consumer")
DISCOVER_EVERY = 2.0
FILE_READ_MAX = 8 << 20


class SourceError(Exception):
    """The source cannot be used at all (malformed URL, unreachable Redis at start, no such directory)."""


class RedisSource:
    """Every stream ``<prefix>:*`` through the consumer group ``group`` (created when missing).

    ``start="new"`` creates the group at the end of the streams that exist when it is
    first seen (``$``); ``"all"`` at their beginning (``0``). A stream that appears
    later is read from its beginning (everything in it is new). The group's position
    lives in Redis: a consumer started again continues where the group stood, reading
    its own pending (delivered, unacknowledged) entries first.
    """

    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "feedops:md", group: str = "feedops-reference",
                 consumer: str | None = None, start: str = "new", count: int = 2000):
        if start not in ("new", "all"):
            raise SourceError(f"--start must be new or all (got {start!r})")
        parsed = urlparse(url)
        if parsed.scheme != "redis" or not parsed.hostname:
            raise SourceError(f"--source {public_target(url)!r} is not redis://host:port/db")
        self.url = url
        self.target = public_target(url)
        self.prefix = prefix
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.start = start
        self.count = count
        self.streams: dict[str, str] = {}  # stream -> next id to read: "0" (own pending first) or ">"
        self._first_scan = True
        self._next_discovery = 0.0
        self.acknowledged = 0
        #: (stream, entry id) counted, their XACK not confirmed (Redis refused it or its reply was lost): acknowledged
        #: again before the next read, never counted again when the pending list delivers them a second time
        self.unconfirmed: set[tuple[str, bytes]] = set()
        self.client = None

    def open(self) -> None:
        import redis

        try:
            self.client = redis.Redis.from_url(self.url, socket_timeout=5.0, socket_connect_timeout=2.0)
            self.client.ping()
        except (ValueError, redis.exceptions.RedisError) as exc:
            raise SourceError(f"cannot read {self.target} ({exc.__class__.__name__}: {exc}); start Redis or fix --source") from None
        self.discover(force=True)

    def discover(self, force: bool = False) -> None:
        """Find new streams (SCAN, at most every 2 s) and join them with the group."""
        import redis

        now = time.monotonic()
        if not force and now < self._next_discovery:
            return
        self._next_discovery = now + DISCOVER_EVERY
        found = sorted(k.decode() for k in self.client.scan_iter(match=f"{self.prefix}:*", count=1000, _type="STREAM"))
        for stream in found:
            if stream in self.streams:
                continue
            first_id = "$" if self._first_scan and self.start == "new" else "0"
            try:
                self.client.xgroup_create(stream, self.group, id=first_id)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self.streams[stream] = "0"
            _log.info("consumer.stream.joined", f"reading {stream} with group {self.group}", stream=stream, group=self.group)
        self._first_scan = False

    def read(self, timeout: float) -> list[tuple[Any, dict]]:
        import redis

        self.discover()
        if not self.streams:
            time.sleep(min(timeout, 0.2))
            return []
        if self.unconfirmed:
            self.ack(list(self.unconfirmed), retry=True)
        try:
            replies = self.client.xreadgroup(self.group, self.consumer, dict(self.streams), count=self.count,
                                             block=max(1, int(timeout * 1000)))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            # Redis may have delivered entries (to this consumer's pending list) whose reply never came:
            # read the own pending list first again, so that they are counted (once) when it answers
            for stream in self.streams:
                self.streams[stream] = "0"
            raise
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream or the group is gone (Redis restarted without persistence)
                _log.warning("consumer.stream.lost", f"a stream or the group vanished ({exc}); joining again from the "
                             "beginning of each stream", group=self.group)
                self.streams.clear()
                self._first_scan = False
                self.discover(force=True)
                return []
            raise
        batch: list[tuple[Any, dict]] = []
        for stream_name, entries in replies or []:
            stream = stream_name.decode() if isinstance(stream_name, bytes) else stream_name
            if self.streams.get(stream) == "0" and not entries:
                self.streams[stream] = ">"  # own pending entries done
            for entry_id, fields in entries:
                if (stream, entry_id) in self.unconfirmed:
                    continue  # counted already; its acknowledgement is being repeated
                raw = (fields or {}).get(b"tick")
                try:
                    tick = orjson.loads(raw) if raw is not None else {}
                except orjson.JSONDecodeError:
                    tick = {}
                batch.append(((stream, entry_id), tick if isinstance(tick, dict) else {}))
            if self.streams.get(stream) == "0" and entries:
                self.streams[stream] = entries[-1][0].decode()  # continue through the pending list
        for stream, next_id in list(self.streams.items()):
            if next_id not in ("0", ">") and not any(r[0][0] == stream for r in batch):
                self.streams[stream] = ">"
        return batch

    def ack(self, receipts: list[Any], retry: bool = False) -> None:
        """XACK ``receipts``. A ``retry`` repeats an XACK whose reply was lost or refused: every one of them is
        acknowledged once it answers (XACK counts 0 for an entry an earlier, unconfirmed call did acknowledge)."""
        by_stream: dict[str, list[bytes]] = {}
        for stream, entry_id in receipts:
            by_stream.setdefault(stream, []).append(entry_id)
        if not by_stream:
            return
        pipe = self.client.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self.group, *ids)
        try:
            done = sum(pipe.execute())
            self.acknowledged += len(receipts) if retry else done
        except Exception:
            self.unconfirmed.update(receipts)  # acknowledged again before the next read
            raise
        self.unconfirmed.difference_update(receipts)

    def stats(self) -> dict[str, Any]:
        """Pending entries and XINFO GROUPS ``lag`` (entries not yet delivered; None when Redis cannot tell)."""
        pending, lag = 0, 0
        try:
            for stream in self.streams:
                for info in self.client.xinfo_groups(stream):
                    if info.get("name") in (self.group, self.group.encode()):
                        pending += int(info.get("pending") or 0)
                        lag = None if lag is None or info.get("lag") is None else lag + int(info["lag"])
        except Exception:  # stats are best effort; the read loop reports the outage
            return {"acknowledged": self.acknowledged, "pending": None, "group_lag": None, "streams": len(self.streams)}
        return {"acknowledged": self.acknowledged, "pending": pending, "group_lag": lag, "streams": len(self.streams)}

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


class FileSource:
    """Follows every ``<dir>/<trading_day>/ticks-*.jsonl`` (whole lines only).

    Files present at open are read from their end (``start="new"``) or their beginning
    (``"all"``); files that appear later from their beginning. A file that becomes
    shorter than the offset read (the sink truncated a failed batch back) is read on
    from its new end, and the lines that were cut off are remembered: written again,
    they are not handed out a second time.
    """

    kind = "file"

    def __init__(self, directory: Path | str, *, start: str = "new"):
        if start not in ("new", "all"):
            raise SourceError(f"--start must be new or all (got {start!r})")
        self.directory = Path(directory)
        self.target = f"file:{self.directory}"
        self.start = start
        self.offsets: dict[Path, int] = {}
        self.recent: dict[Path, list[tuple[int, bytes]]] = {}  # (end offset, line) of the last lines read
        self.retracted: set[bytes] = set()

    def open(self) -> None:
        if not self.directory.is_dir():
            raise SourceError(f"the file sink directory {self.directory} does not exist; fix --source (file:<dir>)")
        for path in self._files():
            self.offsets[path] = path.stat().st_size if self.start == "new" else 0

    def _files(self) -> list[Path]:
        return sorted(self.directory.glob("*/ticks-*.jsonl"))

    def read(self, timeout: float) -> list[tuple[Any, dict]]:
        batch: list[tuple[Any, dict]] = []
        deadline = time.monotonic() + timeout
        while True:
            for path in self._files():
                batch.extend(self._read_file(path))
            if batch or time.monotonic() >= deadline:
                return batch
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    def _read_file(self, path: Path) -> list[tuple[Any, dict]]:
        offset = self.offsets.setdefault(path, 0)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return []
        if size < offset:
            kept = self.recent.get(path, [])
            self.retracted.update(line for end, line in kept if end > size)
            self.recent[path] = [(end, line) for end, line in kept if end <= size]
            _log.warning("consumer.file.shrunk", f"{path} shrank from {offset} to {size} bytes (a failed batch was cut "
                         "back); reading on from its new end", file=str(path), offset=offset, size=size)
            self.offsets[path] = offset = size
        if size == offset:
            return []
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read(min(size - offset, FILE_READ_MAX))
        whole = data.rfind(b"\n") + 1
        out: list[tuple[Any, dict]] = []
        position = offset
        recent = self.recent.setdefault(path, [])
        for line in data[:whole].split(b"\n")[:-1]:
            position += len(line) + 1
            recent.append((position, line))
            if line in self.retracted:
                self.retracted.discard(line)
                continue
            try:
                tick = orjson.loads(line)
            except orjson.JSONDecodeError:
                tick = {}
            out.append((None, tick if isinstance(tick, dict) else {}))
        del recent[:-20000]
        self.offsets[path] = offset + whole
        return out

    def ack(self, receipts: list[Any]) -> None:
        pass  # a file has nothing to acknowledge

    def stats(self) -> dict[str, Any]:
        return {"acknowledged": None, "pending": None, "group_lag": None, "files": len(self.offsets)}

    def close(self) -> None:
        pass


def open_source(url: str, *, prefix: str = "feedops:md", group: str = "feedops-reference", consumer: str | None = None,
                start: str = "new") -> RedisSource | FileSource:
    """The source a sink URL names (``redis://host:port/db`` or ``file:<dir>``), not yet opened."""
    if url.startswith("file:"):
        from .. import paths

        return FileSource(paths.resolve(url[len("file:"):].removeprefix("//")), start=start)
    if url.startswith("redis://"):
        return RedisSource(url, prefix=prefix, group=group, consumer=consumer, start=start)
    raise SourceError(f"--source {public_target(url)!r} is neither redis://host:port/db nor file:<dir>")
