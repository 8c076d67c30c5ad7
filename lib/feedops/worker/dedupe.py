"""De-duplication of the normalised ticks, per instrument, on the pipeline thread.

:class:`Deduper` drops duplicates and replays per instrument on (trading day,
exchange time, volume): same key again -> ``duplicate``; older exchange time on the
same trading day -> ``replay``; volume going down -> ``backwards_volume``; an older
trading day -> ``backwards_day``; a trading day older than the session's (from the
login) -> ``stale``. A new process seeds it from the sink's last records
(:meth:`Deduper.seed`, :mod:`feedops.worker.resume`), so a restart or a failover
does not publish a replay again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .ticks import Prepared


class Deduper:
    """Per-instrument replay and duplicate filter; ``check`` returns a drop reason or None."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[str, int, float]] = {}
        self._seeded: set[str] = set()  # instruments whose state came from the sink, not from this session
        self.session_trading_day: str | None = None

    def reset(self) -> None:
        self._last.clear()
        self._seeded.clear()

    def seed(self, state: dict[str, tuple[str, float, float]]) -> int:
        """Start from what the sink already holds (:mod:`feedops.worker.resume`): instrument -> (trading day,
        volume, exchange time) of its last published tick. A later state already held wins. Returns the count.

        A seeded state is a watermark of exchange time only, until the instrument's first tick passes: a tick
        older than it is ``replay``, the same time with no more volume ``duplicate``, anything later passes
        (another front, after a failover, may count volume differently from the one that wrote the sink)."""
        for instrument, last in state.items():
            held = self._last.get(instrument)
            if held is None or last[0] > held[0] or (last[0] == held[0] and last[2] > held[2]):
                self._last[instrument] = last
                self._seeded.add(instrument)
        return len(state)

    def check(self, record: dict[str, Any]) -> str | None:
        return self.check_fields(record["instrument"], record["trading_day"], record["volume"] or 0, record["exchange_ts"])

    def check_batch(self, prepared: Prepared) -> tuple[np.ndarray | None, dict[str, int]]:
        """Decide a normalised batch in order: (mask of the ticks kept, or None when all are; drops by reason)."""
        check = self.check_fields
        dropped: dict[str, int] = {}
        keep = None
        records = prepared.records
        for i, (instrument, day, volume, ts) in enumerate(zip(prepared.instruments, prepared.trading_days,
                                                                records["volume"].tolist(),
                                                                records["exchange_ts"].tolist())):
            reason = check(instrument, day, volume, ts)
            if reason is not None:
                if keep is None:
                    keep = np.ones(len(records), dtype=bool)
                keep[i] = False
                dropped[reason] = dropped.get(reason, 0) + 1
        return keep, dropped

    def check_fields(self, instrument: str, trading_day: str, volume: float, ts: float) -> str | None:
        if self.session_trading_day is not None and trading_day < self.session_trading_day:
            return "stale"
        last = self._last.get(instrument)
        if last is not None:
            last_day, last_volume, last_ts = last
            if trading_day < last_day:
                return "backwards_day"
            if trading_day == last_day and self._seeded and instrument in self._seeded:
                if ts < last_ts:
                    return "replay"
                if ts == last_ts and volume <= last_volume:
                    return "duplicate"
                self._seeded.discard(instrument)
            elif trading_day == last_day:
                if volume < last_volume:
                    return "backwards_volume"
                if ts == last_ts and volume == last_volume:
                    return "duplicate"
                if ts < last_ts:
                    return "replay"
            elif self._seeded:  # a later trading day: live state from now on
                self._seeded.discard(instrument)
        self._last[instrument] = (trading_day, volume, ts)
        return None
