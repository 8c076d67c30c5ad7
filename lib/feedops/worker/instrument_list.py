"""The shard's instrument list of the trading day: cached per trading day, else queried on the trader front.

The list comes from ``FEEDOPS_CACHE_DIR/instruments-<channel>-<profile>-<TradingDay>.json``
when that cache is trusted, else from the trader front (:class:`feedops.worker.trader_front.TraderFront`),
and is then cached. Cache and answer are checked before they are trusted (count, checksum and
the comparison with the previous day: :mod:`feedops.worker.instruments`). The shard keeps the
futures and options whose id hashes to it (:func:`shard_of`).
"""

from __future__ import annotations

import collections
import time
import zlib
from pathlib import Path
from typing import Callable

from .. import clock
from ..log import get_logger
from .book import PRODUCT_CLASSES, Instrument
from .instruments import CacheError, ListCheck, expectation, judge, read_cache, write_cache
from .trader_front import TraderFront

_log = get_logger("worker")


def shard_of(instrument_id: str, count: int) -> int:
    """Deterministic shard of an instrument (CRC-32 of its id modulo the shard count)."""
    return zlib.crc32(instrument_id.encode()) % count


def cache_path(front: TraderFront, trading_day: str) -> Path:
    return Path(front.feed.path("cache_dir")) / f"instruments-{front.api.channel}-{front.profile_name}-{trading_day}.json"


def load(front: TraderFront, calendar, shard: tuple[int, int], stop: Callable[[], bool]) -> tuple[list[Instrument], ListCheck]:
    """The shard's instruments and how their list was obtained and judged: from today's cache, else the trader
    front (then cached); checked against the expectation before it is trusted."""
    day = calendar.trading_day(clock.now()).strftime("%Y%m%d")
    path = cache_path(front, day)
    prefix = path.name[: -len(f"{day}.json")]
    expected = expectation(path.parent, prefix, day)
    rows, check = None, None
    if path.exists():
        try:
            rows, flagged = read_cache(path)
            reason = flagged or judge(rows, expected)
            if reason is None:
                check = ListCheck("cache", len(rows))
                _log.info("worker.instruments.cached", f"instrument list for {day} read from the cache ({len(rows)} "
                          "rows, count and checksum verified)", path=str(path), trading_day=day, listed=len(rows))
            else:
                _log.warning("worker.instruments.suspicious", f"the cached instrument list {path} is suspicious "
                             f"({reason}); querying the front again", path=str(path), listed=len(rows), reason=reason)
                rows = None
        except CacheError as exc:
            _log.warning("worker.instruments.cache_bad", f"not trusting the instrument cache {path}: {exc}; "
                         "querying the front again", path=str(path), reason=str(exc))
            rows = None
    if rows is None:
        rows, check = _query_checked(front, expected, stop, requeried=path.exists())
        try:
            write_cache(path, day, rows, check.suspicious)
        except OSError as exc:
            _log.warning("worker.instruments.cache_unwritable", f"cannot write the instrument cache {path} ({exc.strerror})")
    if expected is not None:
        check.expected, check.expected_day = sum(expected[1].values()), expected[0]
    index, count = shard
    selected = [Instrument(r[0], r[1], r[2], PRODUCT_CLASSES[r[3]]) for r in rows
                if r[3] in PRODUCT_CLASSES and shard_of(r[0], count) == index]
    for (exchange, cls), n in collections.Counter((i.exchange, i.product_class) for i in selected).items():
        front.metrics.instruments_known.labels(exchange=exchange, product_class=cls).set(n)
    _log.info("worker.instruments.ready", f"{len(selected)} instruments in shard {index}/{count} "
              f"(of {len(rows)} listed)", instruments=len(selected), listed=len(rows), shard=f"{index}/{count}")
    return selected, check


def _query_checked(front: TraderFront, expected, stop: Callable[[], bool], requeried: bool) -> tuple[list[tuple], ListCheck]:
    """Query the list; a suspicious answer is queried once more, then used but flagged (ERROR)."""
    for attempt in (1, 2):
        started = time.monotonic()
        rows = front.query(stop)
        front.metrics.query_duration.set(time.monotonic() - started)
        reason = judge(rows, expected)
        if reason is None:
            return rows, ListCheck("query", len(rows), requeried=requeried or attempt > 1)
        if attempt == 1:
            _log.warning("worker.instruments.suspicious", f"the front's instrument list is suspicious ({reason}); "
                         "querying once more", listed=len(rows), reason=reason)
    _log.error("worker.instruments.suspicious", f"the front's instrument list stays suspicious ({reason}); using it, "
               "flagged in /status (instruments.list) and judged by the health check", listed=len(rows), reason=reason)
    return rows, ListCheck("query", len(rows), suspicious=reason, requeried=True)
