"""Coverage of the worker's instrument book: computed on demand, and once a second into the gauges.

The book (:class:`feedops.worker.book.InstrumentBook`) holds each instrument's last tick
time; :mod:`feedops.coverage` judges which instruments are open and fresh at a time. This
module keeps the last result for ``/status`` and the watchdogs, and sets the per-exchange
and per-product-class gauges from it (``COVERAGE_RATIO``, ``INSTRUMENTS_*`` in :mod:`feedops.metric_names`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .. import clock
from .. import coverage as coverage_mod
from ..calendar import TradingCalendar
from .book import InstrumentBook
from .metrics import WorkerMetrics

#: The gauges are set this often; /status reuses a coverage computed less than this ago.
COVERAGE_REFRESH_SECONDS = 1.0


class BookCoverage:
    """The coverage of one book over the staleness window, and the gauges that show it."""

    def __init__(self, book: InstrumentBook, calendar: TradingCalendar, window_seconds: float, metrics: WorkerMetrics):
        self.book = book
        self.calendar = calendar
        self.window_seconds = window_seconds
        self.metrics = metrics
        self.latest: coverage_mod.Coverage | None = None  # set by refresh (once a second)
        self._computed: tuple[float, coverage_mod.Coverage, dict[str, list[str]], np.ndarray, Any] | None = None
        self._counted: dict[str, tuple[tuple[int, int], dict[str, int]]] = {}

    def any_open(self) -> bool:
        """Any instrument open: from the latest coverage, from the calendar before the first."""
        cov = self.latest
        return bool(cov and cov.open) or (cov is None and self.calendar.any_open(clock.now()))

    def compute(self, max_age: float = 0.0) -> tuple[coverage_mod.Coverage, dict[str, list[str]], np.ndarray]:
        """Coverage, the instrument columns and their last tick times; one computed less than
        ``max_age`` s ago (for the same instrument list) is reused."""
        cached = self._computed
        if cached is not None and time.monotonic() - cached[0] < max_age and cached[4] is self.book.instruments:
            return cached[1], cached[2], cached[3]
        instruments = self.book.instruments
        columns, coded, last = self.book.snapshot()
        cov = coverage_mod.compute_coded(coded, last, calendar=self.calendar, at=clock.now(),
                                         window_seconds=self.window_seconds)
        self._computed = (time.monotonic(), cov, columns, last, instruments)
        return cov, columns, last

    def refresh(self, subscribed: Any, acknowledged: Any) -> None:
        """Recompute coverage and set the per-exchange gauges, with the gateway's subscribed and acknowledged
        instruments counted per exchange."""
        cov, _, _ = self.compute()
        self.latest = cov
        m = self.metrics
        for key, bucket in cov.by_product_class.items():
            exchange, cls = key.split("|", 1)
            m.instruments_open.labels(exchange=exchange, product_class=cls).set(bucket.open)
            m.instruments_fresh.labels(exchange=exchange, product_class=cls).set(bucket.fresh)
        subscribed_of = self._per_exchange("subscribed", subscribed)
        acked_of = self._per_exchange("acknowledged", acknowledged)
        for exchange, bucket in cov.by_exchange.items():
            m.coverage.labels(exchange=exchange).set(1.0 if bucket.ratio is None else bucket.ratio)
            m.instruments_never_ticked.labels(exchange=exchange).set(bucket.never_ticked)
            m.instruments_subscribed.labels(exchange=exchange).set(subscribed_of.get(exchange, 0))
            m.instruments_acknowledged.labels(exchange=exchange).set(acked_of.get(exchange, 0))
        m.coverage.labels(exchange="all").set(1.0 if cov.ratio is None else cov.ratio)

    def _per_exchange(self, key: str, names: Any) -> dict[str, int]:
        """Instruments of ``names`` per exchange, recounted only when the set's size or the book changed
        (20,000 lookups a second would hold the interpreter lock the tick path needs)."""
        stamp = (len(names), id(self.book.instruments))
        cached = self._counted.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        counts: dict[str, int] = {}
        exchange_of = self.book.exchange_of
        for name in list(names):
            ex = exchange_of.get(name, "")
            counts[ex] = counts.get(ex, 0) + 1
        self._counted[key] = (stamp, counts)
        return counts
