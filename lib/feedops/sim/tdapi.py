"""Drop-in for ``openctp_ctp.tdapi``: the trader API of ctp-sim (authentication, login,
instrument query).

Flow control as in the real library: one query in flight (a second
``ReqQryInstrument`` before the ``bIsLast`` response returns -2) and a local rate
limit (a query sooner than the front's query interval returns -3); the front itself
may answer ``OnRspError`` 90 "query not ready" (the sim's ``flow_control`` fault).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from . import protocol as P
from .client import SimClientBase
from .structs import REAL_TD, struct_classes

_EXPORTED, _FAST = struct_classes(REAL_TD)
globals().update(_EXPORTED)

#: THOST_TERT_RESTART / RESUME / QUICK (SubscribePublicTopic/SubscribePrivateTopic argument)
THOST_TERT_RESTART, THOST_TERT_RESUME, THOST_TERT_QUICK, THOST_TERT_NONE = 0, 1, 2, 3

if REAL_TD is not None:
    CThostFtdcTraderSpi = REAL_TD.CThostFtdcTraderSpi
else:
    class CThostFtdcTraderSpi:  # type: ignore[no-redef]
        """Fallback SPI base: every callback is a no-op (the binding's base class does the same)."""

        def OnFrontConnected(self) -> None: ...
        def OnFrontDisconnected(self, nReason: int) -> None: ...
        def OnHeartBeatWarning(self, nTimeLapse: int) -> None: ...
        def OnRspAuthenticate(self, pRspAuthenticateField, pRspInfo, nRequestID, bIsLast) -> None: ...
        def OnRspUserLogin(self, pRspUserLogin, pRspInfo, nRequestID, bIsLast) -> None: ...
        def OnRspUserLogout(self, pUserLogout, pRspInfo, nRequestID, bIsLast) -> None: ...
        def OnRspError(self, pRspInfo, nRequestID, bIsLast) -> None: ...
        def OnRspQryInstrument(self, pInstrument, pRspInfo, nRequestID, bIsLast) -> None: ...
        def OnRtnInstrumentStatus(self, pInstrumentStatus) -> None: ...


class CThostFtdcTraderApi:
    """The binding's abstract API class: ``CThostFtdcTraderApi.CreateFtdcTraderApi(flow_path)`` returns a :class:`SimTraderApi`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AttributeError("No constructor defined - class is abstract (use CreateFtdcTraderApi)")

    @staticmethod
    def CreateFtdcTraderApi(pszFlowPath: str = "", bIsProductionMode: bool = True) -> "SimTraderApi":
        return SimTraderApi(pszFlowPath)

    @staticmethod
    def GetApiVersion() -> str:
        from . import API_VERSION

        return API_VERSION


class SimTraderApi(SimClientBase, CThostFtdcTraderApi):
    """Same methods, arguments, return codes and callbacks as ``CThostFtdcTraderApi`` (the subset the feed uses)."""

    KIND = "td"

    def __init__(self, flow_path: str = "") -> None:
        super().__init__(flow_path, _FAST)
        self._query_lock = threading.Lock()
        self._query_in_flight = False
        self._last_query = 0.0
        self.query_interval = 0.0  # seconds between queries the front allows (sent in its welcome)

    def SubscribePublicTopic(self, nResumeType: int) -> None:
        pass

    def SubscribePrivateTopic(self, nResumeType: int) -> None:
        pass

    def ReqAuthenticate(self, pReqAuthenticateField: Any, nRequestID: int) -> int:
        return self._request("auth", nRequestID, self._struct_fields(pReqAuthenticateField))

    def ReqUserLogin(self, pReqUserLoginField: Any, nRequestID: int) -> int:
        return self._request("login", nRequestID, self._struct_fields(pReqUserLoginField))

    def ReqUserLogout(self, pUserLogout: Any, nRequestID: int) -> int:
        return self._request("logout", nRequestID, self._struct_fields(pUserLogout))

    def ReqQryInstrument(self, pQryInstrument: Any, nRequestID: int) -> int:
        with self._query_lock:
            if not self._ready:
                return P.RC_NETWORK
            if self._query_in_flight:
                return P.RC_IN_FLIGHT
            now = time.monotonic()
            if self._last_query and now - self._last_query < self.query_interval:
                return P.RC_RATE
            self._query_in_flight = True
            self._last_query = now
        rc = self._request("qry_instrument", nRequestID, self._struct_fields(pQryInstrument))
        if rc != P.RC_OK:
            with self._query_lock:
                self._query_in_flight = False
        return rc

    # ------------------------------------------------------------------ hooks
    def _on_welcome(self, info: dict[str, Any]) -> None:
        self.query_interval = float(info.get("query_interval", 0.0))

    def _on_disconnected(self) -> None:
        with self._query_lock:
            self._query_in_flight = False

    def _before_callback(self, callback: str, body: Any, info: Any, request_id: int, is_last: bool) -> None:
        super()._before_callback(callback, body, info, request_id, is_last)
        if is_last and callback in ("OnRspQryInstrument", "OnRspError"):
            with self._query_lock:
                self._query_in_flight = False


SimTdApi = SimTraderApi
