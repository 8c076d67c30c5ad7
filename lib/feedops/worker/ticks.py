"""Ticks: the raw copy taken in the callback, date normalisation and de-duplication.

The callback (CTP's native thread) only calls :func:`raw_tick`, which copies the
fields of a ``CThostFtdcDepthMarketDataField`` into a plain tuple. Everything else
runs on the pipeline thread:

:class:`Normaliser` turns a raw tuple into the published record (a dict, layout in
docs/ops/worker.md):

* ``ActionDay`` (the calendar date of the exchange time): trusted from SHFE, INE,
  CFFEX and GFEX; derived for DCE (it sends the trading day at night) and CZCE from
  the receive time in Beijing, corrected when the tick and the clock are on
  different sides of midnight;
* ``TradingDay``: trusted except CZCE (it sends the calendar date), where it is the
  later of the session's trading day (from the market-data login) and the
  calendar's trading day of the exchange time, so Friday-night ticks belong to
  Monday (holidays included) and a session that outlives a trading day moves on;
* the "no value" marker (the largest double) becomes ``None``.

:class:`Deduper` drops duplicates and replays per instrument on (trading day,
exchange time, volume): same key again -> ``duplicate``; older exchange time on the
same trading day -> ``replay``; volume going down -> ``backwards_volume``; an older
trading day -> ``backwards_day``; a trading day older than the session's (from the
login) -> ``stale``. A new process seeds it from the sink's last records
(:meth:`Deduper.seed`, :mod:`feedops.worker.resume`), so a restart or a failover
does not publish a replay again.
"""

from __future__ import annotations

import calendar as _calendar
import datetime as _dt
import sys
from typing import Any

from .. import clock

#: Order of the fields in the raw tuple (after the receive time).
RAW_FIELDS = (
    "InstrumentID", "ExchangeID", "TradingDay", "ActionDay", "UpdateTime", "UpdateMillisec",
    "LastPrice", "Volume", "Turnover", "OpenInterest",
    "BidPrice1", "BidVolume1", "AskPrice1", "AskVolume1",
    "UpperLimitPrice", "LowerLimitPrice", "OpenPrice", "HighestPrice", "LowestPrice",
    "PreSettlementPrice", "PreClosePrice", "PreOpenInterest", "AveragePrice", "SettlementPrice", "ClosePrice",
)
#: Published names of the value fields, in RAW_FIELDS order from LastPrice on.
VALUE_NAMES = (
    "last", "volume", "turnover", "open_interest",
    "bid1", "bid_volume1", "ask1", "ask_volume1",
    "upper_limit", "lower_limit", "open", "high", "low",
    "pre_settlement", "pre_close", "pre_open_interest", "average", "settlement", "close",
)
_FIRST_VALUE = 7  # index of LastPrice in the raw tuple (0 is the receive time)
#: Keys of the published record, in order (docs/ops/worker.md).
RECORD_KEYS = ("instrument", "exchange", "trading_day", "action_day", "update_time", "millisec", "exchange_ts",
               "recv_ts") + VALUE_NAMES
#: The one "no value" rule (published records and dedupe): +-this (CTP's marker, either sign), NaN and
#: the infinities have no value.
_DBL_MAX = sys.float_info.max
_HEADER = len(RECORD_KEYS) - len(VALUE_NAMES)  # instrument ... recv_ts, before the values
TRUSTED_ACTION_DAY = frozenset({"SHFE", "INE", "CFFEX", "GFEX"})
TRUSTED_TRADING_DAY = frozenset({"SHFE", "INE", "DCE", "CFFEX", "GFEX"})
BEIJING_OFFSET = 8 * 3600
_HALF_DAY = 12 * 3600


def raw_tick(f: Any, now: Any = clock.time) -> tuple:
    """Copy a depth-market-data struct into a tuple (the only work done in the callback)."""
    return (now(), f.InstrumentID, f.ExchangeID, f.TradingDay, f.ActionDay, f.UpdateTime, f.UpdateMillisec,
            f.LastPrice, f.Volume, f.Turnover, f.OpenInterest,
            f.BidPrice1, f.BidVolume1, f.AskPrice1, f.AskVolume1,
            f.UpperLimitPrice, f.LowerLimitPrice, f.OpenPrice, f.HighestPrice, f.LowestPrice,
            f.PreSettlementPrice, f.PreClosePrice, f.PreOpenInterest, f.AveragePrice, f.SettlementPrice, f.ClosePrice)


def _valid_day(text: str) -> bool:
    return len(text) == 8 and text.isdigit() and text[:2] in ("19", "20")


def _day_str(day: _dt.date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def _time_secs(update_time: str) -> int | None:
    try:
        return int(update_time[0:2]) * 3600 + int(update_time[3:5]) * 60 + int(update_time[6:8])
    except (ValueError, IndexError):
        return None


class Normaliser:
    """Raw tuple -> published record; see the module docstring for the date rules."""

    def __init__(self, calendar, exchange_of: dict[str, str] | None = None):
        self.calendar = calendar
        self.exchange_of = exchange_of if exchange_of is not None else {}
        self._date_by_index: dict[int, str] = {}
        self._epoch_by_day: dict[str, float] = {}
        self._trading_day_cache: dict[tuple[str, bool], str] = {}
        self._header_cache: dict[tuple[str, str, str, str], tuple[str, str, float]] = {}
        self._derived_cache: dict[tuple[str, str, str, str], tuple[str, str, float]] = {}
        self._session_trading_day: str = ""  # from the market-data login (property below)
        self._secs_by_time: dict[str, int] = {}
        self._valid_days: set[str] = set()

    def _is_day(self, text: str) -> bool:
        if text in self._valid_days:
            return True
        if _valid_day(text):
            if len(self._valid_days) > 1000:
                self._valid_days.clear()
            self._valid_days.add(text)
            return True
        return False

    def _local_date(self, day_index: int) -> str:
        text = self._date_by_index.get(day_index)
        if text is None:
            text = _day_str(_dt.date(1970, 1, 1) + _dt.timedelta(days=day_index))
            self._date_by_index[day_index] = text
        return text

    def _day_epoch(self, day: str) -> float:
        epoch = self._epoch_by_day.get(day)
        if epoch is None:
            epoch = float(_calendar.timegm((int(day[:4]), int(day[4:6]), int(day[6:8]), 0, 0, 0)) - BEIJING_OFFSET)
            self._epoch_by_day[day] = epoch
        return epoch

    def trading_day_of(self, action_day: str, secs: int) -> str:
        """The calendar's trading day for a Beijing date and second of day (cached)."""
        key = (action_day, secs >= 18 * 3600)
        found = self._trading_day_cache.get(key)
        if found is None:
            at = _dt.datetime(int(action_day[:4]), int(action_day[4:6]), int(action_day[6:8]),
                              secs // 3600, (secs % 3600) // 60, secs % 60,
                              tzinfo=_dt.timezone(_dt.timedelta(hours=8)))
            found = _day_str(self.calendar.trading_day(at))
            self._trading_day_cache[key] = found
        return found

    def derive_action_day(self, recv: float, secs: int) -> str:
        """Calendar date of a tick stamped ``secs`` after local midnight, received at ``recv``."""
        local = recv + BEIJING_OFFSET
        day_index = int(local // 86400)
        local_secs = local - day_index * 86400
        if secs - local_secs > _HALF_DAY:  # tick 23:59:59, clock already 00:00:01
            day_index -= 1
        elif local_secs - secs > _HALF_DAY:  # tick 00:00:00, clock still 23:59:59
            day_index += 1
        return self._local_date(day_index)

    @property
    def session_trading_day(self) -> str:
        return self._session_trading_day

    @session_trading_day.setter
    def session_trading_day(self, value: str) -> None:
        self._session_trading_day = value
        self._header_cache.clear()  # CZCE's trading day depends on it
        self._derived_cache.clear()

    def _secs(self, update_time: str) -> int | None:
        secs = self._secs_by_time.get(update_time)
        if secs is None:
            secs = _time_secs(update_time)
            if secs is None:
                return None
            if len(self._secs_by_time) > 100_000:
                self._secs_by_time.clear()
            self._secs_by_time[update_time] = secs
        return secs

    def _header(self, exchange: str, trading_day: str, action_day: str, secs: int) -> tuple[str, str, float]:
        """(trading day, action day, exchange time of the second) for a tick whose action day is final."""
        if exchange not in TRUSTED_TRADING_DAY or not self._is_day(trading_day):
            trading_day = max(self.trading_day_of(action_day, secs), self._session_trading_day)
        return trading_day, action_day, self._day_epoch(action_day) + secs

    def _header_miss(self, key: tuple[str, str, str, str], recv: float) -> tuple[str, str, float] | int | None:
        """Fill the cache for ``key``: the header, or the second of day when the action day must be derived."""
        exchange, trading_day, action_day, update_time = key
        secs = self._secs(update_time)
        if secs is None:
            return None
        if len(self._header_cache) > 50_000:
            self._header_cache.clear()
        if exchange not in TRUSTED_ACTION_DAY or not self._is_day(action_day):
            self._header_cache[key] = secs
            return secs
        header = self._header_cache[key] = self._header(exchange, trading_day, action_day, secs)
        return header

    def prepare(self, raw: tuple) -> tuple | None:
        """Raw tuple -> normalised tuple (the pipeline's hot path), or None when unusable.

        Layout: instrument, exchange, trading_day, action_day, update_time, millisec,
        exchange_ts, recv_ts, then the 19 values of VALUE_NAMES as CTP sent them (the
        "no value" marker still in place: :func:`record_of` turns it into None). The
        date work is cached per (exchange, TradingDay, ActionDay, UpdateTime): ticks of
        one second share it.
        """
        recv, instrument, exchange, trading_day, action_day, update_time, millisec = raw[:7]
        if not instrument:
            return None
        if not exchange:
            exchange = self.exchange_of.get(instrument, "")
        key = (exchange, trading_day, action_day, update_time)
        header = self._header_cache.get(key)
        if header is None:
            header = self._header_miss(key, recv)
            if header is None:
                return None
        if header.__class__ is int:  # the action day comes from the receive time: per tick
            action_day = self.derive_action_day(recv, header)
            derived_key = (exchange, trading_day, action_day, update_time)
            found = self._derived_cache.get(derived_key)
            if found is None:
                if len(self._derived_cache) > 50_000:
                    self._derived_cache.clear()
                found = self._derived_cache[derived_key] = self._header(exchange, trading_day, action_day, header)
            header = found
        trading_day, action_day, base = header
        return (instrument, exchange, trading_day, action_day, update_time, millisec, base + millisec / 1000.0,
                recv) + raw[_FIRST_VALUE:]

    def normalise(self, raw: tuple) -> dict[str, Any] | None:
        """Return the published record, or None when the tick is unusable (no instrument or time)."""
        prepared = self.prepare(raw)
        return None if prepared is None else record_of(prepared)


def record_of(n: tuple) -> dict[str, Any]:
    """Normalised tuple -> the published record (keys as in RECORD_KEYS).

    "No value" (the largest double, either sign), NaN and the infinities fail
    ``-_DBL_MAX < v < _DBL_MAX`` and become None: the rule of the writer's batch path
    (:func:`feedops.worker.sinks.rows_of_batch`), which is the hot path; this one serves
    records with unusual ids and :meth:`Normaliser.normalise`.
    """
    values = [v if -_DBL_MAX < v < _DBL_MAX else None for v in n[_HEADER:]]
    return dict(zip(RECORD_KEYS, [*n[:_HEADER], *values]))


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

    def check_prepared(self, n: tuple) -> str | None:
        """:meth:`check` for a normalised tuple (:meth:`Normaliser.prepare`)."""
        volume = n[9]  # "no value" (the records' rule) counts as no volume
        return self.check_fields(n[0], n[2], volume if -_DBL_MAX < volume < _DBL_MAX else 0, n[6])

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
