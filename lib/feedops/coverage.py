"""Coverage of the feed against the trading calendar: pure functions, no I/O.

An instrument is **open** when its product's session is open at ``at`` (see
:mod:`feedops.calendar`); an open instrument is **fresh** when its last tick is at
most ``window_seconds`` old. Coverage is fresh / open (None when nothing is open),
overall, by exchange and by product class.

Used by the worker (``/status`` and the coverage gauges) and by check_feed_health.py
(on the worker's ``/status?instruments=1`` table, with its own ``--at``). Each
(exchange, product) session is looked up once per call and the rest is numpy array
arithmetic (:class:`Columns` codes the string columns once), so 20,000 instruments take
1-5 ms of the interpreter lock the worker's tick pipeline shares (a loop took 20-26 ms).
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .calendar import TradingCalendar, to_beijing

DEFAULT_SAMPLE = 20


@dataclass
class Bucket:
    """Counts for one exchange or product class."""

    instruments: int = 0
    open: int = 0
    fresh: int = 0
    never_ticked: int = 0  # no tick at all, open or not (the worker's never-ticked gauge; not in as_dict)

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


class Columns:
    """The instrument columns coded once for :func:`compute_coded` (the worker builds one per instrument list).

    Codes number the exchanges, product classes and (exchange, product) session keys in
    order of first appearance, so buckets keep the table's order.
    """

    def __init__(self, instrument: Sequence[str], exchange: Sequence[str], product: Sequence[str],
                 product_class: Sequence[str]):
        n = len(instrument)
        lengths = {len(exchange), len(product), len(product_class)}
        if lengths != {n}:
            raise ValueError(f"instrument table columns differ in length ({n} instruments, other columns {sorted(lengths)})")
        self.instrument = list(instrument)
        self.exchanges, self.exchange_code = _codes(exchange)
        self.classes, self.class_code = _codes(product_class)
        keys, self.key_code = _codes(list(zip(exchange, product)))
        self.keys: list[tuple[str, str]] = keys

    def __len__(self) -> int:
        return len(self.instrument)


def _codes(values: Sequence[Any]) -> tuple[list[Any], np.ndarray]:
    index: dict[Any, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), dtype=np.intp, count=len(values))
    return list(index), codes


def last_tick_array(last_tick_unix: Iterable[float | None], n: int) -> np.ndarray:
    """Last tick times as float64; None (and NaN, which no clock gives) mean "never ticked"."""
    return np.fromiter((math.nan if t is None else t for t in last_tick_unix), dtype=np.float64, count=n)


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
    if len(last_tick_unix) != n:
        raise ValueError(f"instrument table columns differ in length ({n} instruments, "
                         f"{len(last_tick_unix)} last-tick times)")
    columns = Columns(instrument, exchange, product, product_class)
    return compute_coded(columns, last_tick_array(last_tick_unix, n), calendar=calendar, at=at,
                         window_seconds=window_seconds, sample_size=sample_size)


def compute_coded(
    columns: Columns,
    last: np.ndarray,
    *,
    calendar: TradingCalendar,
    at: _dt.datetime,
    window_seconds: float,
    sample_size: int = DEFAULT_SAMPLE,
) -> Coverage:
    """Coverage from coded columns and last tick times (float64, NaN = never ticked), vectorised.

    The calendar is asked once per (exchange, product); the rest is array arithmetic
    (20,000 instruments: 1-5 ms, most of it the stale sample when many tie).
    """
    n = len(columns)
    if last.shape != (n,):
        raise ValueError(f"instrument table columns differ in length ({n} instruments, {last.shape} last-tick times)")
    local = to_beijing(at)
    now = at.timestamp()
    cutoff = now - window_seconds
    key_open = np.fromiter((calendar.session_of(calendar.hours(ex, prod), local) is not None for ex, prod in columns.keys),
                           dtype=bool, count=len(columns.keys))
    is_open = key_open[columns.key_code] if n else np.zeros(0, dtype=bool)
    ticked = ~np.isnan(last)
    never = ~ticked
    with np.errstate(invalid="ignore"):
        recent = last >= cutoff  # False for NaN
    fresh = is_open & recent
    open_ticked = is_open & ticked
    stale = open_ticked & ~recent

    def buckets(names: list[str], code: np.ndarray) -> dict[str, Bucket]:
        k = len(names)
        counts = [np.bincount(code[mask], minlength=k).tolist() for mask in (np.ones(n, dtype=bool), is_open, fresh, never)]
        return {name: Bucket(counts[0][i], counts[1][i], counts[2][i], counts[3][i]) for i, name in enumerate(names)}

    names = columns.instrument
    never_index = np.flatnonzero(never)
    stale_index = np.flatnonzero(stale)
    if len(stale_index) > sample_size:
        # the sample_size oldest, ties by name (as sorting (time, name) pairs would order them)
        times = last[stale_index]
        kth = np.partition(times, sample_size - 1)[sample_size - 1] if sample_size > 0 else -math.inf
        stale_index = stale_index[times <= kth]
    stale_sample = [name for _, name in sorted((float(last[i]), names[i]) for i in stale_index)[:max(sample_size, 0)]]

    def extreme(fn: Any, mask: np.ndarray) -> float | None:
        return float(fn(last[mask])) if mask.any() else None

    def age(ts: float | None) -> float | None:
        return None if ts is None else max(0.0, now - ts)

    open_count = int(is_open.sum())
    return Coverage(
        at_unix=now,
        window_seconds=window_seconds,
        calendar_mode=calendar.mode,
        instruments=n,
        open=open_count,
        fresh=int(fresh.sum()),
        by_exchange=buckets(columns.exchanges, columns.exchange_code),
        by_product_class=buckets(columns.classes, columns.class_code),
        never_ticked=Listing(len(never_index), [names[i] for i in never_index[:max(sample_size, 0)]]),
        open_never_ticked=open_count - int(open_ticked.sum()),
        stale=Listing(int(stale.sum()), stale_sample),
        oldest_open_tick_age_seconds=age(extreme(np.min, open_ticked)),
        newest_tick_age_seconds=age(extreme(np.max, ticked)),
        newest_open_tick_age_seconds=age(extreme(np.max, open_ticked)),
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
