"""ctp-sim's struct classes: the binding's own when it imports, same field names otherwise."""

from __future__ import annotations

import sys

import pytest

from feedops.sim import mdapi, structs, tdapi
from feedops.sim.fields import FIELDS


def test_fallback_structs_have_the_bindings_field_names_and_defaults():
    plain = structs._plain("CThostFtdcDepthMarketDataField")()
    assert (plain.InstrumentID, plain.LastPrice, plain.Volume) == ("", 0.0, 0)
    with pytest.raises(AttributeError):
        plain.NoSuchField = 1  # slots only: a misspelling cannot silently create a field
    names = {n for n, _ in FIELDS["CThostFtdcInstrumentField"]}
    assert {"InstrumentID", "ExchangeID", "ProductID", "ProductClass", "PriceTick", "StrikePrice"} <= names


def test_depth_structs_mark_missing_prices_with_dbl_max():
    depth = mdapi._BLANK[0]  # an instrument's struct before its first tick (CTP's layout)
    assert depth["BidPrice5"] == sys.float_info.max == structs.NO_VALUE
    assert depth["BidVolume5"] == 0 and depth["TradingDay"] == b""


@pytest.mark.skipif(not structs.NATIVE, reason="openctp-ctp not importable (needs LOCPATH with zh_CN.GB18030: make bootstrap)")
def test_fast_structs_are_instances_of_the_bindings_classes():
    fast = mdapi._FAST["CThostFtdcDepthMarketDataField"]()
    assert isinstance(fast, structs.REAL_MD.CThostFtdcDepthMarketDataField)
    fast.LastPrice = 12.5
    assert fast.LastPrice == 12.5
    info = tdapi._FAST["CThostFtdcRspInfoField"]()
    assert isinstance(info, structs.REAL_TD.CThostFtdcRspInfoField) and info.ErrorID == 0


def test_fields_of_reads_request_structs():
    req = tdapi.CThostFtdcReqUserLoginField()
    req.BrokerID, req.UserID = "9999", "u1"
    values = structs.fields_of(req)
    assert values["BrokerID"] == "9999" and values["UserID"] == "u1" and values["Password"] == ""
