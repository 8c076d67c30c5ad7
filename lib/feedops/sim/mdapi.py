"""Drop-in for ``openctp_ctp.mdapi``: the market-data API of ctp-sim.

Use exactly like the binding::

    from feedops.sim import mdapi
    api = mdapi.CThostFtdcMdApi.CreateFtdcMdApi("var/flow/")
    api.RegisterSpi(spi)            # spi: a subclass of mdapi.CThostFtdcMdSpi
    api.RegisterFront("tcp://127.0.0.1:17001")
    api.Init()
    ...                             # OnFrontConnected -> ReqUserLogin -> OnRspUserLogin
    api.SubscribeMarketData([b"rb2601", b"m2601-C-3000"], 2)

``CThostFtdcMdSpi`` and the struct classes are re-exported from openctp-ctp when it
imports, so one SPI subclass serves both the real library and the sim. Ticks arrive
in ``OnRtnDepthMarketData`` as one reused struct object per instrument (the real
library reuses one buffer): copy the fields you keep.
"""

from __future__ import annotations

import json
from typing import Any

from . import protocol as P
from .client import SimClientBase
from .structs import NO_VALUE, REAL_MD, fast_class, struct_classes

_EXPORTED, _FAST = struct_classes(REAL_MD)
globals().update(_EXPORTED)
#: Depth structs handed to OnRtnDepthMarketData: prices without a value carry CTP's marker (DBL_MAX).
_DEPTH = fast_class(REAL_MD, "CThostFtdcDepthMarketDataField", float_default=NO_VALUE)

if REAL_MD is not None:
    CThostFtdcMdSpi = REAL_MD.CThostFtdcMdSpi
else:
    class CThostFtdcMdSpi:  # type: ignore[no-redef]
        """Fallback SPI base: every callback is a no-op (the binding's base class does the same)."""

        def OnFrontConnected(self) -> None: ...
        def OnFrontDisconnected(self, nReason: int) -> None: ...
        def OnHeartBeatWarning(self, nTimeLapse: int) -> None: ...
        def OnRspUserLogin(self, pRspUserLogin, pRspInfo, nRequestID, bIsLast) -> None: ...
        def OnRspUserLogout(self, pUserLogout, pRspInfo, nRequestID, bIsLast) -> None: ...
        def OnRspError(self, pRspInfo, nRequestID, bIsLast) -> None: ...
        def OnRspSubMarketData(self, pSpecificInstrument, pRspInfo, nRequestID, bIsLast) -> None: ...
        def OnRspUnSubMarketData(self, pSpecificInstrument, pRspInfo, nRequestID, bIsLast) -> None: ...
        def OnRtnDepthMarketData(self, pDepthMarketData) -> None: ...


class _Strings(dict):
    """bytes -> str cache for the few distinct date/time strings in ticks."""

    def __missing__(self, key: bytes) -> str:
        value = key.rstrip(b"\0").decode()
        if len(self) > 4096:
            self.clear()
        self[key] = value
        return value


def _instrument_ids(ppInstrumentID: Any, nCount: int | None) -> list[str]:
    if not isinstance(ppInstrumentID, (list, tuple)):
        raise TypeError("list must contain strings (a list of bytes, e.g. [b'rb2601'])")
    ids = list(ppInstrumentID if nCount is None else ppInstrumentID[:nCount])
    for item in ids:
        if not isinstance(item, bytes):
            raise TypeError(f"list must contain strings (bytes: pass b'rb2601', not {item!r})")
    return [item.decode(errors="replace") for item in ids]


class CThostFtdcMdApi:
    """The binding's abstract API class: ``CThostFtdcMdApi.CreateFtdcMdApi(flow_path)`` returns a :class:`SimMdApi`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AttributeError("No constructor defined - class is abstract (use CreateFtdcMdApi)")

    @staticmethod
    def CreateFtdcMdApi(pszFlowPath: str = "", bIsUsingUdp: bool = False, bIsMulticast: bool = False,
                        bIsProductionMode: bool = True) -> "SimMdApi":
        return SimMdApi(pszFlowPath)

    @staticmethod
    def GetApiVersion() -> str:
        from . import API_VERSION

        return API_VERSION


class SimMdApi(SimClientBase, CThostFtdcMdApi):
    """Same methods, arguments, return codes and callbacks as ``CThostFtdcMdApi``."""

    KIND = "md"

    def __init__(self, flow_path: str = "") -> None:
        super().__init__(flow_path, _FAST)
        self._depth: dict[int, Any] = {}  # instrument index on the wire -> reused depth struct
        self._strings = _Strings()
        self.ticks_received = 0

    def ReqUserLogin(self, pReqUserLoginField: Any, nRequestID: int) -> int:
        return self._request("login", nRequestID, self._struct_fields(pReqUserLoginField))

    def ReqUserLogout(self, pUserLogout: Any, nRequestID: int) -> int:
        return self._request("logout", nRequestID, self._struct_fields(pUserLogout))

    def SubscribeMarketData(self, ppInstrumentID: Any, nCount: int | None = None) -> int:
        ids = _instrument_ids(ppInstrumentID, nCount)
        return self._request("sub", 0, {"ids": ids})

    def UnSubscribeMarketData(self, ppInstrumentID: Any, nCount: int | None = None) -> int:
        ids = _instrument_ids(ppInstrumentID, nCount)
        return self._request("unsub", 0, {"ids": ids})

    # ------------------------------------------------------------------ tick path (hot)
    def _on_disconnected(self) -> None:
        self._depth.clear()

    def _dispatch_other(self, kind: int, payload: bytes) -> None:
        if kind == P.TICKS:
            self._on_ticks(payload)
        elif kind == P.STATIC:
            self._on_static(json.loads(payload))

    def _on_static(self, items: list[list[Any]]) -> None:
        for (index, instrument_id, exchange_id, exchange_inst_id, pre_settlement, pre_close, pre_open_interest,
             upper, lower) in items:
            struct = _DEPTH()
            struct.InstrumentID = instrument_id
            struct.ExchangeID = exchange_id
            struct.ExchangeInstID = exchange_inst_id
            struct.PreSettlementPrice = pre_settlement
            struct.PreClosePrice = pre_close
            struct.PreOpenInterest = pre_open_interest
            struct.UpperLimitPrice = upper
            struct.LowerLimitPrice = lower
            struct.PreDelta = struct.CurrDelta = 0.0  # volumes of levels 2-5 stay 0, their prices DBL_MAX
            self._depth[index] = struct

    def _on_ticks(self, payload: bytes) -> None:
        depth = self._depth
        strings = self._strings
        spi = self._spi
        callback = self._cb.get("OnRtnDepthMarketData") if spi is not None else None
        count = 0
        for (index, trading_day, action_day, update_time, millisec, last, volume, turnover, open_interest, open_,
             high, low, bid, bid_volume, ask, ask_volume, average) in P.TICK.iter_unpack(payload):
            s = depth.get(index)
            if s is None:
                continue
            s.TradingDay = strings[trading_day]
            s.ActionDay = strings[action_day]
            s.UpdateTime = strings[update_time]
            s.UpdateMillisec = millisec
            s.LastPrice = last
            s.Volume = volume
            s.Turnover = turnover
            s.OpenInterest = open_interest
            s.OpenPrice = open_
            s.HighestPrice = high
            s.LowestPrice = low
            s.BidPrice1 = bid
            s.BidVolume1 = bid_volume
            s.AskPrice1 = ask
            s.AskVolume1 = ask_volume
            s.AveragePrice = average
            count += 1
            if callback is not None:
                try:
                    callback(s)
                except Exception:  # printed and swallowed, like the binding
                    import traceback

                    traceback.print_exc()
            if self._spi is not spi:  # RegisterSpi(None) or Release() from inside a callback
                break
        self.ticks_received += count
