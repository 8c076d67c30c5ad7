"""The sim's market state: per-instrument prices and volumes as numpy arrays, the dates each
exchange stamps on a tick, which products trade now, tick generation, and the history kept
for the replay fault.

Dates follow the real exchanges (docs/ops/ctp-reference.md): SHFE/INE/CFFEX/GFEX send the trading
day and the calendar date; DCE sends the trading day as ActionDay too; CZCE sends
the calendar date as TradingDay. These differ only while the trading day is not the
calendar date (night sessions, weekends); the ``date_quirks`` fault makes the sim
date its ticks as in a night session (trading day = the next trading day) so the
quirks show at any hour.

No I/O and no sessions here: :mod:`feedops.sim.server` asks for the ticks of a slice and sends them.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from ..calendar import TradingCalendar
from . import protocol as P
from .config import SimConfig
from .universe import Instrument

INACTIVE_EVERY = 60  # an inactive (illiquid) instrument ticks once per this many rounds (30 s at 500 ms)
TICK_DTYPE = P.TICK_DTYPE
NO_VALUE = float(np.finfo(np.float64).max)  # CTP's "no value" marker (a level the exchange does not send)


def _share(index: int, salt: int) -> float:
    """A deterministic pseudo-random number in [0, 1) per instrument."""
    return ((index * 2654435761 + salt * 40503) % 1_000_003) / 1_000_003


class Market:
    """Per-instrument state as numpy arrays: a slice's ticks are generated in a few vector operations."""

    def __init__(self, universe: list[Instrument], config: SimConfig, calendar: TradingCalendar) -> None:
        self.universe = universe
        self.calendar = calendar
        self.index = {inst.instrument_id: i for i, inst in enumerate(universe)}
        n = len(universe)
        self.rng = np.random.default_rng(config.seed)
        self.exchanges = sorted({inst.exchange for inst in universe})
        exchange_no = {exchange: n for n, exchange in enumerate(self.exchanges)}
        self.exchange_of = np.array([exchange_no[inst.exchange] for inst in universe], dtype=np.intp)
        self.product_keys = sorted({(inst.exchange, inst.underlying_product) for inst in universe})
        product_no = {key: n for n, key in enumerate(self.product_keys)}
        self.product_of = np.array([product_no[(inst.exchange, inst.underlying_product)] for inst in universe],
                                   dtype=np.intp)
        self.product_open = np.zeros(len(self.product_keys), dtype=bool)  # set by the first clock refresh
        self.tick_size = np.array([inst.price_tick for inst in universe], dtype=float)
        self.deep = np.array([inst.exchange in ("SHFE", "INE") for inst in universe], dtype=bool)
        settle = np.array([inst.pre_settlement for inst in universe], dtype=float)
        tick = self.tick_size
        self.upper = np.round(settle * 1.08 / tick) * tick
        self.lower = np.maximum(tick, np.round(settle * 0.92 / tick) * tick)
        self.last = settle.copy()
        self.open_price = settle.copy()
        self.high = settle.copy()
        self.low = settle.copy()
        self.volume = np.zeros(n, dtype=np.int64)
        self.turnover = np.zeros(n, dtype=float)
        self.open_interest = np.array([float(1000 + (i * 37) % 5000) for i in range(n)])
        self.active = np.array([_share(i, 1) < config.active_share for i in range(n)], dtype=bool)
        self.dead = np.array([_share(i, 2) < config.dead_share for i in range(n)], dtype=bool)
        self.subscribers = np.zeros(n, dtype=np.int32)  # sessions subscribed per instrument
        keep = config.replay_depth
        self.history = np.zeros((n, keep), dtype=TICK_DTYPE)  # ring of the last ticks sent, for the replay fault
        self.history_next = np.zeros(n, dtype=np.intp)
        self.history_len = np.zeros(n, dtype=np.intp)
        self._slice_cache: dict[tuple[int, int], np.ndarray] = {}
        self._instrument_rows: list[dict[str, Any]] | None = None  # built on the first query

    # ------------------------------------------------------------------ instruments
    def static_values(self, index: int) -> list[Any]:
        """The per-instrument part of the depth struct, in :data:`protocol.STATIC_FIELDS` order."""
        inst = self.universe[index]
        return [index, inst.instrument_id, inst.exchange, inst.instrument_id, inst.pre_settlement,
                inst.pre_settlement, float(self.open_interest[index]), float(self.upper[index]),
                float(self.lower[index])]

    def instrument_fields(self, inst: Instrument) -> dict[str, Any]:
        expire = _dt.date(inst.delivery_year, inst.delivery_month, 15).strftime("%Y%m%d")
        return {"InstrumentID": inst.instrument_id, "ExchangeID": inst.exchange, "InstrumentName": inst.instrument_id,
                "ExchangeInstID": inst.instrument_id, "ProductID": inst.product, "ProductClass": inst.product_class,
                "DeliveryYear": inst.delivery_year, "DeliveryMonth": inst.delivery_month,
                "MaxMarketOrderVolume": 30, "MinMarketOrderVolume": 1, "MaxLimitOrderVolume": 500,
                "MinLimitOrderVolume": 1, "VolumeMultiple": 10, "PriceTick": inst.price_tick,
                "CreateDate": "20250101", "OpenDate": "20250101", "ExpireDate": expire, "StartDelivDate": expire,
                "EndDelivDate": expire, "InstLifePhase": "1", "IsTrading": 1, "PositionType": "2",
                "PositionDateType": "2", "LongMarginRatio": 0.1, "ShortMarginRatio": 0.1,
                "MaxMarginSideAlgorithm": "1", "UnderlyingInstrID": inst.underlying, "StrikePrice": inst.strike,
                "OptionsType": inst.option_type, "UnderlyingMultiple": 1.0 if inst.is_option else 0.0,
                "CombinationType": "0"}

    def instrument_rows(self) -> list[dict[str, Any]]:
        """Every instrument as a CThostFtdcInstrumentField dict, built on the first call."""
        if self._instrument_rows is None:
            self._instrument_rows = [self.instrument_fields(inst) for inst in self.universe]
        return self._instrument_rows

    # ------------------------------------------------------------------ dates and trading phases
    def trading_day(self, now: _dt.datetime, date_quirks: bool) -> _dt.date:
        if date_quirks:
            return self.calendar.next_trading_day(now.date())
        return self.calendar.trading_day(now)

    def set_clock(self, now: _dt.datetime, date_quirks: bool) -> list[int]:
        """Dates per exchange (with the exchanges' quirks) and which products are open at ``now``.

        Returns the products (indexes into :attr:`product_keys`) whose trading phase changed.
        """
        trading_day = self.trading_day(now, date_quirks).strftime("%Y%m%d").encode()
        calendar_day = now.strftime("%Y%m%d").encode()
        dates = []
        for exchange in self.exchanges:
            if exchange == "DCE":
                dates.append((trading_day, trading_day))
            elif exchange == "CZCE":
                dates.append((calendar_day, calendar_day))
            else:
                dates.append((trading_day, calendar_day))
        self.dates = dates
        self._trading_days = np.array([d[0] for d in dates], dtype="S8")
        self._action_days = np.array([d[1] for d in dates], dtype="S8")
        self.update_time = now.strftime("%H:%M:%S").encode()
        if self.calendar.always_open:
            product_open = np.ones(len(self.product_keys), dtype=bool)
        else:
            product_open = np.array([self.calendar.is_open(ex, product, now) for ex, product in self.product_keys],
                                    dtype=bool)
        changed: list[int] = np.flatnonzero(self.product_open != product_open).tolist()
        self.product_open = product_open
        return changed

    def status_items(self, products: list[int], stamp: str) -> list[list[Any]]:
        """OnRtnInstrumentStatus per product: '2' continuous trading while open, '6' closed."""
        return [["OnRtnInstrumentStatus", "CThostFtdcInstrumentStatusField",
                 {"ExchangeID": self.product_keys[n][0], "InstrumentID": self.product_keys[n][1],
                  "InstrumentStatus": "2" if self.product_open[n] else "6", "EnterTime": stamp, "EnterReason": "1",
                  "TradingSegmentSN": 1}, None, "", 0, True] for n in products]

    # ------------------------------------------------------------------ ticks
    def due(self, bucket: int, n_slices: int, round_no: int, skip_dead: bool) -> np.ndarray:
        """The instruments that tick in slice ``bucket`` of round ``round_no``: subscribed, open, alive, active."""
        candidates = self._candidates(bucket, n_slices)
        wanted = (self.subscribers[candidates] > 0) & self.product_open[self.product_of[candidates]]
        if skip_dead:
            wanted &= ~self.dead[candidates]
        wanted &= self.active[candidates] | ((round_no + candidates) % INACTIVE_EVERY == 0)
        return candidates[wanted]

    def _candidates(self, bucket: int, n_slices: int) -> np.ndarray:
        """Instruments of one slice (every n_slices-th from ``bucket``), cached per slicing."""
        key = (n_slices, bucket)
        found = self._slice_cache.get(key)
        if found is None:
            if len(self._slice_cache) > 4096:
                self._slice_cache.clear()
            found = self._slice_cache[key] = np.arange(bucket, len(self.universe), n_slices, dtype=np.intp)
        return found

    def make_ticks(self, due: np.ndarray, update_time: bytes, millisec: int) -> np.ndarray:
        """One tick per instrument in ``due`` (a random walk of one price tick), as TICK_DTYPE records."""
        r = self.rng.random(len(due))
        tick = self.tick_size[due]
        price = self.last[due]
        price = np.where(r < 0.3, np.maximum(self.lower[due], price - tick),
                         np.where(r > 0.7, np.minimum(self.upper[due], price + tick), price))
        self.last[due] = price
        traded = 1 + (r * 20).astype(np.int64)
        vol = self.volume[due] + traded
        self.volume[due] = vol
        turn = self.turnover[due] + traded * price * 10
        self.turnover[due] = turn
        oi = self.open_interest[due] + np.where(r < 0.5, traded, -1)
        self.open_interest[due] = oi
        high = np.maximum(self.high[due], price)
        self.high[due] = high
        low = np.minimum(self.low[due], price)
        self.low[due] = low
        exchange = self.exchange_of[due]
        out = np.empty(len(due), dtype=TICK_DTYPE)
        out["index"] = due
        out["trading_day"] = self._trading_days[exchange]
        out["action_day"] = self._action_days[exchange]
        out["update_time"] = update_time
        out["millisec"] = millisec
        out["last"] = price
        out["volume"] = vol
        out["turnover"] = turn
        out["open_interest"] = oi
        out["open"] = self.open_price[due]
        out["high"] = high
        out["low"] = low
        out["bid"] = price - tick
        out["bid_volume"] = 1 + (r * 50).astype(np.int32)
        out["ask"] = price + tick
        out["ask_volume"] = 1 + ((1 - r) * 50).astype(np.int32)
        out["average"] = turn / vol / 10
        deep = self.deep[due]  # SHFE and INE send five levels, the others level 1 only
        for level in range(2, 6):
            spread = level * tick
            out[f"bid{level}"] = np.where(deep, price - spread, NO_VALUE)
            out[f"ask{level}"] = np.where(deep, price + spread, NO_VALUE)
            out[f"bid_volume{level}"] = np.where(deep, 1 + ((r * 97 * level) % 60).astype(np.int32), 0)
            out[f"ask_volume{level}"] = np.where(deep, 1 + (((1 - r) * 89 * level) % 60).astype(np.int32), 0)
        slot = self.history_next[due]
        self.history[due, slot] = out
        self.history_next[due] = (slot + 1) % self.history.shape[1]
        self.history_len[due] = np.minimum(self.history_len[due] + 1, self.history.shape[1])
        return out

    def replay_records(self, indexes: set[int]) -> tuple[list[bytes], list[int]]:
        """The kept history of ``indexes``, oldest first per instrument, and the count per exchange."""
        records: list[bytes] = []
        counts = [0] * len(self.exchanges)
        depth = self.history.shape[1]
        for index in sorted(indexes):
            kept = int(self.history_len[index])
            if kept:
                first = int(self.history_next[index]) - kept
                records.extend(self.history[index, (first + k) % depth].tobytes() for k in range(kept))
                counts[int(self.exchange_of[index])] += kept
        return records, counts
