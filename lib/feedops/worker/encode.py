"""The published record's JSON line (schema 2; keys and rules in docs/ops/worker.md), built a batch at a time.

The sink writer's hot path (:mod:`feedops.worker.writer`): a batch of records
(:data:`~feedops.worker.ticks.RECORD_DTYPE`) becomes one line per tick, byte for byte the
line :func:`encode` writes for :func:`~feedops.worker.ticks.record_of` (the reference:
``orjson.dumps`` of the record's dict), without a dict or a per-field Python step per tick.

A line is built from runs of consecutive keys:

* runs that change from tick to tick (the time, last price, volume, turnover, open
  interest, level 1, high, low, average): numbers, encoded per batch by one orjson call
  for the floats and one for the ints, split into tokens and put into a %-template of
  the line;
* runs that stay the same for an instrument through the day (instrument, exchange and
  dates; the limits and the open; the previous day's values; settlement and close;
  banding and deltas): their bytes in the record are, together, the key of a cache of
  their JSON texts (one lookup per tick), so they are encoded once per instrument and
  value, not per tick; the update time has a cache of its own;
* levels 2-5: one constant text when every price of the levels has no value (all
  exchanges but SHFE and INE), else encoded like the numbers.

"No value" (the largest double, either sign, NaN, the infinities) is written as null,
and so is the volume of a level 2-5 whose price has none. Floats are written by orjson
from float64 (the same shortest round-trip text as for a Python float), ints as ints.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import orjson
from numpy.lib.recfunctions import structured_to_unstructured

from .layout import ENCODING
from .ticks import DEPTH_LEVELS, RECORD_DTYPE, RECORD_KEYS, SCHEMA_VERSION, record_of

_DBL_MAX = sys.float_info.max
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
#: The int standing for a null volume (a level without a price) until it is written as null.
_NULL_INT = np.iinfo(np.int64).min
_NULL_INT_TEXT = str(_NULL_INT).encode()
#: Entries a cache keeps before it starts afresh (bounds the writer's memory: ~0.5 kB an entry).
CACHE_MAX = 65_536


def encode(record: dict[str, Any]) -> bytes:
    """The JSON line (without the newline) of a published record as a dict (the reference encoding)."""
    return orjson.dumps(record)


def row_of(record: np.void) -> tuple:
    """The row (see :func:`rows_of_records`) of one record, through the dict (the reference for the batch path)."""
    out = record_of(record)
    return (encode(out), out["instrument"].encode(), out["exchange"], out["trading_day"], out["exchange_ts"],
            out["recv_ts"])


def _is_float(key: str) -> bool:
    return RECORD_DTYPE.fields[key][0].kind == "f"


def _span(first: str, last: str) -> tuple[int, int]:
    """Byte range of the record's fields ``first`` .. ``last`` (consecutive in RECORD_DTYPE)."""
    start = RECORD_DTYPE.fields[first][1]
    dtype, offset = RECORD_DTYPE.fields[last]
    return start, offset + dtype.itemsize


def _keys(first: str, last: str) -> tuple[str, ...]:
    return RECORD_KEYS[RECORD_KEYS.index(first):RECORD_KEYS.index(last) + 1]


def _tokens(matrix: np.ndarray, null: bytes | None = None) -> list[bytes]:
    """The numbers of a 2-D array as JSON tokens, row after row (one orjson call); NaN and ``null`` as null."""
    blob = orjson.dumps(np.ascontiguousarray(matrix).reshape(-1), option=_NUMPY)[1:-1]
    if null is not None and null in blob:
        blob = blob.replace(null, b"null")
    return blob.split(b",")


class _Numbers:
    """The numbers of some keys of a batch as JSON tokens: key -> one token per record."""

    def __init__(self, keys: tuple[str, ...]):
        self.float_keys = [key for key in keys if _is_float(key)]
        self.int_keys = [key for key in keys if not _is_float(key)]
        #: levels 2-5 among the keys: (column of the price in the floats, column of the volume in the ints)
        self.levels = [(self.float_keys.index(price), self.int_keys.index(volume)) for price, volume in DEPTH_LEVELS
                       if price in self.float_keys and volume in self.int_keys]

    def columns(self, records: np.ndarray) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = {}
        no_value = None
        if self.float_keys:
            floats = structured_to_unstructured(records[self.float_keys], dtype=np.float64, copy=True)
            no_value = ~(np.abs(floats) < _DBL_MAX)
            floats[no_value] = np.nan  # orjson writes NaN as null
            tokens = _tokens(floats)
            width = len(self.float_keys)
            out.update((key, tokens[j::width]) for j, key in enumerate(self.float_keys))
        if self.int_keys:
            ints = structured_to_unstructured(records[self.int_keys], dtype=np.int64, copy=True)
            for price, volume in self.levels:
                ints[no_value[:, price], volume] = _NULL_INT
            tokens = _tokens(ints, _NULL_INT_TEXT)
            width = len(self.int_keys)
            out.update((key, tokens[j::width]) for j, key in enumerate(self.int_keys))
        return out


class _Runs:
    """Runs of keys as text, one ``,"key":value...`` token per run and record (for the records a cache missed)."""

    def __init__(self, runs: tuple[tuple[str, ...], ...]):
        self.runs = runs
        keys = tuple(key for run in runs for key in run)
        self.numbers = _Numbers(keys)
        self.keys = keys
        self.template = "".join("".join(f',"{key}":%s' for key in run) + "\n" for run in runs).encode()

    def tokens(self, records: np.ndarray) -> list[bytes]:
        """The run tokens of every record, record after record (``len(runs)`` per record)."""
        count = len(records)
        columns = self.numbers.columns(records)
        width = len(self.keys)
        values: list[Any] = [None] * (count * width)
        for j, key in enumerate(self.keys):
            values[j::width] = columns[key]
        return ((self.template * count) % tuple(values)).split(b"\n")[:count * len(self.runs)]


class _Cache(dict):
    """Bytes of a run in the record -> its text; starts afresh beyond CACHE_MAX entries."""

    def fill(self, keys: list[bytes], build) -> list[Any]:
        """The cached value of every key; the missing ones built by ``build(indexes of first occurrences)``."""
        found = [self.get(key) for key in keys]
        if None in found:
            first: dict[bytes, int] = {}
            for i, value in enumerate(found):
                if value is None:
                    first.setdefault(keys[i], i)
            built = dict(zip(first, build(list(first.values()))))
            if len(self) + len(built) > CACHE_MAX:
                self.clear()
            self.update(built)
            found = [built[key] if value is None else value for key, value in zip(keys, found)]
        return found


_HEAD = _span("instrument", "action_day")
_UPDATE_TIME = _span("update_time", "update_time")
#: The runs that stay the same for an instrument, in line order, and their byte ranges in the record.
_STATIC_RUNS = (_keys("upper_limit", "open"), _keys("pre_settlement", "pre_open_interest"),
                _keys("settlement", "close"), _keys("banding_upper", "curr_delta"))
_STATIC_SPANS = [_span(run[0], run[-1]) for run in _STATIC_RUNS]
_STEADY_COLUMNS = np.concatenate([np.arange(start, end) for start, end in (_HEAD, *_STATIC_SPANS)])
_LEVEL_RUN = _keys("bid2", "ask_volume5")
_LEVEL_PRICES = [price for price, _ in DEPTH_LEVELS]
#: Levels 2-5 when no price of them has a value.
_NO_LEVELS = "".join(f',"{key}":null' for key in _LEVEL_RUN).encode()
#: The keys encoded per tick, and the line: a %s per run token or number, the schema version last.
_LIVE = (*_keys("millisec", "ask_volume1"), "high", "low", "average")
_SLOTS = ("head", "update_time", *_keys("millisec", "ask_volume1"), "static0", "high", "low", "static1", "average",
          "static2", "levels", "static3")
_LINE = ("".join("%s" if slot in ("head", "update_time", "levels") or slot.startswith("static") else f',"{slot}":%s'
                 for slot in _SLOTS) + f',"schema":{SCHEMA_VERSION}' + "}\n").encode()
assert [key for key in RECORD_KEYS if key not in _LIVE] == [
    *_keys("instrument", "update_time"), *_STATIC_RUNS[0], *_STATIC_RUNS[1], *_STATIC_RUNS[2], *_LEVEL_RUN,
    *_STATIC_RUNS[3], "schema"], "the line's runs must cover RECORD_KEYS in order"


class Encoder:
    """Rows of batches of records; holds the caches of the runs that stay the same (one per writer process)."""

    def __init__(self) -> None:
        # bytes of instrument..action_day and of the static runs -> (head text, instrument UTF-8, exchange,
        # trading day, the texts of the static runs)
        self._steady = _Cache()
        self._times = _Cache()  # bytes of update_time -> its text
        self._shared: dict[bytes, bytes] = {}  # texts of static runs, one object per distinct text
        self._texts: dict[bytes, str] = {}  # a few exchanges and days, decoded once
        self._live = _Numbers(_LIVE)
        self._static_runs = _Runs(_STATIC_RUNS)
        self._level_runs = _Runs((_LEVEL_RUN,))

    def _text(self, raw: bytes) -> str:
        text = self._texts.get(raw)
        if text is None:
            if len(self._texts) > 10_000:
                self._texts.clear()
            text = self._texts[raw] = raw.decode(ENCODING, errors="replace")
        return text

    def rows(self, records: np.ndarray) -> list[tuple]:
        """Rows ``(line, instrument, exchange, trading_day, exchange_ts, recv_ts)`` of a batch of records
        (:data:`~feedops.worker.ticks.RECORD_DTYPE`, as the pipeline hands them over): the JSON line (no
        newline), the instrument id as UTF-8, exchange and trading day as str, the two times as float."""
        count = len(records)
        if not count:
            return []
        if getattr(records, "dtype", None) != RECORD_DTYPE:
            raise TypeError(f"a batch of records is a numpy array of RECORD_DTYPE, not {type(records).__name__}")
        records = np.ascontiguousarray(records)
        raw = records.view(np.uint8).reshape(count, RECORD_DTYPE.itemsize)
        # one lookup per tick for everything that stays the same for an instrument
        (heads, instruments, exchanges, days, *statics) = zip(*self._steady.fill(
            _void(raw[:, _STEADY_COLUMNS]), lambda first: self._build_steady(records[first])))
        times = self._times.fill(_void(raw[:, _UPDATE_TIME[0]:_UPDATE_TIME[1]]),
                                 lambda first: [b',"update_time":' + orjson.dumps(self._text(t))
                                                for t in records["update_time"][first].tolist()])
        columns: dict[str, Any] = self._live.columns(records)
        columns["head"] = heads
        columns["update_time"] = times
        for j, static in enumerate(statics):
            columns[f"static{j}"] = static
        columns["levels"] = self._levels(records)
        width = len(_SLOTS)
        values: list[Any] = [None] * (count * width)
        for j, slot in enumerate(_SLOTS):
            values[j::width] = columns[slot]
        lines = ((_LINE * count) % tuple(values)).split(b"\n")
        return list(zip(lines, instruments, exchanges, days, records["exchange_ts"].tolist(),
                        records["recv_ts"].tolist()))

    def _build_heads(self, records: np.ndarray) -> list[tuple[bytes, bytes, str, str]]:
        out = []
        for instrument, exchange, trading_day, action_day in zip(*(records[key].tolist() for key in _keys(
                "instrument", "action_day"))):
            instrument = instrument.decode(ENCODING, errors="replace")
            exchange, trading_day, action_day = (self._text(raw) for raw in (exchange, trading_day, action_day))
            text = b'{"instrument":%s,"exchange":%s,"trading_day":%s,"action_day":%s' % (
                orjson.dumps(instrument), orjson.dumps(exchange), orjson.dumps(trading_day), orjson.dumps(action_day))
            out.append((text, instrument.encode(), exchange, trading_day))
        return out

    def _build_steady(self, records: np.ndarray) -> list[tuple[Any, ...]]:
        """(head text, instrument UTF-8, exchange, trading day, the texts of the static runs) of each record."""
        shared = self._shared
        if len(shared) > CACHE_MAX:
            shared.clear()
        tokens = [shared.setdefault(token, token) for token in self._static_runs.tokens(records)]  # one copy each
        width = len(_STATIC_RUNS)
        return [head + tuple(tokens[i * width:(i + 1) * width]) for i, head in enumerate(self._build_heads(records))]

    def _levels(self, records: np.ndarray) -> list[bytes]:
        """Levels 2-5 of every record: the constant text where no price has a value, else encoded."""
        prices = structured_to_unstructured(records[_LEVEL_PRICES], dtype=np.float64)
        deep = np.flatnonzero((np.abs(prices) < _DBL_MAX).any(axis=1))
        if not len(deep):
            return [_NO_LEVELS] * len(records)
        out = np.full(len(records), _NO_LEVELS, dtype=object)
        out[deep] = self._level_runs.tokens(records[deep])
        return out.tolist()


def _void(matrix: np.ndarray) -> list[bytes]:
    """The rows of a 2-D uint8 array as bytes (keys of a cache)."""
    matrix = np.ascontiguousarray(matrix)
    return matrix.view(f"V{matrix.shape[1]}").reshape(-1).tolist()


_ENCODER = Encoder()


def rows_of_records(records: np.ndarray) -> list[tuple]:
    """Rows ``(line, instrument, exchange, trading_day, exchange_ts, recv_ts)`` of a batch of records
    (:meth:`Encoder.rows`, with this process's caches)."""
    return _ENCODER.rows(records)
