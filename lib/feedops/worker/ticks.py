"""Ticks: the batch the callback copied, the published record and date normalisation.

The callback (CTP's native thread) only copies the bytes of each
``CThostFtdcDepthMarketDataField`` into a ring of structs
(:class:`feedops.worker.pipeline.TickQueue`, layout :mod:`feedops.worker.layout`).
Everything else runs on the pipeline thread, a batch (a numpy array of those structs and
their receive times) at a time:

:class:`Normaliser` turns a batch into the published records (:data:`RECORD_DTYPE`, one
numpy record per tick; keys and JSON in docs/ops/worker.md):

* ``ActionDay`` (the calendar date of the exchange time): trusted from SHFE, INE,
  CFFEX and GFEX; derived for DCE (it sends the trading day at night) and CZCE from
  the receive time in Beijing, corrected when the tick and the clock are on
  different sides of midnight;
* ``TradingDay``: trusted except CZCE (it sends the calendar date), where it is the
  later of the session's trading day (from the market-data login) and the
  calendar's trading day of the exchange time, so Friday-night ticks belong to
  Monday (holidays included) and a session that outlives a trading day moves on;
* the "no value" marker (the largest double) stays in the record and becomes null when
  the sink writer encodes it (:func:`feedops.worker.encode.rows_of_records`).

The date work is done once per distinct (exchange, TradingDay, ActionDay, UpdateTime) of
the batch, and for DCE/CZCE once per distinct receive date: the ticks of one second share it.

Duplicates and replays are dropped after this, by :class:`feedops.worker.dedupe.Deduper`.
"""

from __future__ import annotations

import calendar as _calendar
import datetime as _dt
import sys
from typing import Any, Iterable, Mapping

import numpy as np

from .compiled import _jsonlines as _native
from .layout import DEPTH_DTYPE, DEPTH_SIZE, ENCODING

#: Version of the published record (its ``schema`` key; docs/ops/worker.md). 1 had no ``schema`` key and level 1 only.
SCHEMA_VERSION = 2
#: (published name, struct field) of the values, in the record's order: version 1's first, then what version 2 added.
VALUE_FIELDS = (
    ("last", "LastPrice"), ("volume", "Volume"), ("turnover", "Turnover"), ("open_interest", "OpenInterest"),
    ("bid1", "BidPrice1"), ("bid_volume1", "BidVolume1"), ("ask1", "AskPrice1"), ("ask_volume1", "AskVolume1"),
    ("upper_limit", "UpperLimitPrice"), ("lower_limit", "LowerLimitPrice"), ("open", "OpenPrice"),
    ("high", "HighestPrice"), ("low", "LowestPrice"), ("pre_settlement", "PreSettlementPrice"),
    ("pre_close", "PreClosePrice"), ("pre_open_interest", "PreOpenInterest"), ("average", "AveragePrice"),
    ("settlement", "SettlementPrice"), ("close", "ClosePrice"),
    *((name, field) for level in range(2, 6) for name, field in (
        (f"bid{level}", f"BidPrice{level}"), (f"bid_volume{level}", f"BidVolume{level}"),
        (f"ask{level}", f"AskPrice{level}"), (f"ask_volume{level}", f"AskVolume{level}"))),
    ("banding_upper", "BandingUpperPrice"), ("banding_lower", "BandingLowerPrice"),
    ("pre_delta", "PreDelta"), ("curr_delta", "CurrDelta"),
)
VALUE_NAMES = tuple(name for name, _ in VALUE_FIELDS)
_HEADER_KEYS = ("instrument", "exchange", "trading_day", "action_day", "update_time", "millisec", "exchange_ts",
                "recv_ts")
#: Keys of the published record, in order (docs/ops/worker.md); ``schema`` (:data:`SCHEMA_VERSION`) ends it.
RECORD_KEYS = _HEADER_KEYS + VALUE_NAMES + ("schema",)
#: Levels 2-5: (price, volume) names; a level whose price has no value publishes a null volume too.
DEPTH_LEVELS = tuple((f"{side}{level}", f"{side}_volume{level}") for level in range(2, 6) for side in ("bid", "ask"))
#: One published record as the pipeline hands it to the sink writer (strings as bytes: GB18030 for the
#: instrument as CTP sent it, ASCII for the rest; values as the struct holds them, "no value" still in place).
RECORD_DTYPE = np.dtype([("instrument", "S81"), ("exchange", "S9"), ("trading_day", "S8"), ("action_day", "S8"),
                         ("update_time", "S9"), ("millisec", "<i4"), ("exchange_ts", "<f8"), ("recv_ts", "<f8")]
                        + [(name, DEPTH_DTYPE.fields[field][0]) for name, field in VALUE_FIELDS])
#: The one "no value" rule (published records and dedupe): +-this (CTP's marker, either sign), NaN and
#: the infinities have no value.
_DBL_MAX = sys.float_info.max
TRUSTED_ACTION_DAY = frozenset({"SHFE", "INE", "CFFEX", "GFEX"})
TRUSTED_TRADING_DAY = frozenset({"SHFE", "INE", "DCE", "CFFEX", "GFEX"})
BEIJING_OFFSET = 8 * 3600
_HALF_DAY = 12 * 3600
_PAIR = 1 << 32  # (distinct key, receive day + 1) as one int64: key * _PAIR + day
#: What a batch's ticks are grouped by for the date work: the struct's fields, (offset, size) of each.
_KEY_NAMES = ("ExchangeID", "TradingDay", "ActionDay", "UpdateTime")
_KEY_FIELDS = tuple((DEPTH_DTYPE.fields[name][1], DEPTH_DTYPE.fields[name][0].itemsize) for name in _KEY_NAMES)
#: The record's fields a struct's field fills as it is (same type): (struct offset, record offset, size) of each.
_TAKEN = (("instrument", "InstrumentID"), ("exchange", "ExchangeID"), ("update_time", "UpdateTime"),
          ("millisec", "UpdateMillisec"), *VALUE_FIELDS)
assert all(RECORD_DTYPE.fields[name][0] == DEPTH_DTYPE.fields[field][0] for name, field in _TAKEN)


def _copy_plan() -> tuple[tuple[int, int, int], ...]:
    """(struct offset, record offset, size) of each field taken, fields next to each other in both as one range."""
    plan: list[tuple[int, int, int]] = []
    for src, dst, size in sorted((DEPTH_DTYPE.fields[field][1], RECORD_DTYPE.fields[name][1],
                                  RECORD_DTYPE.fields[name][0].itemsize) for name, field in _TAKEN):
        if plan and plan[-1][0] + plan[-1][2] == src and plan[-1][1] + plan[-1][2] == dst:
            plan[-1] = (plan[-1][0], plan[-1][1], plan[-1][2] + size)
        else:
            plan.append((src, dst, size))
    return tuple(plan)


_COPY_PLAN = _copy_plan()
_EXCHANGE_BYTES = slice(DEPTH_DTYPE.fields["ExchangeID"][1],
                        DEPTH_DTYPE.fields["ExchangeID"][1] + DEPTH_DTYPE.fields["ExchangeID"][0].itemsize)


def _no_exchange(rows: np.ndarray) -> np.ndarray:
    """Which structs have no ExchangeID (all its bytes zero)."""
    return ~rows.view(np.uint8).reshape(len(rows), DEPTH_SIZE)[:, _EXCHANGE_BYTES].any(axis=1)


def depth_rows(ticks: Iterable[Mapping[str, Any]]) -> np.ndarray:
    """Depth structs (:data:`~feedops.worker.layout.DEPTH_DTYPE`) from field mappings; unnamed fields are 0/empty.

    What the callback would have copied from structs holding these values (tests, tools)."""
    ticks = list(ticks)
    rows = np.zeros(len(ticks), dtype=DEPTH_DTYPE)
    for i, fields in enumerate(ticks):
        for name, value in fields.items():
            if name in DEPTH_DTYPE.names:
                rows[i][name] = value.encode(ENCODING) if isinstance(value, str) else value
    return rows


class _Decoded(dict):
    """bytes -> str (GB18030) for the few thousand distinct ids and dates the pipeline meets."""

    def __missing__(self, raw: bytes) -> str:
        value = raw.decode(ENCODING, errors="replace")
        if len(self) > 200_000:
            self.clear()
        self[raw] = value
        return value


def day_code(day: str) -> int:
    """A trading day ``YYYYMMDD`` as an int (the order of the text; 0 for no day): what dedupe compares."""
    return int(day) if day.isdigit() else 0


class Prepared:
    """A normalised batch: the records of the usable ticks and, aligned with them, their trading days as
    ints (:func:`day_code`), what dedupe reads; the count of ticks (records) per exchange."""

    def __init__(self, records: np.ndarray, days: np.ndarray, invalid: int, exchange_counts: dict[str, int]):
        self.records = records  # RECORD_DTYPE
        self.days = days
        self.invalid = invalid  # ticks without an instrument id or a parsable UpdateTime
        self.exchange_counts = exchange_counts


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
    """A batch of depth structs -> published records; see the module docstring for the date rules."""

    def __init__(self, calendar, exchange_of: dict[str, str] | None = None):
        self.calendar = calendar
        self.exchange_of = exchange_of if exchange_of is not None else {}
        self._date_by_index: dict[int, str] = {}
        self._epoch_by_day: dict[str, float] = {}
        self._trading_day_cache: dict[tuple[str, bool], str] = {}
        self._session_trading_day: str = ""  # from the market-data login (property below)
        self._secs_by_time: dict[str, int] = {}
        self._valid_days: set[str] = set()
        self._text = _Decoded()

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

    @staticmethod
    def receive_day_index(recv: np.ndarray, secs: np.ndarray) -> np.ndarray:
        """Days since 1970-01-01 (Beijing) of ticks stamped ``secs`` after local midnight, received at ``recv``:
        the receive date, corrected when the tick and the clock are on different sides of midnight."""
        local = recv + BEIJING_OFFSET
        day_index = np.floor_divide(local, 86400).astype(np.int64)
        local_secs = local - day_index * 86400
        day_index -= (secs - local_secs > _HALF_DAY)  # tick 23:59:59, clock already 00:00:01
        day_index += (local_secs - secs > _HALF_DAY)  # tick 00:00:00, clock still 23:59:59
        return day_index

    def derive_action_day(self, recv: float, secs: int) -> str:
        """Calendar date of a tick stamped ``secs`` after local midnight, received at ``recv``."""
        return self._local_date(int(self.receive_day_index(np.array([recv]), np.array([secs]))[0]))

    @property
    def session_trading_day(self) -> str:
        return self._session_trading_day

    @session_trading_day.setter
    def session_trading_day(self, value: str) -> None:
        self._session_trading_day = value  # read per batch: CZCE's trading day depends on it

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

    def batch(self, rows: np.ndarray, recv: np.ndarray) -> Prepared:
        """Depth structs (DEPTH_DTYPE) and their receive times -> the records of the usable ones.

        The pipeline's hot path, a batch at a time: the per-tick work is numpy's and the compiled
        module's (``_jsonlines.group``: the ticks of one key; ``copy_fields``: the fields a record
        takes as they are); Python runs once per distinct (exchange, TradingDay, ActionDay,
        UpdateTime) of the batch and, for the exchanges whose ActionDay is derived, per distinct
        receive date.
        """
        text = self._text
        n = len(rows)
        rows = np.ascontiguousarray(rows)
        firsts, which, keys = self._keys(rows)
        if any(not key[0] for key in keys) and _no_exchange(rows).any():
            # no ExchangeID: the instrument list's (in a copy: the caller's rows stay as they are), then again
            rows = rows.copy()
            exchange_raw = rows["ExchangeID"]
            for i in np.flatnonzero(_no_exchange(rows)):
                exchange_raw[i] = self.exchange_of.get(text[rows["InstrumentID"][i]], "").encode()
            firsts, which, keys = self._keys(rows)
        # per distinct key: the second of day (-1: unparsable) and the header when the ActionDay is trusted
        secs_of = np.empty(len(firsts), dtype=np.int64)
        derive = np.zeros(len(firsts), dtype=bool)
        fixed: list[tuple[str, str, float] | None] = []
        for k, (exchange, trading_day, action_day, update_time) in enumerate(keys):
            secs = self._secs(update_time)
            secs_of[k] = -1 if secs is None else secs
            if secs is None:
                fixed.append(None)
            elif exchange in TRUSTED_ACTION_DAY and self._is_day(action_day):
                fixed.append(self._header(exchange, trading_day, action_day, secs))
            else:
                derive[k] = True
                fixed.append(None)
        secs = secs_of[which]
        usable = (secs >= 0) & (rows["InstrumentID"] != b"")
        # one header per (key, receive date) pair; the date is -1 for keys whose ActionDay is trusted
        if derive.any():
            day_index = np.where(derive[which], self.receive_day_index(recv, secs), -1)
            pairs = which * _PAIR + (day_index + 1)
            first_pairs, where = (np.frombuffer(part, dtype=np.int64) for part in _native.group(pairs, 8, ((0, 8),)))
            pairs = pairs[first_pairs].tolist()
        else:
            pairs, where = [k * _PAIR for k in range(len(firsts))], which
        trading_days, action_days, bases = [], [], []
        for pair in pairs:
            k, day = divmod(pair, _PAIR)
            header = fixed[k]
            if header is None and secs_of[k] >= 0:
                header = self._header(keys[k][0], keys[k][1], self._local_date(day - 1), int(secs_of[k]))
            if header is None:  # unparsable time: the tick is dropped below
                header = ("", "", 0.0)
            trading_days.append(header[0])
            action_days.append(header[1])
            bases.append(header[2])
        if not usable.all():
            keep = np.flatnonzero(usable)
            rows, recv, where, which = rows[keep], recv[keep], where[keep], which[keep]
        out = np.empty(len(rows), dtype=RECORD_DTYPE)
        _native.copy_fields(rows, DEPTH_SIZE, out, RECORD_DTYPE.itemsize, _COPY_PLAN)  # the fields taken as they are
        out["trading_day"] = np.array(trading_days, dtype="S8")[where]
        out["action_day"] = np.array(action_days, dtype="S8")[where]
        out["exchange_ts"] = np.array(bases, dtype=np.float64)[where] + rows["UpdateMillisec"] / 1000.0
        out["recv_ts"] = recv
        counts: dict[str, int] = {}
        for k, count in enumerate(np.bincount(which, minlength=len(firsts)).tolist()):
            if count:
                counts[keys[k][0]] = counts.get(keys[k][0], 0) + count
        return Prepared(out, np.array([day_code(day) for day in trading_days], dtype=np.int64)[where], n - len(out),
                        counts)

    def _keys(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[tuple[str, ...]]]:
        """The batch grouped by (ExchangeID, TradingDay, ActionDay, UpdateTime): the first struct of each
        group, the group of every struct, and each group's four texts."""
        firsts, which = (np.frombuffer(part, dtype=np.int64) for part in _native.group(rows, DEPTH_SIZE, _KEY_FIELDS))
        text = self._text
        columns = [map(text.__getitem__, rows[name][firsts].tolist()) for name in _KEY_NAMES]
        return firsts, which, list(zip(*columns))

    def normalise(self, fields: Mapping[str, Any], recv: float) -> dict[str, Any] | None:
        """The published record of one tick given as struct fields, or None when it is unusable (tests, tools)."""
        prepared = self.batch(depth_rows([fields]), np.array([recv], dtype=np.float64))
        return record_of(prepared.records[0]) if len(prepared.records) else None


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(ENCODING, errors="replace")
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not -_DBL_MAX < value < _DBL_MAX:
        return None
    return value


def record_of(record: np.void) -> dict[str, Any]:
    """One record of RECORD_DTYPE -> the published record (keys as in RECORD_KEYS, "no value" as None).

    "No value" (the largest double, either sign), NaN and the infinities fail
    ``-_DBL_MAX < v < _DBL_MAX`` and become None, and so does the volume of a level 2-5
    whose price has none: the rules of the writer's batch path
    (:func:`feedops.worker.encode.rows_of_records`), which is the hot path; this one serves
    records with unusual ids, tests and tools.
    """
    out = {key: _plain(record[key]) for key in RECORD_KEYS[:-1]}
    for price, volume in DEPTH_LEVELS:
        if out[price] is None:
            out[volume] = None
    out["schema"] = SCHEMA_VERSION
    return out
