"""The batch encoder writes byte for byte the line of the reference (the record's dict through orjson)."""

from __future__ import annotations

import json
import random
import sys

import numpy as np
import orjson
import pytest

from feedops.worker import encode as encode_mod
from feedops.worker.compiled import _jsonlines
from feedops.worker.encode import Encoder, row_of
from feedops.worker.ticks import DEPTH_LEVELS, RECORD_DTYPE, RECORD_KEYS

DBL_MAX = sys.float_info.max
NO_VALUE = (DBL_MAX, -DBL_MAX, float("nan"), float("inf"), float("-inf"))
FLOATS = (0.0, -0.0, 1.0, 3036.2, 0.1 + 0.2, 1e16, 1e-7, 5e-324, 1e301, -1e301, 123456789.12345679, -2.5,
          1796233519.117389, 2.0 ** 53, 4e-320)
INTS = (0, 1, -1, 7, 2**31 - 1, -2**31, 123456)
IDS = ("rb2601", "x00001", "a,b", 'q"x', "back\\slash", "],[", "汉字", "tab\there", "nl\nid", "ctl\x01", "caf\u00e9",
       "{}", "%s", "a\x00b")
TEXTS = (b"SHFE", b"INE", b"DCE", b"CZCE", b"", b"S\"H", b"\xff\xfe", "郑商所".encode("gb18030"), b"%s")
DAYS = (b"20261202", b"20261203", b"", b"2026120x")
TIMES = (b"10:00:00", b"23:59:59", b"", b"10:0", b"\x81\x30")


def _float(rnd: random.Random) -> float:
    roll = rnd.random()
    if roll < 0.25:
        return rnd.choice(NO_VALUE)
    if roll < 0.5:
        return rnd.choice(FLOATS)
    return round(rnd.uniform(-1e6, 1e6), rnd.randint(0, 9))


def random_records(rnd: random.Random, count: int, instruments: int) -> np.ndarray:
    """Records mixing every kind of value; per instrument a fixed set of statics most of the time, so that
    the caches hit as well as miss."""
    records = np.zeros(count, dtype=RECORD_DTYPE)
    statics = {}
    for i in range(count):
        k = rnd.randrange(instruments)
        ident = IDS[k % len(IDS)] + ("" if k < len(IDS) else str(k))
        row = records[i]
        row["instrument"] = ident.encode("gb18030")
        row["exchange"] = TEXTS[k % len(TEXTS)]
        row["trading_day"] = rnd.choice(DAYS[:2]) if rnd.random() < 0.9 else rnd.choice(DAYS)
        row["action_day"] = rnd.choice(DAYS)
        row["update_time"] = rnd.choice(TIMES)
        for name in RECORD_KEYS[5:-1]:
            kind = RECORD_DTYPE.fields[name][0].kind
            row[name] = rnd.choice(INTS) if kind == "i" else _float(rnd)
        # the two times are computed by the pipeline, never "no value" (in the line: the same rules as any float)
        row["exchange_ts"], row["recv_ts"] = rnd.choice(FLOATS), rnd.uniform(1.7e9, 1.8e9)
        if k in statics and rnd.random() < 0.8:  # the same limits, previous day, banding: a cache hit
            for name, value in statics[k].items():
                row[name] = value
        else:
            statics[k] = {name: row[name] for name in ("upper_limit", "lower_limit", "open", "pre_settlement",
                                                        "pre_close", "pre_open_interest", "settlement", "close",
                                                        "banding_upper", "banding_lower", "pre_delta", "curr_delta")}
        if rnd.random() < 0.5:  # levels 2-5 without any price, volumes left as they are (written as null)
            for price, _ in DEPTH_LEVELS:
                row[price] = rnd.choice(NO_VALUE)
    return records


@pytest.mark.parametrize("cache_max", [encode_mod.CACHE_MAX, 7])
def test_batches_encode_byte_for_byte_like_the_reference(monkeypatch, cache_max):
    monkeypatch.setattr(encode_mod, "CACHE_MAX", cache_max)  # 7: the caches start afresh again and again
    rnd = random.Random(17)
    encoder = Encoder()  # one encoder across batches, as in the writer: warm caches are checked too
    checked = 0
    for count in (1, 2, 50, 700, 700, 3):
        batch = random_records(rnd, count, instruments=40)
        rows = encoder.rows(batch)
        assert rows == [row_of(record) for record in batch]
        checked += len(rows)
    assert checked == 1456


def test_the_reference_rules_hold_in_the_lines():
    """What byte equality with the reference means, spelled out on one record."""
    record = np.zeros(1, dtype=RECORD_DTYPE)
    record["instrument"] = "汉字".encode("gb18030")
    record["exchange"], record["trading_day"], record["action_day"], record["update_time"] = (
        b"SHFE", b"20261202", b"20261202", b"10:00:01")
    for name in RECORD_KEYS[5:-1]:
        record[name] = DBL_MAX if RECORD_DTYPE.fields[name][0].kind == "f" else 9
    record["last"], record["turnover"], record["bid2"], record["ask3"] = -DBL_MAX, float("nan"), 4001.5, 0.1 + 0.2
    line, instrument, exchange, day, _, _ = Encoder().rows(record)[0]
    out = json.loads(line)
    assert list(out) == list(RECORD_KEYS) and out["schema"] == 2 and instrument == "汉字".encode()
    assert (exchange, day) == ("SHFE", "20261202") and out["instrument"] == "汉字"
    assert out["last"] is None and out["turnover"] is None and out["open"] is None  # no value: null
    assert out["volume"] == 9 and out["bid_volume2"] == 9 and out["ask3"] == 0.30000000000000004
    assert out["bid_volume3"] is None and out["ask_volume5"] is None  # a level without a price: null volume
    assert b'"ask3":0.30000000000000004,' in line and b"\n" not in line


def test_a_batch_that_is_not_records_is_refused():
    with pytest.raises(TypeError, match="RECORD_DTYPE"):
        Encoder().rows([("not a tick",)])
    assert Encoder().rows(np.zeros(0, dtype=RECORD_DTYPE)) == []


def _decimals(rnd: random.Random) -> float:
    """A price, amount or ratio as exchanges send them: a few decimals, any magnitude, either sign."""
    digits = rnd.randint(0, 9)
    return rnd.choice((1, -1)) * round(rnd.uniform(0, 10 ** rnd.randint(-4, 15)), digits)


def test_the_compiled_double_text_is_orjsons_wherever_it_writes_one():
    """The C encoder writes most doubles itself (``double_text``) and hands the rest to orjson: where it writes
    one, the text must be orjson's, byte for byte; and it must write the common ones (prices with few decimals),
    or the encoder is slow."""
    rnd = random.Random(23)
    values = list(FLOATS) + [0.0001, 0.00015, 9.9e-5, 1e15, 1e15 - 1, 999999999999999.9, 0.1, 0.7, 1.005, 2.675]
    values += [_decimals(rnd) for _ in range(100_000)]
    values += [rnd.uniform(-1e6, 1e6) for _ in range(20_000)]  # full-precision doubles: mostly orjson's
    values += [np.frombuffer(rnd.randbytes(8), dtype="<f8")[0].item() for _ in range(20_000)]  # any bit pattern
    written = 0
    for value in values:
        if value != value or value in (float("inf"), float("-inf")):
            continue
        text = _jsonlines.double_text(value)
        if text is not None:
            written += 1
            assert text == orjson.dumps(value), value
    assert written > 70_000  # of the 100,000 few-decimal values, those with at most 15 significant digits
    for price in (3036.2, 4001.5, 0.5, 123456.0, -2.5, 0.0, -0.0, 1796233519.25):
        assert _jsonlines.double_text(price) == orjson.dumps(price)


def _rows_with(records, build_head=None, build_text=None, float_text=orjson.dumps, heads=None,
               cache_max=encode_mod.CACHE_MAX):
    """``_jsonlines.rows`` over ``records`` with the encoder's plan and the given callbacks (its contract's edges)."""
    encoder = Encoder()
    heads = _jsonlines.Cache() if heads is None else heads
    return _jsonlines.rows(np.ascontiguousarray(records).view(np.uint8), RECORD_DTYPE.itemsize, encode_mod._PLAN, 0,
                           encode_mod._HEAD_DTYPE.itemsize, heads, build_head or encoder._head, _jsonlines.Cache(),
                           build_text or encoder._time, float_text, RECORD_DTYPE.fields["exchange_ts"][1],
                           RECORD_DTYPE.fields["recv_ts"][1], cache_max)


def test_a_long_text_from_float_text_leaves_the_rest_of_the_line_whole():
    """The line buffer grows for whatever float_text returns; every key after it is still written."""
    records = random_records(random.Random(3), 20, instruments=5)
    records["last"] = 1.5e-7  # not written by the C code: handed to float_text
    long = b"9" * 20_000
    rows = _rows_with(records, float_text=lambda value: long if value == 1.5e-7 else orjson.dumps(value))
    reference = [row_of(r) for r in records]
    for (line, *rest), (expected, *expected_rest) in zip(rows, reference):
        assert line == expected.replace(b'"last":1.5e-7', b'"last":' + long) and rest == expected_rest


def test_a_failing_callback_raises_and_a_callback_emptying_the_head_cache_is_harmless():
    records = random_records(random.Random(4), 30, instruments=30)
    calls = []

    def failing(key):
        calls.append(key)
        if len(calls) == 3:
            raise ValueError("no head for this one")
        return Encoder()._head(key)

    with pytest.raises(ValueError, match="no head"):
        _rows_with(records, build_head=failing)
    heads = _jsonlines.Cache()
    encoder = Encoder()

    def emptying(raw):
        heads.clear()  # the head of this record was just looked up: the C code holds its own reference
        return encoder._time(raw)

    assert _rows_with(records, build_text=emptying, heads=heads) == [row_of(r) for r in records]


def test_the_caches_keep_one_value_per_key_bound_their_size_and_refuse_a_dict():
    """``_jsonlines.Cache``: a value per distinct key, built once; emptied when it holds cache_max keys; a build
    that empties the very cache it fills still gets its value stored; anything but a Cache is refused."""
    records = random_records(random.Random(5), 200, instruments=25)
    heads_of = {np.ascontiguousarray(r).view(np.uint8)[:encode_mod._HEAD_DTYPE.itemsize].tobytes() for r in records}
    built: list[bytes] = []
    encoder, heads = Encoder(), _jsonlines.Cache()

    def counting(raw):
        built.append(raw)
        return encoder._head(raw)

    assert _rows_with(records, build_head=counting, heads=heads) == [row_of(r) for r in records]
    assert sorted(built) == sorted(heads_of) and len(heads) == len(heads_of)  # each head built once, all kept
    some = built[0]
    assert heads.get(some) == encoder._head(some) and heads.get(b"no such head") is None
    assert _rows_with(records, build_head=counting, heads=heads) and len(built) == len(heads_of)  # all hits

    def clearing(raw):
        heads.clear()  # the cache being filled is emptied by its own build: the value is stored all the same
        return encoder._head(raw)

    heads.clear()
    assert len(heads) == 0 and heads.get(some) is None
    assert _rows_with(records, build_head=clearing, heads=heads) == [row_of(r) for r in records]
    assert len(heads) == 1  # every miss emptied it, then stored its own value
    with pytest.raises(TypeError, match="_jsonlines.Cache, not dict"):
        _rows_with(records, heads={})


def test_a_cache_starts_afresh_at_cache_max_keys():
    records = random_records(random.Random(6), 100, instruments=20)
    heads = _jsonlines.Cache()
    assert _rows_with(records, heads=heads, cache_max=7) == [row_of(r) for r in records]
    assert 1 <= len(heads) <= 7  # 20 instruments' heads met: emptied at 7 keys, again and again
