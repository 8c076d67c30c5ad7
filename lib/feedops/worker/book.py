"""The shard's instruments and the last receive time of each: what coverage reads.

The pipeline thread writes ``last_tick`` per tick; the main thread (coverage once a second)
and the HTTP thread (``/status``) read it through :meth:`InstrumentBook.snapshot`.
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import coverage

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

    def __init__(self) -> None:
        self.instruments: dict[str, Instrument] = {}
        self.exchange_of: dict[str, str] = {}
        self.last_tick: dict[str, float] = {}
        self.lock = threading.Lock()

    def load(self, instruments: list[Instrument]) -> None:
        with self.lock:
            self.instruments = {i.instrument: i for i in instruments}
            self.exchange_of.clear()
            self.exchange_of.update({i.instrument: i.exchange for i in instruments})
            rows = list(self.instruments.values())
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
        (float64, NaN = never ticked) read now: one C-level pass over the last-tick map."""
        with self.lock:
            columns, coded = self._columns, self._coded
        last = np.fromiter(map(self.last_tick.get, coded.instrument, itertools.repeat(math.nan)),
                           dtype=np.float64, count=len(coded))
        return columns, coded, last

    @staticmethod
    def table_of(columns: dict[str, list[str]], last: np.ndarray) -> dict[str, list[Any]]:
        """The /status?instruments=1 ``instrument_table``: the columns plus ``last_tick_unix`` (None = never)."""
        return {**columns, "last_tick_unix": [None if t != t else t for t in last.tolist()]}
