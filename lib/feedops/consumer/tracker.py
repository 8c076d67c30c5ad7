"""What a subscriber counts, tick by tick: gaps, duplicates, out-of-order ticks, lag, outages.

Pure logic, no I/O and no clock: :meth:`TickTracker.observe` takes the time the tick
was seen (``seen_at``, unix seconds) as an argument, so tests pin every instant.

Per instrument, in the order the ticks are read:

* **duplicate**: the same (trading day, exchange time, volume) as one of its last 64 ticks;
* **out of order**: an exchange time older than its newest tick's (not a duplicate);
* **gap**: the exchange-time distance to its previous tick exceeds
  ``max(gap_min_seconds, gap_factor x its usual interval)``, counting only the time its
  trading session is open (:meth:`feedops.calendar.TradingCalendar.open_seconds`: the
  night-to-day break, lunch, weekends and holidays are not gaps). The usual interval
  is the median of its last 16 intervals; no gap is judged before it has two.
  ``missed`` estimates the ticks the gap swallowed: ``round(open distance / usual interval) - 1``.

Outages (a drill's failover, a fault of the matrix) are named phases with two marks:
``start`` (just before the fault) and ``resume`` (just before the new session starts,
once the old one is stopped; without it, ``start`` serves). An instrument counts for
the phase when it was fresh at ``start`` (the consumer saw its last tick within its gap
threshold: a subscriber that lags behind the feed still counts what it is receiving); it is **back** at the first tick it received (``recv_ts``) at or after
``resume``. The phase has **recovered** once ``ceil(coverage_ratio x instruments)`` are
back; ``recovery_seconds`` is from ``start`` to the moment the consumer saw that
instrument's tick. ``ticks_missed`` sums, over the instruments back, the ticks their
usual interval says fit between their last tick before ``resume`` and their first after.
A gap belongs to the outage when it overlaps ``[start - 1 s, the last instrument back + 1 s]``.
"""

from __future__ import annotations

import bisect
import collections
import datetime as _dt
import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

#: Lag histogram bucket upper edges: 1 ms growing by 10 % to ~1,600 s (about 5 % resolution).
LAG_EDGES = tuple(0.001 * 1.1 ** i for i in range(150))
RECENT_KEYS = 64
INTERVALS_KEPT = 16
GAPS_KEPT = 1000
OUTAGE_SLACK_SECONDS = 1.0
_PRODUCT = re.compile(r"[A-Za-z]+")


class LagHistogram:
    """Counts of lag values in :data:`LAG_EDGES` buckets, with the maximum; subtractable (outage windows)."""

    __slots__ = ("counts", "maximum", "last")

    def __init__(self, counts: list[int] | None = None, maximum: float | None = None):
        self.counts = counts if counts is not None else [0] * (len(LAG_EDGES) + 1)
        self.maximum = maximum
        self.last: float | None = None

    def add(self, value: float) -> None:
        self.counts[bisect.bisect_left(LAG_EDGES, value)] += 1
        self.last = value
        if self.maximum is None or value > self.maximum:
            self.maximum = value

    def copy(self) -> "LagHistogram":
        return LagHistogram(list(self.counts), self.maximum)

    def since(self, earlier: "LagHistogram", maximum: float | None) -> "LagHistogram":
        return LagHistogram([a - b for a, b in zip(self.counts, earlier.counts)], maximum)

    def quantile(self, q: float) -> float | None:
        total = sum(self.counts)
        if not total:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                edge = LAG_EDGES[index] if index < len(LAG_EDGES) else self.maximum
                return round(min(edge, self.maximum) if self.maximum is not None else edge, 4)
        return self.maximum

    def summary(self) -> dict[str, float | None]:
        return {"last": _round4(self.last), "p50": self.quantile(0.5), "p99": self.quantile(0.99),
                "max": _round4(self.maximum)}


def _round4(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass(slots=True)
class InstrumentState:
    exchange: str
    product: str
    ticks: int = 0
    last_exchange_ts: float = -math.inf
    last_recv_ts: float = -math.inf
    last_seen_at: float = -math.inf
    update_time: str = ""
    trading_day: str = ""
    last: float | None = None
    volume: float | None = None
    duplicates: int = 0
    out_of_order: int = 0
    gaps: int = 0
    missed: int = 0
    intervals: collections.deque = field(default_factory=lambda: collections.deque(maxlen=INTERVALS_KEPT))
    recent: collections.deque = field(default_factory=lambda: collections.deque(maxlen=RECENT_KEYS))

    def usual_interval(self) -> float | None:
        if len(self.intervals) < 2:
            return None
        return statistics.median(self.intervals)


@dataclass
class Outage:
    """One phase's marks and what the consumer saw around them (see the module docstring)."""

    phase: str
    start: float
    fresh: dict[str, float]  # instrument -> usual interval, fresh at start
    totals_at_start: dict[str, int]
    lag_at_start: LagHistogram
    resume: float | None = None
    last_before_resume: dict[str, float] = field(default_factory=dict)  # instrument -> exchange_ts
    back: dict[str, tuple[float, float]] = field(default_factory=dict)  # instrument -> (seen_at, exchange_ts)
    lag_max: float | None = None

    @property
    def resume_at(self) -> float:
        return self.start if self.resume is None else self.resume


@dataclass
class Gap:
    instrument: str
    exchange: str
    from_exchange_ts: float
    to_exchange_ts: float
    from_recv_ts: float
    open_seconds: float
    missed: int
    seen_at: float

    def as_dict(self, in_outage: str | None) -> dict[str, Any]:
        return {"instrument": self.instrument, "exchange": self.exchange,
                "from_exchange_ts": round(self.from_exchange_ts, 3), "to_exchange_ts": round(self.to_exchange_ts, 3),
                "open_seconds": round(self.open_seconds, 3), "missed": self.missed, "seen_at": round(self.seen_at, 3),
                "in_outage": in_outage}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class TickTracker:
    """Counts per instrument and in total; see the module docstring for every rule.

    ``calendar`` (a :class:`feedops.calendar.TradingCalendar`) takes the closed part of
    the session out of a gap; None counts every second as open (``always-open``).
    """

    TOTAL_KEYS = ("ticks", "duplicates", "out_of_order", "gaps", "gap_missed_ticks", "malformed")

    def __init__(self, calendar=None, *, gap_factor: float = 4.0, gap_min_seconds: float = 2.0,
                 coverage_ratio: float = 0.9):
        if gap_factor <= 1 or gap_min_seconds <= 0 or not 0 < coverage_ratio <= 1:
            raise ValueError("gap_factor must be > 1, gap_min_seconds > 0 and coverage_ratio in (0, 1]")
        self.calendar = calendar
        self.gap_factor = gap_factor
        self.gap_min_seconds = gap_min_seconds
        self.coverage_ratio = coverage_ratio
        self.instruments: dict[str, InstrumentState] = {}
        self.totals = dict.fromkeys(self.TOTAL_KEYS, 0)
        self.by_exchange: dict[str, dict[str, int]] = {}
        self.receive_lag = LagHistogram()
        self.exchange_lag = LagHistogram()
        self.gaps: collections.deque[Gap] = collections.deque(maxlen=GAPS_KEPT)
        self.outages: dict[str, Outage] = {}
        self.last_tick: dict[str, Any] | None = None

    # ------------------------------------------------------------------ ticks
    def threshold(self, state: InstrumentState) -> float | None:
        usual = state.usual_interval()
        return None if usual is None else max(self.gap_min_seconds, self.gap_factor * usual)

    def observe(self, tick: dict[str, Any], seen_at: float) -> str:
        """Count one tick read at ``seen_at``; return ``ok``, ``duplicate``, ``out_of_order``, ``gap`` or ``malformed``."""
        instrument = tick.get("instrument")
        exchange_ts = _number(tick.get("exchange_ts"))
        recv_ts = _number(tick.get("recv_ts"))
        if not isinstance(instrument, str) or not instrument or exchange_ts is None or recv_ts is None:
            self.totals["malformed"] += 1
            return "malformed"
        state = self.instruments.get(instrument)
        exchange = str(tick.get("exchange") or "UNKNOWN")
        if state is None:
            match = _PRODUCT.match(instrument)
            state = self.instruments[instrument] = InstrumentState(exchange, match.group(0) if match else instrument)
        counts = self.by_exchange.get(exchange)
        if counts is None:
            counts = self.by_exchange[exchange] = {"ticks": 0, "duplicates": 0, "out_of_order": 0, "gaps": 0}
        self.totals["ticks"] += 1
        counts["ticks"] += 1
        state.ticks += 1
        self.receive_lag.add(seen_at - recv_ts)
        self.exchange_lag.add(seen_at - exchange_ts)
        for outage in self.outages.values():
            if outage.lag_max is None or seen_at - recv_ts > outage.lag_max:
                outage.lag_max = seen_at - recv_ts
        key = (tick.get("trading_day"), exchange_ts, tick.get("volume"))
        if key in state.recent:
            state.duplicates += 1
            self.totals["duplicates"] += 1
            counts["duplicates"] += 1
            return "duplicate"
        state.recent.append(key)
        if exchange_ts < state.last_exchange_ts:
            state.out_of_order += 1
            self.totals["out_of_order"] += 1
            counts["out_of_order"] += 1
            return "out_of_order"
        verdict = "ok"
        if state.ticks > 1:
            distance = exchange_ts - state.last_exchange_ts
            threshold = self.threshold(state)
            if threshold is not None and distance > threshold:
                open_seconds = self.open_seconds(state, state.last_exchange_ts, exchange_ts)
                if open_seconds > threshold:
                    usual = state.usual_interval() or open_seconds
                    missed = max(0, round(open_seconds / usual) - 1)
                    self.gaps.append(Gap(instrument, exchange, state.last_exchange_ts, exchange_ts, state.last_recv_ts,
                                         open_seconds, missed, seen_at))
                    state.gaps += 1
                    state.missed += missed
                    self.totals["gaps"] += 1
                    self.totals["gap_missed_ticks"] += missed
                    counts["gaps"] += 1
                    verdict = "gap"
            elif distance > 0:
                state.intervals.append(distance)
        for outage in self.outages.values():
            if instrument in outage.fresh and instrument not in outage.back and recv_ts >= outage.resume_at:
                outage.back[instrument] = (seen_at, exchange_ts)
        state.last_exchange_ts, state.last_recv_ts, state.last_seen_at = exchange_ts, recv_ts, seen_at
        state.update_time = str(tick.get("update_time") or "")
        state.trading_day = str(tick.get("trading_day") or "")
        state.last, state.volume = _number(tick.get("last")), _number(tick.get("volume"))
        self.last_tick = {"instrument": instrument, "exchange": exchange, "exchange_ts": exchange_ts, "recv_ts": recv_ts,
                          "seen_at": seen_at}
        return verdict

    def open_seconds(self, state: InstrumentState, start: float, end: float) -> float:
        if self.calendar is None or getattr(self.calendar, "always_open", False):
            return end - start
        utc = _dt.timezone.utc
        return self.calendar.open_seconds(state.exchange, state.product, _dt.datetime.fromtimestamp(start, utc),
                                          _dt.datetime.fromtimestamp(end, utc))

    # ------------------------------------------------------------------ outages
    def mark_outage(self, phase: str, at: float) -> Outage:
        """The outage ``phase`` starts at ``at`` (a second start replaces the first)."""
        fresh = {}
        for name, state in self.instruments.items():
            threshold = self.threshold(state)
            if threshold is not None and at - state.last_seen_at <= threshold:
                fresh[name] = state.usual_interval()
        outage = Outage(phase, at, fresh, dict(self.totals), self.receive_lag.copy())
        self.outages[phase] = outage
        return outage

    def mark_resume(self, phase: str, at: float) -> Outage:
        """The new session of ``phase`` starts at ``at``: ticks received from then on are from it."""
        outage = self.outages.get(phase)
        if outage is None:
            raise KeyError(f"no outage {phase!r} was started; mark its start first")
        outage.resume = at
        outage.last_before_resume = {name: self.instruments[name].last_exchange_ts for name in outage.fresh}
        outage.back = {}  # only ticks of the new session count from here on
        return outage

    def outage_summary(self, outage: Outage) -> dict[str, Any]:
        n = len(outage.fresh)
        needed = math.ceil(self.coverage_ratio * n) if n else 0
        back_times = sorted(seen for seen, _ in outage.back.values())
        recovered = bool(n) and len(back_times) >= needed
        recovery = round(back_times[needed - 1] - outage.start, 3) if recovered else None
        missed = 0
        for name, (_, exchange_ts) in outage.back.items():
            before = outage.last_before_resume.get(name, self.instruments[name].last_exchange_ts)
            usual = outage.fresh[name]
            if usual and math.isfinite(before) and exchange_ts > before:
                missed += max(0, round(self.open_seconds(self.instruments[name], before, exchange_ts) / usual) - 1)
        lag = self.receive_lag.since(outage.lag_at_start, outage.lag_max).summary()
        lag.pop("last")
        return {"start": round(outage.start, 3), "resume": None if outage.resume is None else round(outage.resume, 3),
                "instruments": n, "needed": needed, "back": len(back_times), "recovered": recovered,
                "recovery_seconds": recovery, "ticks_missed": missed,
                "duplicates": self.totals["duplicates"] - outage.totals_at_start["duplicates"],
                "out_of_order": self.totals["out_of_order"] - outage.totals_at_start["out_of_order"],
                "lag_seconds": lag}

    def outage_of(self, gap: Gap) -> str | None:
        """The phase whose window the gap overlaps, or None (a gap outside every outage)."""
        for outage in self.outages.values():
            if not outage.back and outage.resume is None:
                end = math.inf  # still in the outage: nothing came back yet
            else:
                end = max((seen for seen, _ in outage.back.values()), default=math.inf)
            if gap.from_recv_ts <= end + OUTAGE_SLACK_SECONDS and gap.seen_at >= outage.start - OUTAGE_SLACK_SECONDS:
                return outage.phase
        return None

    # ------------------------------------------------------------------ report
    def report(self, *, instruments: bool = True) -> dict[str, Any]:
        gaps = [(gap, self.outage_of(gap)) for gap in self.gaps]
        outside = sum(1 for _, phase in gaps if phase is None)
        out: dict[str, Any] = {
            "coverage_ratio": self.coverage_ratio,
            "gap_rule": {"factor": self.gap_factor, "min_seconds": self.gap_min_seconds},
            "totals": {**self.totals, "instruments": len(self.instruments),
                       "instruments_in_rhythm": sum(1 for s in self.instruments.values() if len(s.intervals) >= 2),
                       "last_tick": self.last_tick,
                       "lag_seconds": {"receive": self.receive_lag.summary(), "exchange": self.exchange_lag.summary()}},
            "by_exchange": {k: dict(v) for k, v in sorted(self.by_exchange.items())},
            "outages": {phase: self.outage_summary(o) for phase, o in self.outages.items()},
            "gaps_outside_outages": outside if len(self.gaps) == self.totals["gaps"] else
            outside + (self.totals["gaps"] - len(self.gaps)),  # gaps no longer kept count as outside (conservative)
            "gaps": [gap.as_dict(phase) for gap, phase in gaps],
        }
        if instruments:
            out["instruments"] = {name: {
                "exchange": s.exchange, "ticks": s.ticks, "last_exchange_ts": s.last_exchange_ts,
                "last_recv_ts": s.last_recv_ts, "last_seen_at": s.last_seen_at, "trading_day": s.trading_day,
                "update_time": s.update_time, "last": s.last, "volume": s.volume,
                "interval_seconds": s.usual_interval(), "duplicates": s.duplicates, "out_of_order": s.out_of_order,
                "gaps": s.gaps, "missed": s.missed} for name, s in sorted(self.instruments.items())}
        return out
