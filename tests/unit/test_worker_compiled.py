"""The pipeline's compiled batch helpers (lib/feedops/worker/_jsonlines.c): ids, group, copy_fields.

Each is compared with what numpy or a dict does on the same bytes, on random batches."""

from __future__ import annotations

import random

import numpy as np
import pytest

from feedops.worker.compiled import _jsonlines
from feedops.worker.dedupe import InstrumentIds


def _ids(table, column: np.ndarray) -> list[int]:
    size = column.dtype.itemsize
    return np.frombuffer(table.ids(np.ascontiguousarray(column), size, 0, size), dtype=np.int64).tolist()


def test_ids_are_dense_in_the_order_met_and_match_a_dict_on_random_keys():
    rnd = random.Random(7)
    names = [bytes(rnd.choice(b"abcxyz0129\x00\xff") for _ in range(rnd.randint(0, 12))) for _ in range(6000)]
    table, reference = _jsonlines.IdTable(), {}
    for start in range(0, len(names), 700):  # batches; the table grows past its first 1,024 slots and arena
        column = np.array(names[start:start + 700], dtype="S12")
        expected = [reference.setdefault(key, len(reference)) for key in column.tolist()]  # numpy's bytes: no trailing NULs
        assert _ids(table, column) == expected
    assert len(table) == len(reference) > 1024
    assert all(table.get(key) == i for key, i in reference.items())


def test_trailing_nuls_are_not_part_of_the_key_but_inner_ones_are():
    table = _jsonlines.IdTable()
    column = np.zeros(4, dtype="S8")
    column[:] = [b"cu2601", b"cu2601\x00\x00", b"cu\x00601", b""]
    assert _ids(table, column) == [0, 0, 1, 2]
    assert table.get(b"cu2601") == 0 and table.get(b"cu\x00601") == 1 and table.get(b"") == 2
    assert table.get(b"cu2601\x00") is None and table.add(b"rb2601") == 3 and table.add(b"cu2601") == 0


def test_instrument_ids_by_name_and_by_record_field_share_one_table():
    ids = InstrumentIds()
    assert ids.of_name("rb2601") == 0 and ids.id_of_name("zz9999") is None
    records = np.zeros(3, dtype=[("x", "i4"), ("instrument", "S81"), ("y", "f8")])
    records["instrument"] = [b"cu2601", b"rb2601", b"cu2601"]
    assert ids.of_field(records, "instrument").tolist() == [1, 0, 1]
    assert ids.of(records["instrument"]).tolist() == [1, 0, 1] and len(ids) == 2
    assert ids.of_name("\u94dc2601") == 2 and ids.id_of_name("\u94dc2601") == 2  # GB18030 bytes, as CTP sends them


@pytest.mark.parametrize("seed", range(5))
def test_group_matches_numpy_unique_in_the_order_first_met(seed):
    rnd = np.random.default_rng(seed)
    dtype = np.dtype([("a", "S3"), ("pad", "i4"), ("b", "<i8")])
    records = np.zeros(int(rnd.integers(0, 500)), dtype=dtype)
    records["a"] = rnd.choice([b"x", b"y", b"zz", b"x\x00y"], len(records))
    records["b"] = rnd.integers(0, 4, len(records))
    records["pad"] = rnd.integers(0, 1000, len(records))  # not part of the key
    fields = ((0, 3), (7, 8))
    firsts, inverse = (np.frombuffer(part, dtype=np.int64) for part in _jsonlines.group(records, dtype.itemsize, fields))
    keys = [(a, b) for a, b in records[["a", "b"]].tolist()]
    order = list(dict.fromkeys(keys))  # distinct keys, first met first
    assert [keys[i] for i in firsts] == order
    assert [order[g] for g in inverse] == keys
    assert all(inverse[i] == g for g, i in enumerate(firsts))


def test_copy_fields_copies_each_range_into_the_record_at_the_same_index():
    src = np.zeros(3, dtype=[("name", "S4"), ("v", "<f8"), ("n", "<i4")])
    src["name"], src["v"], src["n"] = [b"a", b"bb", b"ccc"], [1.5, -2.0, 3.25], [7, 8, 9]
    dst = np.zeros(3, dtype=[("n", "<i4"), ("v", "<f8"), ("name", "S4"), ("other", "<f8")])
    dst["other"] = 42.0
    plan = tuple((src.dtype.fields[f][1], dst.dtype.fields[f][1], src.dtype.fields[f][0].itemsize) for f in ("name", "v", "n"))
    assert _jsonlines.copy_fields(src, src.dtype.itemsize, dst, dst.dtype.itemsize, plan) is None
    assert dst.tolist() == [(7, 1.5, b"a", 42.0), (8, -2.0, b"bb", 42.0), (9, 3.25, b"ccc", 42.0)]


@pytest.mark.parametrize("call, message", [
    (lambda src, dst: _jsonlines.copy_fields(src, 16, dst, 16, ((0, 0, 8),)), "different numbers of records"),
    (lambda src, dst: _jsonlines.copy_fields(src, 16, dst[:2], 16, ((12, 0, 8),)), "field 0 lies outside"),
    (lambda src, dst: _jsonlines.copy_fields(src, 16, dst[:2], 16, ((0, 9, 8),)), "field 0 lies outside"),
    (lambda src, dst: _jsonlines.copy_fields(src, 7, dst[:2], 16, ()), "not a whole number of records"),
    (lambda src, dst: _jsonlines.group(src, 16, ((8, 9),)), "field 0 lies outside"),
    (lambda src, dst: _jsonlines.group(src, 16, ((0, 1),) * 65), "at most 64"),
    (lambda src, dst: _jsonlines.IdTable().ids(src, 16, 10, 8), "a field lies outside"),
])
def test_a_range_outside_the_records_is_refused_before_anything_is_read(call, message):
    src = np.zeros(2, dtype=[("a", "<f8"), ("b", "<f8")])
    dst = np.zeros(3, dtype=[("a", "<f8"), ("b", "<f8")])
    with pytest.raises(ValueError, match=message):
        call(src, dst)
    assert not dst.view(np.uint8).any()


def test_copy_fields_refuses_a_read_only_destination():
    src = np.zeros(2, dtype="<f8")
    dst = np.zeros(2, dtype="<f8")
    dst.flags.writeable = False
    with pytest.raises((TypeError, BufferError, ValueError)):
        _jsonlines.copy_fields(src, 8, dst, 8, ((0, 0, 8),))


def test_dedupe_refuses_an_id_without_state_before_it_moves_any():
    has, seeded = np.zeros(2, dtype=bool), np.zeros(2, dtype=bool)
    day, volume, ts = np.zeros(2, dtype=np.int64), np.zeros(2), np.zeros(2)
    state = (has, day, volume, ts, seeded)
    ticks = (np.array([0, 2], dtype=np.int64), np.array([20261127] * 2, dtype=np.int64), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="instrument id 2 has no state"):
        _jsonlines.dedupe(*ticks, 0, *state, (1, 2, 3, 4, 5))
    assert not has.any() and not day.any()  # the first tick, valid, was not applied either
    with pytest.raises(ValueError, match="as many"):
        _jsonlines.dedupe(ticks[0], ticks[1][:1], ticks[2], ticks[3], 0, *state, (1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match="as long as each other"):
        _jsonlines.dedupe(*ticks, 0, has, day[:1], volume, ts, seeded, (1, 2, 3, 4, 5))
    reasons = _jsonlines.dedupe(np.array([1, 1], dtype=np.int64), ticks[1], np.array([5.0, 4.0]), np.array([1.0, 2.0]),
                                0, *state, (1, 2, 3, 4, 5))
    assert np.frombuffer(reasons, dtype=np.int64).tolist() == [0, 5]  # the second: volume went down
    assert has.tolist() == [False, True] and volume.tolist() == [0.0, 5.0]
