"""The simulated instrument universe: deterministic, realistic ids, bounded size."""

from __future__ import annotations

import datetime as dt
import functools
import re

import pytest

from feedops.sim import universe

AS_OF = dt.date(2025, 11, 20)  # next listed month: 2512


@functools.lru_cache(maxsize=None)
def full(seed: int = 1) -> tuple[universe.Instrument, ...]:
    return tuple(universe.generate(universe.MAX_INSTRUMENTS, seed, AS_OF))


def test_same_seed_same_universe_and_other_seed_other_prices():
    a = universe.generate(2000, 7, AS_OF)
    b = universe.generate(2000, 7, AS_OF)
    c = universe.generate(2000, 8, AS_OF)
    assert a == b
    assert [i.pre_settlement for i in a] != [i.pre_settlement for i in c]


def test_full_size_unique_and_every_exchange_and_class():
    instruments = full()
    assert len({i.instrument_id for i in instruments}) == universe.MAX_INSTRUMENTS
    assert {i.exchange for i in instruments} == {"SHFE", "INE", "DCE", "CZCE", "CFFEX", "GFEX"}
    for exchange in ("SHFE", "INE", "DCE", "CZCE", "CFFEX", "GFEX"):
        assert {i.product_class for i in instruments if i.exchange == exchange} == {"1", "2"}


@pytest.mark.parametrize("expected", ["rb2601", "cu2601", "SR601", "IF2512", "TS2603", "si2601", "sc2601",
                                      "cu2601C76000", "m2601-C-2900", "SR601C5800", "IO2512-C-3900",
                                      "si2601-C-12000"])
def test_realistic_ids(expected):
    assert expected in {i.instrument_id for i in full()}


def test_id_shapes_per_exchange():
    for inst in full():
        if inst.product_class == "1":
            pattern = {"CZCE": r"[A-Z]{2}\d{3}", "CFFEX": r"[A-Z]{1,2}\d{4}"}.get(inst.exchange, r"[a-z]{1,2}\d{4}")
        elif inst.exchange in ("SHFE", "INE"):
            pattern = r"[a-z]{2}\d{4}[CP]\d+(\.\d+)?"
        elif inst.exchange == "CZCE":
            pattern = r"[A-Z]{2}\d{3}[CP]\d+(\.\d+)?"
        else:
            pattern = r"[A-Za-z]{1,2}\d{4}-[CP]-\d+(\.\d+)?"
        assert re.fullmatch(pattern, inst.instrument_id), inst
        if inst.is_option:
            assert inst.underlying and inst.strike > 0 and inst.option_type in ("1", "2")
            assert inst.product == ("IO" if inst.underlying.startswith("IF") else inst.product)


def test_small_universe_starts_with_futures_of_every_product():
    small = universe.generate(100, 1, AS_OF)
    assert all(i.product_class == "1" for i in small)
    assert len({i.exchange for i in small}) >= 4


@pytest.mark.parametrize("size", [0, -1, universe.MAX_INSTRUMENTS + 1])
def test_size_out_of_range(size):
    with pytest.raises(ValueError, match="out of range"):
        universe.generate(size, 1, AS_OF)
