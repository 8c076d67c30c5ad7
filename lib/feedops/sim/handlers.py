"""The sim front's request handlers: authenticate, login, logout, (un)subscribe, instrument query.

:meth:`RequestHandlers.handle` dispatches a request of a session to ``_op_<op>`` and answers
an unknown or malformed one with OnRspError, as a real front does.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..calendar import BEIJING
from ..log import get_logger
from . import protocol as P
from .session import Session

if TYPE_CHECKING:
    from .server import SimServer

log = get_logger("ctp-sim")
QUERY_CHUNK = 2000


class RequestHandlers:
    """What each request of a session does to the front's state and what it answers."""

    def __init__(self, server: SimServer) -> None:
        self.server = server

    def handle(self, session: Session, op: str, req: int, data: dict[str, Any]) -> None:
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            session.rsp([["OnRspError", None, None, 1, "CTP:unsupported request", req, True]])
            return
        try:
            handler(session, req, data)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            log.warning("sim.request.malformed", "answering a malformed request with OnRspError", op=op,
                        error=type(exc).__name__, peer=session.peer)
            session.rsp([["OnRspError", None, None, 1, "CTP:malformed request", req, True]])

    def _op_auth(self, session: Session, req: int, data: dict[str, Any]) -> None:
        ok = "refuse_login" not in self.server.faults and self.server.config.credentials.auth_ok(data)
        session.authenticated = ok
        self.server.metrics.logins.labels("auth_ok" if ok else "auth_failed").inc()
        error = (0, "CTP:正确") if ok else P.ERR_AUTH_FAILED
        body = {k: data.get(k, "") for k in ("BrokerID", "UserID", "UserProductInfo", "AppID")}
        body["AppType"] = "1"
        session.rsp([["OnRspAuthenticate", "CThostFtdcRspAuthenticateField", body, error[0], error[1], req, True]])
        if not ok:
            log.warning("sim.auth.failed", "authentication refused", user_id=data.get("UserID", ""),
                        app_id=data.get("AppID", ""), fault="refuse_login" in self.server.faults)

    def _op_login(self, session: Session, req: int, data: dict[str, Any]) -> None:
        creds = self.server.config.credentials
        ok = "refuse_login" not in self.server.faults and creds.login_ok(data)
        error = P.ERR_INVALID_LOGIN
        if ok and session.kind == "td" and creds.app_id is not None and not session.authenticated:
            ok, error = False, P.ERR_AUTH_FAILED
        session.logged_in = ok
        self.server.metrics.logins.labels("ok" if ok else "failed").inc()
        now = _dt.datetime.fromtimestamp(self.server.clock(), BEIJING)
        trading_day = self.server.trading_day(now).strftime("%Y%m%d")
        stamp = now.strftime("%H:%M:%S")
        body = {"TradingDay": trading_day, "LoginTime": stamp, "BrokerID": data.get("BrokerID", ""),
                "UserID": data.get("UserID", ""), "SystemName": "ctp-sim", "FrontID": 1,
                "SessionID": session.session_id, "MaxOrderRef": "1", "SHFETime": stamp, "DCETime": stamp,
                "CZCETime": stamp, "FFEXTime": stamp, "INETime": stamp, "GFEXTime": stamp}
        code, msg = (0, "CTP:正确") if ok else error
        session.rsp([["OnRspUserLogin", "CThostFtdcRspUserLoginField", body if ok else {}, code, msg, req, True]])
        if ok:
            log.info("sim.login.ok", "login accepted", kind=session.kind, user_id=data.get("UserID", ""))
            if session.kind == "td":  # a trader session learns every product's trading phase after login
                session.rsp(self.server.market.status_items(list(range(len(self.server.market.product_keys))), stamp))
        else:
            log.warning("sim.login.failed", "login refused", kind=session.kind, user_id=data.get("UserID", ""),
                        fault="refuse_login" in self.server.faults, error_id=code)

    def _op_logout(self, session: Session, req: int, data: dict[str, Any]) -> None:
        session.logged_in = False
        body = {"BrokerID": data.get("BrokerID", ""), "UserID": data.get("UserID", "")}
        session.rsp([["OnRspUserLogout", "CThostFtdcUserLogoutField", body, 0, "CTP:正确", req, True]])

    def _op_sub(self, session: Session, req: int, data: dict[str, Any]) -> None:
        ids = [str(x) for x in data.get("ids", [])]
        if not session.logged_in:
            session.rsp([["OnRspError", None, None, *P.ERR_NOT_LOGGED_IN, req, True]])
            return
        items: list[list[Any]] = []
        static: list[list[Any]] = []
        new: set[int] = set()
        cap = self.server.config.max_sub
        for n, instrument_id in enumerate(ids):
            last = n == len(ids) - 1
            index = self.server.market.index.get(instrument_id)
            if index is not None and index not in session.subs and cap and len(session.subs) + len(new) >= cap:
                items.append(["OnRspSubMarketData", "CThostFtdcSpecificInstrumentField",
                              {"InstrumentID": instrument_id}, *P.ERR_SUB_TOO_MANY, req, last])
                continue
            if index is not None and index not in session.subs and index not in new:
                new.add(index)
                static.append(self.server.market.static_values(index))
            # unknown instruments are acknowledged and never tick, like a real front
            items.append(["OnRspSubMarketData", "CThostFtdcSpecificInstrumentField", {"InstrumentID": instrument_id},
                          0, "CTP:正确", req, last])
        if static:
            session.send(P.json_frame(P.STATIC, static))
        if items:
            session.rsp(items)
        if new:
            indexes = np.fromiter(new, dtype=np.intp, count=len(new))
            self.server.market.subscribers[indexes] += 1
            session.mask[indexes] = True
        session.subs |= new
        self.server.metrics.subscribed.set(sum(len(s.subs) for s in self.server.sessions))
        if "replay" in self.server.faults and new:
            self.server.replay(session, new)

    def _op_unsub(self, session: Session, req: int, data: dict[str, Any]) -> None:
        ids = [str(x) for x in data.get("ids", [])]
        index = self.server.market.index
        gone = {index[i] for i in ids if i in index} & session.subs
        self.server.unsubscribe(session, gone)
        session.rsp([["OnRspUnSubMarketData", "CThostFtdcSpecificInstrumentField", {"InstrumentID": i}, 0,
                      "CTP:正确", req, n == len(ids) - 1] for n, i in enumerate(ids)])

    def _op_qry_instrument(self, session: Session, req: int, data: dict[str, Any]) -> None:
        now = time.monotonic()
        refused = None
        if not session.logged_in:
            session.rsp([["OnRspError", None, None, *P.ERR_NOT_LOGGED_IN, req, True]])
            return
        if "flow_control" in self.server.faults:
            refused = "fault"
        elif session.last_query and now - session.last_query < self.server.config.query_interval_seconds * 0.9:
            refused = "rate"
        if refused:
            self.server.metrics.refusals.labels(refused).inc()
            log.info("sim.query.refused", "instrument query refused (flow control)", reason=refused)
            session.rsp([["OnRspError", None, None, *P.ERR_QUERY_NOT_READY, req, True]])
            return
        session.last_query = now
        wanted = {k: data.get(k) for k in ("InstrumentID", "ExchangeID", "ProductID") if data.get(k)}
        matches = [row for row in self.server.market.instrument_rows() if all(row[k] == v for k, v in wanted.items())]
        if not matches:
            session.rsp([["OnRspQryInstrument", None, None, None, "", req, True]])
            return
        for start in range(0, len(matches), QUERY_CHUNK):
            chunk = matches[start:start + QUERY_CHUNK]
            session.rsp([["OnRspQryInstrument", "CThostFtdcInstrumentField", row, None, "",
                          req, start + n == len(matches) - 1] for n, row in enumerate(chunk)])
