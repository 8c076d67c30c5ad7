"""The depth struct's layout (feedops.worker.layout) against the installed openctp-ctp binding."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from feedops.sim.structs import NATIVE, REAL_MD
from feedops.worker import layout

pytestmark = [pytest.mark.ctp, pytest.mark.skipif(
    not NATIVE, reason="openctp-ctp not importable (needs LOCPATH with zh_CN.GB18030: make bootstrap)")]


def test_the_table_is_what_the_binding_lays_out():
    table, size = layout.probe_layout(REAL_MD.CThostFtdcDepthMarketDataField)
    assert table == layout.DEPTH_FIELDS  # an upgrade that moves, resizes or adds a field fails here
    assert size == layout.DEPTH_SIZE == layout.DEPTH_DTYPE.itemsize


def test_every_field_reads_back_through_the_dtype():
    """Distinct values in every field of a real struct, copied as bytes and read with DEPTH_DTYPE."""
    s = REAL_MD.CThostFtdcDepthMarketDataField()
    expected = {}
    for i, (name, kind, _offset) in enumerate(layout.DEPTH_FIELDS):
        if kind == "<f8":
            value = 1000.25 + i
        elif kind == "<i4":
            value = -7 if name == "Volume" else 100_000 + i  # a negative int keeps its sign
        else:
            value = f"{name[:int(kind[1:]) - 3]}{i:02d}"
        setattr(s, name, value)
        expected[name] = value
    s.SettlementPrice = expected["SettlementPrice"] = float(np.finfo(np.float64).max)  # CTP's "no value"
    row = np.frombuffer(ctypes.string_at(int(s.this), layout.DEPTH_SIZE), dtype=layout.DEPTH_DTYPE)[0]
    for name, kind, _offset in layout.DEPTH_FIELDS:
        got = row[name]
        if kind.startswith("S"):
            got = got.decode(layout.ENCODING)
        assert got == expected[name] == getattr(s, name), name


def test_char_arrays_hold_gb18030_text():
    """The library sends GB18030; the binding's getter decodes it so: a byte copy decodes the same."""
    s = REAL_MD.CThostFtdcDepthMarketDataField()
    at = dict((name, offset) for name, _kind, offset in layout.DEPTH_FIELDS)["InstrumentID"]
    ctypes.memmove(int(s.this) + at, "沪铜2601".encode(layout.ENCODING) + b"\0", 9)
    row = np.frombuffer(ctypes.string_at(int(s.this), layout.DEPTH_SIZE), dtype=layout.DEPTH_DTYPE)[0]
    assert row["InstrumentID"].decode(layout.ENCODING) == s.InstrumentID == "沪铜2601"
