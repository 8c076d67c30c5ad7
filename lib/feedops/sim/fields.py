"""CTP struct field tables (names and kinds), taken from openctp-ctp 6.7.11.

Used only when the binding cannot be imported: the fallback pure-Python structs in
:mod:`feedops.sim.structs` get exactly these field names, so code written against
the sim runs unchanged on the real library. Kinds: ``s`` str, ``i`` int, ``f`` float.
Regenerate by reading the ``property`` members of the binding's classes.
"""

from __future__ import annotations

FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "CThostFtdcDepthMarketDataField": (
        ("TradingDay", "s"), ("reserve1", "s"), ("ExchangeID", "s"), ("reserve2", "s"), ("LastPrice", "f"),
        ("PreSettlementPrice", "f"), ("PreClosePrice", "f"), ("PreOpenInterest", "f"), ("OpenPrice", "f"),
        ("HighestPrice", "f"), ("LowestPrice", "f"), ("Volume", "i"), ("Turnover", "f"), ("OpenInterest", "f"),
        ("ClosePrice", "f"), ("SettlementPrice", "f"), ("UpperLimitPrice", "f"), ("LowerLimitPrice", "f"),
        ("PreDelta", "f"), ("CurrDelta", "f"), ("UpdateTime", "s"), ("UpdateMillisec", "i"), ("BidPrice1", "f"),
        ("BidVolume1", "i"), ("AskPrice1", "f"), ("AskVolume1", "i"), ("BidPrice2", "f"), ("BidVolume2", "i"),
        ("AskPrice2", "f"), ("AskVolume2", "i"), ("BidPrice3", "f"), ("BidVolume3", "i"), ("AskPrice3", "f"),
        ("AskVolume3", "i"), ("BidPrice4", "f"), ("BidVolume4", "i"), ("AskPrice4", "f"), ("AskVolume4", "i"),
        ("BidPrice5", "f"), ("BidVolume5", "i"), ("AskPrice5", "f"), ("AskVolume5", "i"), ("AveragePrice", "f"),
        ("ActionDay", "s"), ("InstrumentID", "s"), ("ExchangeInstID", "s"), ("BandingUpperPrice", "f"),
        ("BandingLowerPrice", "f"),
    ),
    "CThostFtdcInstrumentField": (
        ("reserve1", "s"), ("ExchangeID", "s"), ("InstrumentName", "s"), ("reserve2", "s"), ("reserve3", "s"),
        ("ProductClass", "s"), ("DeliveryYear", "i"), ("DeliveryMonth", "i"), ("MaxMarketOrderVolume", "i"),
        ("MinMarketOrderVolume", "i"), ("MaxLimitOrderVolume", "i"), ("MinLimitOrderVolume", "i"),
        ("VolumeMultiple", "i"), ("PriceTick", "f"), ("CreateDate", "s"), ("OpenDate", "s"), ("ExpireDate", "s"),
        ("StartDelivDate", "s"), ("EndDelivDate", "s"), ("InstLifePhase", "s"), ("IsTrading", "i"),
        ("PositionType", "s"), ("PositionDateType", "s"), ("LongMarginRatio", "f"), ("ShortMarginRatio", "f"),
        ("MaxMarginSideAlgorithm", "s"), ("reserve4", "s"), ("StrikePrice", "f"), ("OptionsType", "s"),
        ("UnderlyingMultiple", "f"), ("CombinationType", "s"), ("InstrumentID", "s"), ("ExchangeInstID", "s"),
        ("ProductID", "s"), ("UnderlyingInstrID", "s"),
    ),
    "CThostFtdcInstrumentStatusField": (
        ("ExchangeID", "s"), ("reserve1", "s"), ("SettlementGroupID", "s"), ("reserve2", "s"),
        ("InstrumentStatus", "s"), ("TradingSegmentSN", "i"), ("EnterTime", "s"), ("EnterReason", "s"),
        ("ExchangeInstID", "s"), ("InstrumentID", "s"),
    ),
    "CThostFtdcQryInstrumentField": (
        ("reserve1", "s"), ("ExchangeID", "s"), ("reserve2", "s"), ("reserve3", "s"), ("InstrumentID", "s"),
        ("ExchangeInstID", "s"), ("ProductID", "s"),
    ),
    "CThostFtdcReqAuthenticateField": (
        ("BrokerID", "s"), ("UserID", "s"), ("UserProductInfo", "s"), ("AuthCode", "s"), ("AppID", "s"),
    ),
    "CThostFtdcReqUserLoginField": (
        ("TradingDay", "s"), ("BrokerID", "s"), ("UserID", "s"), ("Password", "s"), ("UserProductInfo", "s"),
        ("InterfaceProductInfo", "s"), ("ProtocolInfo", "s"), ("MacAddress", "s"), ("OneTimePassword", "s"),
        ("reserve1", "s"), ("LoginRemark", "s"), ("ClientIPPort", "i"), ("ClientIPAddress", "s"),
    ),
    "CThostFtdcRspAuthenticateField": (
        ("BrokerID", "s"), ("UserID", "s"), ("UserProductInfo", "s"), ("AppID", "s"), ("AppType", "s"),
    ),
    "CThostFtdcRspInfoField": (
        ("ErrorID", "i"), ("ErrorMsg", "s"),
    ),
    "CThostFtdcRspUserLoginField": (
        ("TradingDay", "s"), ("LoginTime", "s"), ("BrokerID", "s"), ("UserID", "s"), ("SystemName", "s"),
        ("FrontID", "i"), ("SessionID", "i"), ("MaxOrderRef", "s"), ("SHFETime", "s"), ("DCETime", "s"),
        ("CZCETime", "s"), ("FFEXTime", "s"), ("INETime", "s"), ("SysVersion", "s"), ("GFEXTime", "s"),
        ("LoginDRIdentityID", "i"), ("UserDRIdentityID", "i"), ("LastLoginTime", "s"), ("ReserveInfo", "s"),
    ),
    "CThostFtdcSettlementInfoConfirmField": (
        ("BrokerID", "s"), ("InvestorID", "s"), ("ConfirmDate", "s"), ("ConfirmTime", "s"), ("SettlementID", "i"),
        ("AccountID", "s"), ("CurrencyID", "s"),
    ),
    "CThostFtdcSpecificInstrumentField": (
        ("reserve1", "s"), ("InstrumentID", "s"),
    ),
    "CThostFtdcUserLogoutField": (
        ("BrokerID", "s"), ("UserID", "s"),
    ),
}
