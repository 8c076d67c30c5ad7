"""The published record's JSON line (schema 2; keys and rules in docs/ops/worker.md), built a batch at a time.

The sink writer's hot path (:mod:`feedops.worker.writer`): a batch of records
(:data:`~feedops.worker.ticks.RECORD_DTYPE`) becomes one line per tick, byte for byte the
line :func:`encode` writes for :func:`~feedops.worker.ticks.record_of` (the reference:
``orjson.dumps`` of the record's dict), without a dict or a Python step per tick.

The line is written by the compiled ``_jsonlines.rows`` (``lib/feedops/worker/_jsonlines.c``,
built by ``make bootstrap``), which runs a plan made here from RECORD_DTYPE and RECORD_KEYS
over the batch's bytes: one step per key, in the record's order.

* numbers are written from the record's bytes: ints as ints, floats as the shortest text
  that reads back as the same double (orjson's text; a value the C code does not write
  itself is handed to ``orjson.dumps``);
* "no value" (the largest double, either sign, NaN, the infinities) is written as null,
  and so is the volume of a level 2-5 whose price has none;
* the strings (instrument, exchange, dates, update time) are looked up in caches keyed by
  their bytes in the record (``_jsonlines.Cache``: a hash table in C, no object per lookup)
  and built here on a miss (GB18030 decoding, JSON escaping by orjson): once per instrument
  and day, and once per distinct update time.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import orjson

from .compiled import _jsonlines
from .layout import ENCODING
from .ticks import DEPTH_LEVELS, RECORD_DTYPE, RECORD_KEYS, SCHEMA_VERSION, record_of

#: Entries a cache keeps before it starts afresh (bounds the writer's memory: ~0.3 kB an entry).
CACHE_MAX = 65_536


def encode(record: dict[str, Any]) -> bytes:
    """The JSON line (without the newline) of a published record as a dict (the reference encoding)."""
    return orjson.dumps(record)


def row_of(record: np.void) -> tuple:
    """The row (see :func:`rows_of_records`) of one record, through the dict (the reference for the batch path)."""
    out = record_of(record)
    return (encode(out), out["instrument"].encode(), out["exchange"], out["trading_day"], out["exchange_ts"],
            out["recv_ts"])


def _offset(key: str) -> int:
    return RECORD_DTYPE.fields[key][1]


def _plan() -> tuple[tuple[Any, ...], ...]:
    """The steps of ``_jsonlines.rows``: one per key of RECORD_KEYS, in order (the C module's docstring)."""
    volume_price = {volume: price for price, volume in DEPTH_LEVELS}
    steps: list[tuple[Any, ...]] = [(_jsonlines.HEAD,)]
    assert RECORD_KEYS[:5] == ("instrument", "exchange", "trading_day", "action_day", "update_time")
    steps.append((_jsonlines.TEXT, _offset("update_time"), RECORD_DTYPE.fields["update_time"][0].itemsize))
    for key in RECORD_KEYS[5:-1]:
        kind = RECORD_DTYPE.fields[key][0].str
        prefix = b',"%s":' % key.encode()
        if kind == "<f8":
            steps.append((_jsonlines.FLOAT, _offset(key), prefix))
        elif kind == "<i4" and key in volume_price:
            steps.append((_jsonlines.VOLUME, _offset(key), prefix, _offset(volume_price[key])))
        elif kind == "<i4":
            steps.append((_jsonlines.INT, _offset(key), prefix))
        else:
            raise TypeError(f"{key}: no step writes a {kind} value")
    assert RECORD_KEYS[-1] == "schema"
    steps.append((_jsonlines.LIT, b',"schema":%d}' % SCHEMA_VERSION))
    return tuple(steps)


_PLAN = _plan()
#: The record's head: instrument, exchange, trading day and action day, consecutive at its start.
_HEAD_DTYPE = np.dtype([(key, RECORD_DTYPE.fields[key][0]) for key in RECORD_KEYS[:4]])
assert all(RECORD_DTYPE.fields[key][1] == _HEAD_DTYPE.fields[key][1] for key in RECORD_KEYS[:4])


class Encoder:
    """Rows of batches of records; holds the caches of the strings (one per writer process)."""

    def __init__(self) -> None:
        self._heads = _jsonlines.Cache()  # head bytes -> (text, UTF-8 id, exchange, day)
        self._times = _jsonlines.Cache()  # update_time bytes -> its text with its key
        self._texts: dict[bytes, str] = {}  # a few exchanges and days, decoded once (one str object each)

    def _text(self, raw: bytes) -> str:
        text = self._texts.get(raw)
        if text is None:
            if len(self._texts) > 10_000:
                self._texts.clear()
            text = self._texts[raw] = raw.decode(ENCODING, errors="replace")
        return text

    def _head(self, raw: bytes) -> tuple[bytes, bytes, str, str]:
        """(text, instrument UTF-8, exchange, trading day) of a record's head bytes (a cache miss)."""
        instrument, exchange, trading_day, action_day = np.frombuffer(raw, dtype=_HEAD_DTYPE)[0].tolist()
        instrument = instrument.decode(ENCODING, errors="replace")
        exchange, trading_day, action_day = (self._text(part) for part in (exchange, trading_day, action_day))
        text = b'{"instrument":%s,"exchange":%s,"trading_day":%s,"action_day":%s' % (
            orjson.dumps(instrument), orjson.dumps(exchange), orjson.dumps(trading_day), orjson.dumps(action_day))
        return text, instrument.encode(), exchange, trading_day

    def _time(self, raw: bytes) -> bytes:
        return b',"update_time":' + orjson.dumps(self._text(raw.rstrip(b"\0")))

    def rows(self, records: np.ndarray) -> list[tuple]:
        """Rows ``(line, instrument, exchange, trading_day, exchange_ts, recv_ts)`` of a batch of records
        (:data:`~feedops.worker.ticks.RECORD_DTYPE`, as the pipeline hands them over): the JSON line (no
        newline), the instrument id as UTF-8, exchange and trading day as str, the two times as float."""
        if not len(_check(records)):
            return []
        return self._encode(records, False)

    def text_rows(self, records: np.ndarray) -> Rows:
        """The same rows as one text (:class:`Rows`): no object per line."""
        records = _check(records)
        if not len(records):
            return Rows(b"", np.zeros(0, dtype=np.int64), [], [], [], np.zeros(0), np.zeros(0))
        text, ends, instruments, exchanges, days = self._encode(records, True)
        return Rows(text, np.frombuffer(ends, dtype=np.int64), instruments, exchanges, days,
                    records["exchange_ts"].copy(), records["recv_ts"].copy())

    def _encode(self, records: np.ndarray, text: bool) -> Any:
        raw = np.ascontiguousarray(records).reshape(-1).view(np.uint8)
        return _jsonlines.rows(raw, RECORD_DTYPE.itemsize, _PLAN, 0, _HEAD_DTYPE.itemsize, self._heads, self._head,
                               self._times, self._time, orjson.dumps, _offset("exchange_ts"), _offset("recv_ts"),
                               CACHE_MAX, text)


def _check(records: Any) -> np.ndarray:
    if getattr(records, "dtype", None) != RECORD_DTYPE:
        raise TypeError(f"a batch of records is a numpy array of RECORD_DTYPE, not {type(records).__name__}")
    return records


class Rows:
    """A batch's rows as one text: every JSON line followed by a newline (what the file sink writes as it
    is), the end of each line, and per row the instrument (UTF-8), exchange and trading day (lists) and the
    two times (float64 arrays).

    Also a sequence of the rows :meth:`Encoder.rows` makes, each built when asked for: only a sink's
    slower paths ask (buffering while it is down, a batch across two trading days, a backlog in chunks)."""

    __slots__ = ("text", "ends", "instruments", "exchanges", "days", "exchange_ts", "recv_ts")

    def __init__(self, text: bytes, ends: np.ndarray, instruments: list[bytes], exchanges: list[str], days: list[str],
                 exchange_ts: np.ndarray, recv_ts: np.ndarray):
        self.text, self.ends = text, ends
        self.instruments, self.exchanges, self.days = instruments, exchanges, days
        self.exchange_ts, self.recv_ts = exchange_ts, recv_ts

    @classmethod
    def concat(cls, parts: list[Rows]) -> Rows:
        """One Rows of several, in order."""
        offsets = np.cumsum([0] + [len(part.text) for part in parts[:-1]])
        return cls(b"".join(part.text for part in parts),
                   np.concatenate([part.ends + offset for part, offset in zip(parts, offsets.tolist())]),
                   [i for part in parts for i in part.instruments], [e for part in parts for e in part.exchanges],
                   [d for part in parts for d in part.days], np.concatenate([part.exchange_ts for part in parts]),
                   np.concatenate([part.recv_ts for part in parts]))

    def __len__(self) -> int:
        return len(self.ends)

    def lines(self) -> list[bytes]:
        """Every JSON line, without its newline."""
        ends = self.ends.tolist()
        text = self.text
        return [text[start:end] for start, end in zip([0, *(end + 1 for end in ends[:-1])], ends)]

    def _row(self, i: int) -> tuple:
        start = int(self.ends[i - 1]) + 1 if i else 0
        return (self.text[start:int(self.ends[i])], self.instruments[i], self.exchanges[i], self.days[i],
                float(self.exchange_ts[i]), float(self.recv_ts[i]))

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self._row(i) for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError("row index out of range")
        return self._row(index % len(self))

    def __iter__(self) -> Iterator[tuple]:
        return (self._row(i) for i in range(len(self)))


_ENCODER = Encoder()


def rows_of_records(records: np.ndarray) -> list[tuple]:
    """Rows ``(line, instrument, exchange, trading_day, exchange_ts, recv_ts)`` of a batch of records
    (:meth:`Encoder.rows`, with this process's caches)."""
    return _ENCODER.rows(records)


def text_rows_of_records(records: np.ndarray) -> Rows:
    """The same rows as one text (:meth:`Encoder.text_rows`, with this process's caches)."""
    return _ENCODER.text_rows(records)
