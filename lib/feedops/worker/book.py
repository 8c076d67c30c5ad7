"""The shard's instruments and the last receive time of each: what coverage reads.

The last receive times are a numpy array indexed by the instrument's dense id
(:class:`feedops.worker.dedupe.InstrumentIds`, shared with the deduper): the pipeline thread
writes a batch of them with one assignment (:meth:`InstrumentBook.record`); the main thread
(coverage once a second) and the HTTP thread (``/status``) read them through
:meth:`InstrumentBook.snapshot`, one numpy take of the listed instruments' ids.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import coverage
from .dedupe import InstrumentIds

#: CTP's ProductClass codes the worker keeps.
PRODUCT_CLASSES = {"1": "futures", "2": "options"}


@dataclass(frozen=True)
class Instrument:
    instrument: str
    exchange: str
    product: str
    product_class: str  # futures | options


class InstrumentBook:
    """The shard's instruments and the last receive time of each (what coverage needs)."""

    def __init__(self, ids: InstrumentIds | None = None) -> None:
        self.instruments: dict[str, Instrument] = {}
        self.exchange_of: dict[str, str] = {}
        self.ids = ids if ids is not None else InstrumentIds()
        self._last = np.full(1024, np.nan)  # instrument id -> last receive time (NaN: never); the pipeline's
        self._row_ids = np.zeros(0, dtype=np.int64)  # id of each listed instrument, in the columns' order
        self.lock = threading.Lock()

    def record(self, ids: np.ndarray, received: np.ndarray) -> None:
        """The pipeline thread's write: instrument ``ids[i]`` ticked at ``received[i]`` (later ticks win)."""
        last = self._last
        needed = int(ids.max()) + 1 if len(ids) else 0
        if needed > len(last):  # the array grows here only: no write is lost
            grown = np.full(max(2 * len(last), needed), np.nan)
            grown[:len(last)] = last
            self._last = last = grown
        last[ids] = received

    def last_tick_of(self, instrument: str) -> float | None:
        """The last receive time of one instrument (None: never ticked)."""
        i = self.ids.id_of_name(instrument)
        last = self._last
        return None if i is None or i >= len(last) or last[i] != last[i] else float(last[i])

    def load(self, instruments: list[Instrument]) -> None:
        with self.lock:
            self.instruments = {i.instrument: i for i in instruments}
            self.exchange_of.clear()
            self.exchange_of.update({i.instrument: i.exchange for i in instruments})
            rows = list(self.instruments.values())
            self._row_ids = np.array([self.ids.of_name(r.instrument) for r in rows], dtype=np.int64)
            self._columns = {
                "instrument": [r.instrument for r in rows],
                "exchange": [r.exchange for r in rows],
                "product": [r.product for r in rows],
                "product_class": [r.product_class for r in rows],
            }
            # coverage's product-class buckets are per exchange: "exchange|product_class"
            self._coded = coverage.Columns(self._columns["instrument"], self._columns["exchange"],
                                           self._columns["product"], [f"{i.exchange}|{i.product_class}" for i in rows])

    _columns: dict[str, list[str]] = {"instrument": [], "exchange": [], "product": [], "product_class": []}
    _coded = coverage.Columns([], [], [], [])

    def snapshot(self) -> tuple[dict[str, list[str]], coverage.Columns, np.ndarray]:
        """The instrument columns (read-only), the same coded for coverage, and the last tick times
        (float64, NaN = never ticked) read now: one numpy take by the instruments' ids."""
        with self.lock:
            columns, coded, ids = self._columns, self._coded, self._row_ids
        times = self._last
        last = np.full(len(ids), np.nan)
        known = ids < len(times)  # an id the pipeline has not met yet has no time
        last[known] = times[ids[known]]
        return columns, coded, last

    @staticmethod
    def table_of(columns: dict[str, list[str]], last: np.ndarray) -> dict[str, list[Any]]:
        """The /status?instruments=1 ``instrument_table``: the columns plus ``last_tick_unix`` (None = never)."""
        return {**columns, "last_tick_unix": [None if t != t else t for t in last.tolist()]}
