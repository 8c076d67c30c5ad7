"""De-duplication of the normalised ticks, per instrument, on the pipeline thread, a batch at a time.

:class:`Deduper` drops duplicates and replays per instrument on (trading day,
exchange time, volume): same key again -> ``duplicate``; older exchange time on the
same trading day -> ``replay``; volume going down -> ``backwards_volume``; an older
trading day -> ``backwards_day``; a trading day older than the session's (from the
login) -> ``stale``. A new process seeds it from the sink's last records
(:meth:`Deduper.seed`, :mod:`feedops.worker.resume`), so a restart or a failover
does not publish a replay again.

One engine (:meth:`Deduper.decide`): the state is numpy arrays indexed by a dense id per
instrument (:class:`InstrumentIds`), and the compiled module (``_jsonlines.dedupe``) decides
a batch tick after tick, so the ticks of one instrument are decided in their order, each
against the state its predecessors left, and moves the state in place.
:meth:`Deduper.check_fields` and :meth:`Deduper.check` are batches of one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .compiled import _jsonlines
from .layout import ENCODING
from .ticks import Prepared, day_code

#: Drop reasons, by their code in :meth:`Deduper.decide` (0: kept).
REASONS = ("", "stale", "backwards_day", "replay", "duplicate", "backwards_volume")
#: The codes the compiled rules return, in the order it takes them.
_CODES = tuple(REASONS.index(name) for name in ("stale", "backwards_day", "replay", "duplicate", "backwards_volume"))
_NO_DAY = -(1 << 63)  # below every day code: nothing is stale


class InstrumentIds:
    """A dense id (0, 1, 2 ... in the order met) for every instrument id the pipeline meets, by its bytes as in
    the record (the compiled ``IdTable``: no Python object per tick; each call is atomic for the other threads,
    the pipeline's and the instrument list's load both add ids)."""

    def __init__(self) -> None:
        self._table = _jsonlines.IdTable()

    def __len__(self) -> int:
        return len(self._table)

    def of(self, column: np.ndarray) -> np.ndarray:
        """The ids of a column of instrument ids (the record's ``S81``, or any ``S`` column)."""
        column = np.ascontiguousarray(column)
        size = column.dtype.itemsize
        return np.frombuffer(self._table.ids(column, size, 0, size), dtype=np.int64)

    def of_field(self, records: np.ndarray, name: str) -> np.ndarray:
        """The ids of field ``name`` (an ``S`` field) of every record, read in place."""
        records = np.ascontiguousarray(records)
        dtype, offset = records.dtype.fields[name][:2]
        return np.frombuffer(self._table.ids(records, records.dtype.itemsize, offset, dtype.itemsize), dtype=np.int64)

    def of_name(self, name: str) -> int:
        return self._table.add(name.encode(ENCODING, errors="replace"))

    def id_of_name(self, name: str) -> int | None:
        """The id of an instrument met already, or None (adds nothing)."""
        return self._table.get(name.encode(ENCODING, errors="replace"))


class Deduper:
    """Per-instrument replay and duplicate filter (see the module docstring)."""

    def __init__(self, ids: InstrumentIds | None = None) -> None:
        self.ids = ids if ids is not None else InstrumentIds()
        self.session_trading_day: str | None = None
        self.reset()

    def reset(self) -> None:
        self._has = np.zeros(0, dtype=bool)  # a last tick (or a seed) is known
        self._day = np.zeros(0, dtype=np.int64)  # its trading day, YYYYMMDD as an int
        self._volume = np.zeros(0, dtype=np.float64)
        self._ts = np.zeros(0, dtype=np.float64)
        self._seeded = np.zeros(0, dtype=bool)  # the state came from the sink, not from this session

    def _grow(self, size: int) -> None:
        if size > len(self._has):
            size = max(size, 2 * len(self._has), 1024)
            for name in ("_has", "_day", "_volume", "_ts", "_seeded"):
                old = getattr(self, name)
                new = np.zeros(size, dtype=old.dtype)
                new[:len(old)] = old
                setattr(self, name, new)

    def seed(self, state: dict[str, tuple[str, float, float]]) -> int:
        """Start from what the sink already holds (:mod:`feedops.worker.resume`): instrument -> (trading day,
        volume, exchange time) of its last published tick. A later state already held wins. Returns the count.

        A seeded state is a watermark of exchange time only, until the instrument's first tick passes: a tick
        older than it is ``replay``, the same time with no more volume ``duplicate``, anything later passes
        (another front, after a failover, may count volume differently from the one that wrote the sink)."""
        for instrument, (day, volume, ts) in state.items():
            i = self.ids.of_name(instrument)
            self._grow(i + 1)
            code = day_code(day)
            if not self._has[i] or code > self._day[i] or (code == self._day[i] and ts > self._ts[i]):
                self._has[i], self._day[i], self._volume[i], self._ts[i] = True, code, volume, ts
                self._seeded[i] = True
        return len(state)

    def check(self, record: dict[str, Any]) -> str | None:
        return self.check_fields(record["instrument"], record["trading_day"], record["volume"] or 0, record["exchange_ts"])

    def check_fields(self, instrument: str, trading_day: str, volume: float, ts: float) -> str | None:
        """The decision on one tick (a batch of one)."""
        reasons = self.decide(np.array([self.ids.of_name(instrument)]), np.array([day_code(trading_day)]),
                              np.array([volume], dtype=np.float64), np.array([ts], dtype=np.float64))
        return REASONS[reasons[0]] or None

    def check_batch(self, prepared: Prepared) -> tuple[np.ndarray | None, dict[str, int], np.ndarray]:
        """Decide a normalised batch in order: (mask of the ticks kept, or None when all are; drops by reason;
        the instrument id of every tick)."""
        records = prepared.records
        ids = self.ids.of_field(records, "instrument")
        reasons = self.decide(ids, prepared.days, records["volume"].astype(np.float64), records["exchange_ts"])
        if not reasons.any():
            return None, {}, ids
        counts = np.bincount(reasons, minlength=len(REASONS)).tolist()
        return reasons == 0, {REASONS[code]: n for code, n in enumerate(counts) if code and n}, ids

    def decide(self, ids: np.ndarray, days: np.ndarray, volumes: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """The reason code (:data:`REASONS`, 0: kept) of every tick, in order; the state moves to the kept ones.

        The compiled ``_jsonlines.dedupe`` applies the rules tick after tick, each against the state its
        instrument's earlier ticks left, and moves the state in place."""
        if not len(ids):
            return np.zeros(0, dtype=np.int64)
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        self._grow(int(ids.max()) + 1)
        stale_below = day_code(self.session_trading_day) if self.session_trading_day is not None else _NO_DAY
        raw = _jsonlines.dedupe(ids, np.ascontiguousarray(days, dtype=np.int64),
                                np.ascontiguousarray(volumes, dtype=np.float64), np.ascontiguousarray(ts, dtype=np.float64),
                                stale_below, self._has, self._day, self._volume, self._ts, self._seeded, _CODES)
        return np.frombuffer(raw, dtype=np.int64)
