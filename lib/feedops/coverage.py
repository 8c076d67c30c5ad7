"""Coverage of the feed against the trading calendar: pure functions, no I/O.

An instrument is **open** when its product's session is open at ``at`` (see
:mod:`feedops.calendar`); an open instrument is **fresh** when its last tick is at
most ``window_seconds`` old. Coverage is fresh / open (None when nothing is open),
overall, by exchange and by product class.

Used by the worker (``/status`` and the coverage gauges) and by check_feed_health.py
(on the worker's ``/status?instruments=1`` table, with its own ``--at``). The hot
loop looks up each (exchange, product) session once per call, so 20,000 instruments
take a few milliseconds.
"""

from __future__ import annotations

import datetime as _dt
import heapq
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from .calendar import TradingCalendar, to_beijing

DEFAULT_SAMPLE = 20


@dataclass
class Bucket:
    """Counts for one exchange or product class."""

    instruments: int = 0
    open: int = 0
    fresh: int = 0

    @property
    def ratio(self) -> float | None:
        return self.fresh / self.open if self.open else None

    def as_dict(self) -> dict[str, Any]:
        return {"instruments": self.instruments, "open": self.open, "fresh": self.fresh, "ratio": self.ratio}


@dataclass
class Listing:
    """A count plus a bounded sample of instrument ids."""

    count: int = 0
    sample: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "sample": list(self.sample)}


@dataclass
class Coverage:
    at_unix: float
    window_seconds: float
    calendar_mode: str
    instruments: int
    open: int
    fresh: int
    by_exchange: dict[str, Bucket]
    by_product_class: dict[str, Bucket]
    never_ticked: Listing  # no tick at all (open or not)
    open_never_ticked: int  # open instruments with no tick at all
    stale: Listing  # open instruments whose last tick is older than the window (oldest first)
    oldest_open_tick_age_seconds: float | None  # among open instruments that ticked
    newest_tick_age_seconds: float | None  # among all instruments that ticked
    newest_open_tick_age_seconds: float | None  # among open instruments that ticked

    @property
    def ratio(self) -> float | None:
        return self.fresh / self.open if self.open else None

    @property
    def market_open(self) -> bool:
        return self.open > 0

    def as_dict(self) -> dict[str, Any]:
        """The shape of the worker's /status ``coverage`` plus the detail lists."""
        return {
            "ratio": self.ratio,
            "window_seconds": self.window_seconds,
            "instruments": self.instruments,
            "open": self.open,
            "fresh": self.fresh,
            "by_exchange": {k: v.as_dict() for k, v in sorted(self.by_exchange.items())},
            "by_product_class": {k: v.as_dict() for k, v in sorted(self.by_product_class.items())},
            "never_ticked": self.never_ticked.as_dict(),
            "open_never_ticked": self.open_never_ticked,
            "stale": self.stale.as_dict(),
            "oldest_open_tick_age_seconds": self.oldest_open_tick_age_seconds,
            "newest_tick_age_seconds": self.newest_tick_age_seconds,
            "newest_open_tick_age_seconds": self.newest_open_tick_age_seconds,
        }


def compute(
    instrument: Sequence[str],
    exchange: Sequence[str],
    product: Sequence[str],
    product_class: Sequence[str],
    last_tick_unix: Sequence[float | None],
    *,
    calendar: TradingCalendar,
    at: _dt.datetime,
    window_seconds: float,
    sample_size: int = DEFAULT_SAMPLE,
) -> Coverage:
    """Coverage from column arrays of equal length (the ``instrument_table`` shape).

    Raises ValueError when the columns differ in length.
    """
    n = len(instrument)
    lengths = {len(exchange), len(product), len(product_class), len(last_tick_unix)}
    if lengths != {n}:
        raise ValueError(f"instrument table columns differ in length ({n} instruments, other columns {sorted(lengths)})")
    local = to_beijing(at)
    now = at.timestamp()
    cutoff = now - window_seconds
    open_by_key: dict[tuple[str, str], bool] = {}
    by_exchange: dict[str, Bucket] = {}
    by_class: dict[str, Bucket] = {}
    never: list[str] = []
    never_count = 0
    open_never = 0
    stale: list[tuple[float, str]] = []
    open_count = fresh_count = 0
    oldest_open: float | None = None  # smallest last-tick time among open instruments
    newest_open: float | None = None
    newest_any: float | None = None

    for i in range(n):
        ex = exchange[i]
        cls = product_class[i]
        ex_bucket = by_exchange.get(ex)
        if ex_bucket is None:
            ex_bucket = by_exchange[ex] = Bucket()
        cls_bucket = by_class.get(cls)
        if cls_bucket is None:
            cls_bucket = by_class[cls] = Bucket()
        ex_bucket.instruments += 1
        cls_bucket.instruments += 1
        last = last_tick_unix[i]
        if last is None:
            never_count += 1
            if len(never) < sample_size:
                never.append(instrument[i])
        elif newest_any is None or last > newest_any:
            newest_any = last
        key = (ex, product[i])
        is_open = open_by_key.get(key)
        if is_open is None:
            is_open = open_by_key[key] = calendar.session_of(calendar.hours(ex, product[i]), local) is not None
        if not is_open:
            continue
        open_count += 1
        ex_bucket.open += 1
        cls_bucket.open += 1
        if last is None:
            open_never += 1
            continue
        if oldest_open is None or last < oldest_open:
            oldest_open = last
        if newest_open is None or last > newest_open:
            newest_open = last
        if last >= cutoff:
            fresh_count += 1
            ex_bucket.fresh += 1
            cls_bucket.fresh += 1
        else:
            stale.append((last, instrument[i]))

    stale_sample = [name for _, name in heapq.nsmallest(sample_size, stale)]

    def age(ts: float | None) -> float | None:
        return None if ts is None else max(0.0, now - ts)

    return Coverage(
        at_unix=now,
        window_seconds=window_seconds,
        calendar_mode=calendar.mode,
        instruments=n,
        open=open_count,
        fresh=fresh_count,
        by_exchange=by_exchange,
        by_product_class=by_class,
        never_ticked=Listing(never_count, never),
        open_never_ticked=open_never,
        stale=Listing(len(stale), stale_sample),
        oldest_open_tick_age_seconds=age(oldest_open),
        newest_tick_age_seconds=age(newest_any),
        newest_open_tick_age_seconds=age(newest_open),
    )


TABLE_COLUMNS = ("instrument", "exchange", "product", "product_class", "last_tick_unix")


def compute_from_table(table: Mapping[str, Sequence[Any]], **kwargs: Any) -> Coverage:
    """Coverage from a ``/status?instruments=1`` ``instrument_table`` (column arrays)."""
    missing = [c for c in TABLE_COLUMNS if c not in table]
    if missing:
        raise ValueError(f"instrument table lacks column(s) {', '.join(missing)}")
    return compute(*(table[c] for c in TABLE_COLUMNS), **kwargs)


def compute_from_rows(rows: Iterable[Sequence[str]], last_tick: Mapping[str, float | None], **kwargs: Any) -> Coverage:
    """Coverage from rows ``(instrument, exchange, product, product_class)`` and a last-tick map."""
    instrument: list[str] = []
    exchange: list[str] = []
    product: list[str] = []
    product_class: list[str] = []
    for row in rows:
        instrument.append(row[0])
        exchange.append(row[1])
        product.append(row[2])
        product_class.append(row[3])
    ticks = [last_tick.get(name) for name in instrument]
    return compute(instrument, exchange, product, product_class, ticks, **kwargs)


def merge_tables(tables: Iterable[Mapping[str, Sequence[Any]]]) -> dict[str, list[Any]]:
    """Concatenate several shards' instrument tables (an instrument seen twice keeps its newest tick)."""
    merged: dict[str, list[Any]] = {c: [] for c in TABLE_COLUMNS}
    position: dict[str, int] = {}
    for table in tables:
        missing = [c for c in TABLE_COLUMNS if c not in table]
        if missing:
            raise ValueError(f"instrument table lacks column(s) {', '.join(missing)}")
        if len({len(table[c]) for c in TABLE_COLUMNS}) != 1:
            raise ValueError("instrument table columns differ in length")
        for i, name in enumerate(table["instrument"]):
            last = table["last_tick_unix"][i]
            seen = position.get(name)
            if seen is not None:
                old = merged["last_tick_unix"][seen]
                if last is not None and (old is None or last > old):
                    merged["last_tick_unix"][seen] = last
                continue
            position[name] = len(merged["instrument"])
            for c in TABLE_COLUMNS:
                merged[c].append(table[c][i])
    return merged
