"""The dedupe state rebuilt from what the sink already holds, so that a restart or a failover adds nothing twice.

A front replays ticks it already sent (the morning replay, the ``replay`` fault of
ctp-sim) after every login and subscription. Within one process :class:`Deduper
<feedops.worker.dedupe.Deduper>` drops them; a new process (a restart, a failover to the
other profile) starts with no state and would publish them again. Before it subscribes,
the worker reads the last record per instrument back from its sink, as a consumer would,
and seeds the deduper with it (trading day, volume, exchange time):

* file sink: the newest trading day's file of this shard, read backwards from its end
  until every instrument of the book was seen, the file's start, or TAIL_BYTES_MAX;
* Redis sink: every stream ``<prefix>:<EXCHANGE>``, read newest first (``XREVRANGE``)
  until every instrument was seen or the stream ends (streams are bounded by MAXLEN).

The state is per trading day by construction: a seeded instrument's next tick of a
later trading day passes, and one of an older day is ``backwards_day``. An instrument
whose last record lies beyond TAIL_BYTES_MAX of the day file is not seeded (logged:
``worker.dedupe.resumed`` gives the counts).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import orjson

from .. import paths

#: How far back the file sink's day file is read at most (bytes).
TAIL_BYTES_MAX = 512 << 20
_CHUNK = 4 << 20
_REDIS_PAGE = 10_000

#: instrument -> (trading day, volume, exchange time): the deduper's state (Deduper.seed).
State = dict[str, tuple[str, float, float]]


def _entry(record: dict) -> tuple[str, str, float, float] | None:
    try:
        return (record["instrument"], record["trading_day"], float(record["volume"] or 0),
                float(record["exchange_ts"]))
    except (KeyError, TypeError, ValueError):
        return None


def _collect(records: Iterable[dict], wanted: set[str] | None, state: State) -> None:
    """Keep the first record seen per instrument (``records`` run newest first); stop once all are found."""
    for record in records:
        entry = _entry(record) if isinstance(record, dict) else None
        if entry is None or entry[0] in state:
            continue
        state[entry[0]] = entry[1:]
        if wanted is not None and wanted <= state.keys():
            return


def newest_day_file(directory: Path, file_name: str) -> Path | None:
    """The shard's file of the newest trading day (day directories are named YYYYMMDD)."""
    days = sorted(p for p in directory.glob(f"*/{file_name}") if p.parent.name.isdigit())
    return days[-1] if days else None


def lines_backwards(path: Path, limit: int = TAIL_BYTES_MAX) -> Iterator[bytes]:
    """The whole lines of ``path``, last first, reading at most ``limit`` bytes from its end (a torn last
    line, without its newline, is skipped)."""
    with open(path, "rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        pos, carry, first = end, b"", True
        while pos > 0 and end - pos < limit:
            size = min(_CHUNK, pos, limit - (end - pos))
            pos -= size
            fh.seek(pos)
            block = fh.read(size) + carry
            parts = block.split(b"\n")
            carry = parts[0] if pos > 0 else b""
            lines = parts[1:] if pos > 0 else parts
            if first:
                lines = lines[:-1]  # after the last newline: b"" or a torn tail
                first = False
            yield from (line for line in reversed(lines) if line)


def _records(lines: Iterable[bytes]) -> Iterator[dict]:
    for line in lines:
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError:
            continue


def from_file(directory: Path, file_name: str, wanted: set[str] | None, limit: int = TAIL_BYTES_MAX) -> tuple[State, str]:
    path = newest_day_file(directory, file_name)
    state: State = {}
    if path is None:
        return state, "no day file yet"
    _collect(_records(lines_backwards(path, limit)), wanted, state)
    return state, str(path)


def from_redis(client, prefix: str, wanted: set[str] | None) -> tuple[State, str]:
    state: State = {}
    streams = sorted(s.decode() if isinstance(s, bytes) else s for s in client.scan_iter(match=f"{prefix}:*", count=1000))
    for stream in streams:
        last = "+"
        while True:
            page = client.xrevrange(stream, max=last, min="-", count=_REDIS_PAGE)
            if not page:
                break
            ticks = (orjson.loads(fields.get(b"tick", b"null")) for _, fields in page)
            _collect(ticks, wanted, state)
            if (wanted is not None and wanted <= state.keys()) or len(page) < _REDIS_PAGE:
                break
            last = "(" + (page[-1][0].decode() if isinstance(page[-1][0], bytes) else page[-1][0])
        if wanted is not None and wanted <= state.keys():
            break
    return state, f"{len(streams)} stream(s) {prefix}:*"


def from_sink(feed, shard: tuple[int, int], wanted: set[str] | None) -> tuple[State, str]:
    """The last record per instrument in the sink named by FEEDOPS_SINK_URL, and where it was read."""
    url = feed.sink_url
    if url.startswith("file:"):
        directory = paths.resolve(url[len("file:"):].removeprefix("//"))
        return from_file(directory, f"ticks-{shard[0]}of{shard[1]}.jsonl", wanted)
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=2.0)
    try:
        return from_redis(client, feed.redis_stream_prefix, wanted)
    finally:
        client.close()
