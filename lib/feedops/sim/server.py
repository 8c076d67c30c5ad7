"""The ctp-sim front: one TCP address serving market-data and trader sessions.

An asyncio server (one thread) holds the sessions, generates depth snapshots every
``tick_interval_ms`` per subscribed, open, active instrument (spread evenly over
10 ms slices, many records per frame) and applies the faults. Faults switch at
start (:class:`SimConfig.faults`) and at run time (:meth:`SimServer.set_fault`,
reached through the control endpoint in :mod:`feedops.sim.control`).

Dates follow the real exchanges (docs/ops/ctp-reference.md): SHFE/INE/CFFEX/GFEX send the trading
day and the calendar date; DCE sends the trading day as ActionDay too; CZCE sends
the calendar date as TradingDay. These differ only while the trading day is not the
calendar date (night sessions, weekends); the ``date_quirks`` fault makes the sim
date its ticks as in a night session (trading day = the next trading day) so the
quirks show at any hour.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from prometheus_client import CollectorRegistry

from .. import clock as clock_mod
from .. import metric_names as M
from ..calendar import BEIJING, TradingCalendar
from ..log import get_logger
from . import protocol as P
from .universe import MAX_INSTRUMENTS, Instrument, generate

log = get_logger("ctp-sim")

FAULTS: dict[str, str] = {
    "disconnect": "drop every connection and close new ones at once (clients see OnFrontDisconnected(4097))",
    "silent": "accept connections but send nothing (no OnFrontConnected; OnHeartBeatWarning later)",
    "refuse_login": "reject every login and authentication (ErrorID 3 / 63)",
    "flow_control": "refuse instrument queries with OnRspError 90 'query not ready'",
    "dead_instruments": "a share of instruments (dead_share) never ticks",
    "replay": "re-send already-sent ticks (the morning replay), now and after every subscription",
    "date_quirks": "date ticks as in a night session so DCE/CZCE date quirks show at any hour",
    "burst": "multiply the tick rate by burst_factor",
    "slow": "deliver everything slow_delay_ms late",
}
SLICE_SECONDS = 0.01
INACTIVE_EVERY = 60  # an inactive (illiquid) instrument ticks once per this many rounds (30 s at 500 ms)
QUERY_CHUNK = 2000
TICK_CHUNK = 20000
TICK_DTYPE = P.TICK_DTYPE
NO_VALUE = float(np.finfo(np.float64).max)  # CTP's "no value" marker (a level the exchange does not send)


class ListenError(OSError):
    """The listen address cannot be bound (port in use, address not local)."""


@dataclass
class Credentials:
    """What the front accepts; None fields accept anything. Secrets stay SecretStr-like (get_secret_value)."""

    broker_id: str | None = None
    user_id: str | None = None
    password: Any = None  # SecretStr | None
    app_id: str | None = None
    auth_code: Any = None  # SecretStr | None

    @staticmethod
    def _secret(value: Any) -> str | None:
        return None if value is None else value.get_secret_value()

    def login_ok(self, data: dict[str, Any]) -> bool:
        return ((self.broker_id is None or data.get("BrokerID") == self.broker_id)
                and (self.user_id is None or data.get("UserID") == self.user_id)
                and (self.password is None or data.get("Password") == self._secret(self.password)))

    def auth_ok(self, data: dict[str, Any]) -> bool:
        return ((self.app_id is None or data.get("AppID") == self.app_id)
                and (self.auth_code is None or data.get("AuthCode") == self._secret(self.auth_code)))


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 17001
    instruments: int = 2000
    seed: int = 20261127
    credentials: Credentials = field(default_factory=Credentials)
    faults: set[str] = field(default_factory=set)
    tick_interval_ms: float = 500.0
    active_share: float = 1.0
    burst_factor: float = 4.0
    dead_share: float = 0.1
    slow_delay_ms: float = 2000.0
    max_sub: int = 0  # instruments per session; 0 = unlimited (MaxSubInstCnt)
    query_interval_seconds: float = 0.5  # the front's query rate (QryFreq 2/s)
    replay_depth: int = 20  # ticks kept per instrument for the replay fault
    heartbeat_seconds: float = 5.0
    send_buffer_max_bytes: int = 64 << 20  # a session whose unsent data exceeds this is dropped

    def validate(self) -> None:
        """Raise ValueError naming the option and the fix."""
        if not 1 <= self.instruments <= MAX_INSTRUMENTS:
            raise ValueError(f"--instruments {self.instruments} is out of range; fix: use 1-{MAX_INSTRUMENTS}")
        unknown = sorted(set(self.faults) - set(FAULTS))
        if unknown:
            raise ValueError(f"--fault: unknown fault {', '.join(unknown)}; fix: use one of {', '.join(FAULTS)}")
        if not 0 < self.active_share <= 1:
            raise ValueError(f"--active-share {self.active_share} is out of range; fix: use a share in (0, 1]")
        if not 0 <= self.dead_share <= 1:
            raise ValueError(f"--dead-share {self.dead_share} is out of range; fix: use a share in [0, 1]")
        if not 1 <= self.burst_factor <= 50:
            raise ValueError(f"--burst-factor {self.burst_factor} is out of range; fix: use 1-50")
        if not 20 <= self.tick_interval_ms <= 60_000:
            raise ValueError(f"--tick-interval-ms {self.tick_interval_ms} is out of range; fix: use 20-60000")
        if not 1 <= self.replay_depth <= 1000:
            raise ValueError(f"replay_depth {self.replay_depth} is out of range; fix: use 1-1000")
        if self.slow_delay_ms < 0 or self.max_sub < 0:
            raise ValueError("--slow-delay-ms and --max-sub must not be negative; fix: use 0 or more")


def _share(index: int, salt: int) -> float:
    """A deterministic pseudo-random number in [0, 1) per instrument."""
    return ((index * 2654435761 + salt * 40503) % 1_000_003) / 1_000_003


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ticks = M.SIM_TICKS_SENT.create(r)
        self.sessions = M.SIM_SESSIONS.create(r)
        self.logins = M.SIM_LOGINS.create(r)
        self.subscribed = M.SIM_SUBSCRIBED.create(r)
        self.fault = M.SIM_FAULT_ACTIVE.create(r)
        self.refusals = M.SIM_QUERY_REFUSALS.create(r)
        for kind in ("md", "td"):
            self.sessions.labels(kind).set(0)
        for name in FAULTS:
            self.fault.labels(name).set(0)


class Session(asyncio.Protocol):
    """One client connection (market data or trader)."""

    def __init__(self, server: "SimServer") -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.kind = ""  # md | td once HELLO arrived
        self.welcomed = False
        self.logged_in = False
        self.authenticated = False
        self.subs: set[int] = set()
        self.mask: np.ndarray = np.zeros(len(server.universe), dtype=bool)  # subs, for the tick path
        self.buf = bytearray()
        self.session_id = 0
        self.last_query = 0.0
        self.peer = ""

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        if "disconnect" in self.server.faults:
            transport.abort()  # accept, then close: the client sees 4097
            return
        self.server.add_session(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            frames = P.split_frames(self.buf)
        except P.FrameError:
            log.warning("sim.session.garbage", "closing a connection that sent non-protocol bytes", peer=self.peer)
            self.close()
            return
        for kind, payload in frames:
            try:
                message = json.loads(payload) if payload else {}
                if not isinstance(message, dict) or not isinstance(message.get("data", {}), dict):
                    raise ValueError("not an object")
                request_id = int(message.get("req", 0))
            except (ValueError, TypeError):
                log.warning("sim.session.garbage", "closing a connection that sent a malformed request", peer=self.peer)
                self.close()
                return
            if kind == P.HELLO:
                self.kind = "td" if message.get("kind") == "td" else "md"
                self.server.session_kind_changed()
                self.server.welcome(self)
            elif kind == P.REQ and self.welcomed and "silent" not in self.server.faults:
                self.server.handle_request(self, str(message.get("op", "")), request_id, message.get("data") or {})

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.remove_session(self)

    # helpers
    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if "slow" in self.server.faults and self.server.config.slow_delay_ms > 0:
            self.server.delay(self, data)
            return
        transport.write(data)
        if transport.get_write_buffer_size() > self.server.config.send_buffer_max_bytes:
            log.warning("sim.session.overflow", "send buffer overflow: dropping the session (as a CTP front does)",
                        peer=self.peer, kind=self.kind)
            transport.abort()

    def rsp(self, items: list[list[Any]]) -> None:
        self.send(P.json_frame(P.RSP, items))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class SimServer:
    """The simulator front. Create, ``await start()``, ``await stop()``; all methods run on its event loop."""

    def __init__(self, config: SimConfig, calendar: TradingCalendar | None = None, *,
                 clock: Callable[[], float] = clock_mod.time) -> None:
        config.validate()
        self.config = config
        self.calendar = calendar or TradingCalendar("always-open")
        self.clock = clock
        self.metrics = _Metrics()
        self.faults: set[str] = set()
        self.sessions: set[Session] = set()
        self._next_session = 1
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._delayed: deque[tuple[float, Session, bytes]] = deque()
        self.started_at = time.time()
        self.ticks_sent = 0
        self.trading_day_at_start = self.calendar.trading_day(_dt.datetime.fromtimestamp(clock(), BEIJING))
        self.universe: list[Instrument] = generate(config.instruments, config.seed, self.trading_day_at_start)
        self.index = {inst.instrument_id: i for i, inst in enumerate(self.universe)}
        self._build_state()
        self._instrument_rows: list[dict[str, Any]] | None = None  # built on the first query
        self._slice_no = 0
        for name in config.faults:
            self._apply_fault(name, True)
        self._clock_second = -1
        self._refresh_clock(_dt.datetime.fromtimestamp(self.clock(), BEIJING))  # dates and phases from the start

    # ------------------------------------------------------------------ state
    def _build_state(self) -> None:
        """Per-instrument state as numpy arrays: a slice's ticks are generated in a few vector operations."""
        n = len(self.universe)
        self.rng = np.random.default_rng(self.config.seed)
        self.exchanges = sorted({inst.exchange for inst in self.universe})
        exchange_no = {exchange: n for n, exchange in enumerate(self.exchanges)}
        self.exchange_of = np.array([exchange_no[inst.exchange] for inst in self.universe], dtype=np.intp)
        self.product_keys = sorted({(inst.exchange, inst.underlying_product) for inst in self.universe})
        product_no = {key: n for n, key in enumerate(self.product_keys)}
        self.product_of = np.array([product_no[(inst.exchange, inst.underlying_product)] for inst in self.universe],
                                   dtype=np.intp)
        self.product_open = np.zeros(len(self.product_keys), dtype=bool)  # set by the first clock refresh
        self.tick_size = np.array([inst.price_tick for inst in self.universe], dtype=float)
        self.deep = np.array([inst.exchange in ("SHFE", "INE") for inst in self.universe], dtype=bool)
        settle = np.array([inst.pre_settlement for inst in self.universe], dtype=float)
        tick = self.tick_size
        self.upper = np.round(settle * 1.08 / tick) * tick
        self.lower = np.maximum(tick, np.round(settle * 0.92 / tick) * tick)
        self.last = settle.copy()
        self.open_price = settle.copy()
        self.high = settle.copy()
        self.low = settle.copy()
        self.volume = np.zeros(n, dtype=np.int64)
        self.turnover = np.zeros(n, dtype=float)
        self.open_interest = np.array([float(1000 + (i * 37) % 5000) for i in range(n)])
        self.active = np.array([_share(i, 1) < self.config.active_share for i in range(n)], dtype=bool)
        self.dead = np.array([_share(i, 2) < self.config.dead_share for i in range(n)], dtype=bool)
        self.subscribers = np.zeros(n, dtype=np.int32)
        keep = self.config.replay_depth
        self.history = np.zeros((n, keep), dtype=TICK_DTYPE)  # ring of the last ticks sent, for the replay fault
        self.history_next = np.zeros(n, dtype=np.intp)
        self.history_len = np.zeros(n, dtype=np.intp)
        self._slice_cache: dict[tuple[int, int], np.ndarray] = {}

    def static_values(self, index: int) -> list[Any]:
        """The per-instrument part of the depth struct, in :data:`protocol.STATIC_FIELDS` order."""
        inst = self.universe[index]
        return [index, inst.instrument_id, inst.exchange, inst.instrument_id, inst.pre_settlement,
                inst.pre_settlement, float(self.open_interest[index]), float(self.upper[index]),
                float(self.lower[index])]

    def instrument_fields(self, inst: Instrument) -> dict[str, Any]:
        expire = _dt.date(inst.delivery_year, inst.delivery_month, 15).strftime("%Y%m%d")
        return {"InstrumentID": inst.instrument_id, "ExchangeID": inst.exchange, "InstrumentName": inst.instrument_id,
                "ExchangeInstID": inst.instrument_id, "ProductID": inst.product, "ProductClass": inst.product_class,
                "DeliveryYear": inst.delivery_year, "DeliveryMonth": inst.delivery_month,
                "MaxMarketOrderVolume": 30, "MinMarketOrderVolume": 1, "MaxLimitOrderVolume": 500,
                "MinLimitOrderVolume": 1, "VolumeMultiple": 10, "PriceTick": inst.price_tick,
                "CreateDate": "20250101", "OpenDate": "20250101", "ExpireDate": expire, "StartDelivDate": expire,
                "EndDelivDate": expire, "InstLifePhase": "1", "IsTrading": 1, "PositionType": "2",
                "PositionDateType": "2", "LongMarginRatio": 0.1, "ShortMarginRatio": 0.1,
                "MaxMarginSideAlgorithm": "1", "UnderlyingInstrID": inst.underlying, "StrikePrice": inst.strike,
                "OptionsType": inst.option_type, "UnderlyingMultiple": 1.0 if inst.is_option else 0.0,
                "CombinationType": "0"}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(lambda: Session(self), self.config.host, self.config.port,
                                                    reuse_address=True)
        except OSError as exc:
            raise ListenError(exc.errno, f"cannot listen on {self.config.host}:{self.config.port}: "
                                         f"{exc.strerror or exc}") from None
        sockets = self._server.sockets or []
        if sockets:
            self.config.port = sockets[0].getsockname()[1]
        self._tasks = [asyncio.create_task(self._ticker()), asyncio.create_task(self._heartbeats())]
        log.info("sim.listen", "ctp-sim front listening", listen=f"{self.config.host}:{self.config.port}",
                 instruments=len(self.universe), faults=sorted(self.faults),
                 calendar=self.calendar.mode, trading_day=self.trading_day_at_start.strftime("%Y%m%d"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.close()
        if self._server is not None:
            await self._server.wait_closed()
        log.info("sim.stopped", "ctp-sim front stopped", ticks_sent=self.ticks_sent)

    # ------------------------------------------------------------------ sessions
    def add_session(self, session: Session) -> None:
        session.session_id = self._next_session
        self._next_session += 1
        self.sessions.add(session)
        log.debug("sim.session.open", "connection accepted", peer=session.peer)

    def remove_session(self, session: Session) -> None:
        if session not in self.sessions:
            return
        self.sessions.discard(session)
        self._unsubscribe(session, set(session.subs))
        self.session_kind_changed()
        log.info("sim.session.closed", "session closed", peer=session.peer, kind=session.kind or "none")

    def session_kind_changed(self) -> None:
        for kind in ("md", "td"):
            self.metrics.sessions.labels(kind).set(sum(1 for s in self.sessions if s.kind == kind))

    def welcome(self, session: Session) -> None:
        if "silent" in self.faults or session.welcomed or not session.kind:
            return
        session.welcomed = True
        session.send(P.json_frame(P.WELCOME, {"front_id": 1, "session_id": session.session_id,
                                              "query_interval": self.config.query_interval_seconds}))
        log.info("sim.session.open", "front connected", peer=session.peer, kind=session.kind)

    def delay(self, session: Session, data: bytes) -> None:
        self._delayed.append((time.monotonic() + self.config.slow_delay_ms / 1000, session, data))

    def _flush_delayed(self, everything: bool = False) -> None:
        now = time.monotonic()
        delayed = self._delayed
        while delayed and (everything or delayed[0][0] <= now):
            _, session, data = delayed.popleft()
            transport = session.transport
            if transport is not None and not transport.is_closing():
                transport.write(data)

    # ------------------------------------------------------------------ faults
    def set_fault(self, name: str, on: bool) -> None:
        if name not in FAULTS:
            raise KeyError(f"unknown fault {name!r}; use one of {', '.join(FAULTS)}")
        if (name in self.faults) == on:
            return
        self._apply_fault(name, on)
        log.warning("sim.fault.on" if on else "sim.fault.off", f"fault {name} {'on' if on else 'off'}",
                    fault=name, description=FAULTS[name])

    def set_burst_factor(self, factor: float) -> None:
        """Change the burst fault's rate multiplier at run time (ValueError naming the range when out of it)."""
        if not 1 <= factor <= 50:
            raise ValueError(f"burst factor {factor} is out of range; fix: use 1-50")
        self.config.burst_factor = factor
        log.info("sim.burst.factor", f"burst factor set to {factor}", burst_factor=factor)

    def _apply_fault(self, name: str, on: bool) -> None:
        if on:
            self.faults.add(name)
        else:
            self.faults.discard(name)
        self.metrics.fault.labels(name).set(1 if on else 0)
        if name == "disconnect" and on:
            for session in list(self.sessions):
                session.close()
        elif name == "silent" and not on:
            for session in list(self.sessions):
                self.welcome(session)
        elif name == "slow" and not on:
            self._flush_delayed(everything=True)
        elif name == "replay" and on:
            for session in list(self.sessions):
                self._replay(session, session.subs)
        elif name == "date_quirks":
            self._clock_second = -1  # recompute dates now

    # ------------------------------------------------------------------ requests
    def handle_request(self, session: Session, op: str, req: int, data: dict[str, Any]) -> None:
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
        ok = "refuse_login" not in self.faults and self.config.credentials.auth_ok(data)
        session.authenticated = ok
        self.metrics.logins.labels("auth_ok" if ok else "auth_failed").inc()
        error = (0, "CTP:正确") if ok else P.ERR_AUTH_FAILED
        body = {k: data.get(k, "") for k in ("BrokerID", "UserID", "UserProductInfo", "AppID")}
        body["AppType"] = "1"
        session.rsp([["OnRspAuthenticate", "CThostFtdcRspAuthenticateField", body, error[0], error[1], req, True]])
        if not ok:
            log.warning("sim.auth.failed", "authentication refused", user_id=data.get("UserID", ""),
                        app_id=data.get("AppID", ""), fault="refuse_login" in self.faults)

    def _op_login(self, session: Session, req: int, data: dict[str, Any]) -> None:
        creds = self.config.credentials
        ok = "refuse_login" not in self.faults and creds.login_ok(data)
        error = P.ERR_INVALID_LOGIN
        if ok and session.kind == "td" and creds.app_id is not None and not session.authenticated:
            ok, error = False, P.ERR_AUTH_FAILED
        session.logged_in = ok
        self.metrics.logins.labels("ok" if ok else "failed").inc()
        now = _dt.datetime.fromtimestamp(self.clock(), BEIJING)
        trading_day = self._trading_day(now).strftime("%Y%m%d")
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
                session.rsp(self._status_items(list(range(len(self.product_keys))), stamp))
        else:
            log.warning("sim.login.failed", "login refused", kind=session.kind, user_id=data.get("UserID", ""),
                        fault="refuse_login" in self.faults, error_id=code)

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
        cap = self.config.max_sub
        for n, instrument_id in enumerate(ids):
            last = n == len(ids) - 1
            index = self.index.get(instrument_id)
            if index is not None and index not in session.subs and cap and len(session.subs) + len(new) >= cap:
                items.append(["OnRspSubMarketData", "CThostFtdcSpecificInstrumentField",
                              {"InstrumentID": instrument_id}, *P.ERR_SUB_TOO_MANY, req, last])
                continue
            if index is not None and index not in session.subs and index not in new:
                new.add(index)
                static.append(self.static_values(index))
            # unknown instruments are acknowledged and never tick, like a real front
            items.append(["OnRspSubMarketData", "CThostFtdcSpecificInstrumentField", {"InstrumentID": instrument_id},
                          0, "CTP:正确", req, last])
        if static:
            session.send(P.json_frame(P.STATIC, static))
        if items:
            session.rsp(items)
        if new:
            indexes = np.fromiter(new, dtype=np.intp, count=len(new))
            self.subscribers[indexes] += 1
            session.mask[indexes] = True
        session.subs |= new
        self.metrics.subscribed.set(sum(len(s.subs) for s in self.sessions))
        if "replay" in self.faults and new:
            self._replay(session, new)

    def _op_unsub(self, session: Session, req: int, data: dict[str, Any]) -> None:
        ids = [str(x) for x in data.get("ids", [])]
        gone = {self.index[i] for i in ids if i in self.index} & session.subs
        self._unsubscribe(session, gone)
        session.rsp([["OnRspUnSubMarketData", "CThostFtdcSpecificInstrumentField", {"InstrumentID": i}, 0,
                      "CTP:正确", req, n == len(ids) - 1] for n, i in enumerate(ids)])

    def _unsubscribe(self, session: Session, gone: set[int]) -> None:
        if gone:
            indexes = np.fromiter(gone, dtype=np.intp, count=len(gone))
            self.subscribers[indexes] -= 1
            session.mask[indexes] = False
        session.subs -= gone
        self.metrics.subscribed.set(sum(len(s.subs) for s in self.sessions))

    def _op_qry_instrument(self, session: Session, req: int, data: dict[str, Any]) -> None:
        now = time.monotonic()
        refused = None
        if not session.logged_in:
            session.rsp([["OnRspError", None, None, *P.ERR_NOT_LOGGED_IN, req, True]])
            return
        if "flow_control" in self.faults:
            refused = "fault"
        elif session.last_query and now - session.last_query < self.config.query_interval_seconds * 0.9:
            refused = "rate"
        if refused:
            self.metrics.refusals.labels(refused).inc()
            log.info("sim.query.refused", "instrument query refused (flow control)", reason=refused)
            session.rsp([["OnRspError", None, None, *P.ERR_QUERY_NOT_READY, req, True]])
            return
        session.last_query = now
        wanted = {k: data.get(k) for k in ("InstrumentID", "ExchangeID", "ProductID") if data.get(k)}
        if self._instrument_rows is None:
            self._instrument_rows = [self.instrument_fields(inst) for inst in self.universe]
        matches = [row for row in self._instrument_rows if all(row[k] == v for k, v in wanted.items())]
        if not matches:
            session.rsp([["OnRspQryInstrument", None, None, None, "", req, True]])
            return
        for start in range(0, len(matches), QUERY_CHUNK):
            chunk = matches[start:start + QUERY_CHUNK]
            session.rsp([["OnRspQryInstrument", "CThostFtdcInstrumentField", row, None, "",
                          req, start + n == len(matches) - 1] for n, row in enumerate(chunk)])

    # ------------------------------------------------------------------ ticks
    def _trading_day(self, now: _dt.datetime) -> _dt.date:
        if "date_quirks" in self.faults:
            return self.calendar.next_trading_day(now.date())
        return self.calendar.trading_day(now)

    def _refresh_clock(self, now: _dt.datetime) -> None:
        """Once a second: dates per exchange (with the exchanges' quirks) and which products are open."""
        trading_day = self._trading_day(now).strftime("%Y%m%d").encode()
        calendar_day = now.strftime("%Y%m%d").encode()
        dates = []
        for exchange in self.exchanges:
            if exchange == "DCE":
                dates.append((trading_day, trading_day))
            elif exchange == "CZCE":
                dates.append((calendar_day, calendar_day))
            else:
                dates.append((trading_day, calendar_day))
        self.dates = dates
        self._trading_days = np.array([d[0] for d in dates], dtype="S8")
        self._action_days = np.array([d[1] for d in dates], dtype="S8")
        self.update_time = now.strftime("%H:%M:%S").encode()
        if self.calendar.always_open:
            product_open = np.ones(len(self.product_keys), dtype=bool)
        else:
            product_open = np.array([self.calendar.is_open(ex, product, now) for ex, product in self.product_keys],
                                    dtype=bool)
        changed = np.flatnonzero(self.product_open != product_open).tolist()
        self.product_open = product_open
        if changed:
            stamp = now.strftime("%H:%M:%S")
            for session in self.sessions:
                if session.kind == "td" and session.logged_in:
                    session.rsp(self._status_items(changed, stamp))

    def _status_items(self, products: list[int], stamp: str) -> list[list[Any]]:
        """OnRtnInstrumentStatus per product: '2' continuous trading while open, '6' closed."""
        return [["OnRtnInstrumentStatus", "CThostFtdcInstrumentStatusField",
                 {"ExchangeID": self.product_keys[n][0], "InstrumentID": self.product_keys[n][1],
                  "InstrumentStatus": "2" if self.product_open[n] else "6", "EnterTime": stamp, "EnterReason": "1",
                  "TradingSegmentSN": 1}, None, "", 0, True] for n in products]

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            next_at += SLICE_SECONDS
            delay = next_at - loop.time()
            await asyncio.sleep(max(0.0, delay))  # sleep(0) still lets requests in when behind
            if delay < -1.0:
                next_at = loop.time()  # fell far behind: skip rather than burst
            try:
                self._tick_slice()
                if self._delayed:
                    self._flush_delayed()
            except Exception as exc:  # keep the front alive; a bug shows in the log
                log.error("sim.tick.error", "tick generation failed", error=repr(exc))

    def slices_per_round(self) -> int:
        burst = self.config.burst_factor if "burst" in self.faults else 1.0
        return max(1, round(self.config.tick_interval_ms / burst / (SLICE_SECONDS * 1000)))

    def _tick_slice(self) -> None:
        wall = self.clock()
        now = _dt.datetime.fromtimestamp(wall, BEIJING)
        second = int(wall)
        if second != self._clock_second:
            self._clock_second = second
            self._refresh_clock(now)
        self._slice_no += 1
        n_slices = self.slices_per_round()
        bucket = self._slice_no % n_slices
        round_no = self._slice_no // n_slices
        candidates = self._candidates(bucket, n_slices)
        wanted = (self.subscribers[candidates] > 0) & self.product_open[self.product_of[candidates]]
        if "dead_instruments" in self.faults:
            wanted &= ~self.dead[candidates]
        wanted &= self.active[candidates] | ((round_no + candidates) % INACTIVE_EVERY == 0)
        due = candidates[wanted]
        if not len(due):
            return
        millisec = 0 if (wall % 1.0) < 0.5 else 500
        self._distribute(due, self._make_ticks(due, self.update_time, millisec))

    def _candidates(self, bucket: int, n_slices: int) -> np.ndarray:
        """Instruments of one slice (every n_slices-th from ``bucket``), cached per slicing."""
        key = (n_slices, bucket)
        found = self._slice_cache.get(key)
        if found is None:
            if len(self._slice_cache) > 4096:
                self._slice_cache.clear()
            found = self._slice_cache[key] = np.arange(bucket, len(self.universe), n_slices, dtype=np.intp)
        return found

    def _make_ticks(self, due: np.ndarray, update_time: bytes, millisec: int) -> np.ndarray:
        """One tick per instrument in ``due`` (a random walk of one price tick), as TICK_DTYPE records."""
        r = self.rng.random(len(due))
        tick = self.tick_size[due]
        price = self.last[due]
        price = np.where(r < 0.3, np.maximum(self.lower[due], price - tick),
                         np.where(r > 0.7, np.minimum(self.upper[due], price + tick), price))
        self.last[due] = price
        traded = 1 + (r * 20).astype(np.int64)
        vol = self.volume[due] + traded
        self.volume[due] = vol
        turn = self.turnover[due] + traded * price * 10
        self.turnover[due] = turn
        oi = self.open_interest[due] + np.where(r < 0.5, traded, -1)
        self.open_interest[due] = oi
        high = np.maximum(self.high[due], price)
        self.high[due] = high
        low = np.minimum(self.low[due], price)
        self.low[due] = low
        exchange = self.exchange_of[due]
        out = np.empty(len(due), dtype=TICK_DTYPE)
        out["index"] = due
        out["trading_day"] = self._trading_days[exchange]
        out["action_day"] = self._action_days[exchange]
        out["update_time"] = update_time
        out["millisec"] = millisec
        out["last"] = price
        out["volume"] = vol
        out["turnover"] = turn
        out["open_interest"] = oi
        out["open"] = self.open_price[due]
        out["high"] = high
        out["low"] = low
        out["bid"] = price - tick
        out["bid_volume"] = 1 + (r * 50).astype(np.int32)
        out["ask"] = price + tick
        out["ask_volume"] = 1 + ((1 - r) * 50).astype(np.int32)
        out["average"] = turn / vol / 10
        deep = self.deep[due]  # SHFE and INE send five levels, the others level 1 only
        for level in range(2, 6):
            spread = level * tick
            out[f"bid{level}"] = np.where(deep, price - spread, NO_VALUE)
            out[f"ask{level}"] = np.where(deep, price + spread, NO_VALUE)
            out[f"bid_volume{level}"] = np.where(deep, 1 + ((r * 97 * level) % 60).astype(np.int32), 0)
            out[f"ask_volume{level}"] = np.where(deep, 1 + (((1 - r) * 89 * level) % 60).astype(np.int32), 0)
        slot = self.history_next[due]
        self.history[due, slot] = out
        self.history_next[due] = (slot + 1) % self.history.shape[1]
        self.history_len[due] = np.minimum(self.history_len[due] + 1, self.history.shape[1])
        return out

    def _distribute(self, due: np.ndarray, ticks: np.ndarray) -> None:
        counts = np.zeros(len(self.exchanges), dtype=np.int64)
        if "silent" not in self.faults:
            for session in self.sessions:
                if session.kind != "md" or not session.logged_in or not session.subs:
                    continue
                wanted = session.mask[due]
                if wanted.all():
                    mine, exchanges = ticks, self.exchange_of[due]
                else:
                    mine, exchanges = ticks[wanted], self.exchange_of[due[wanted]]
                if not len(mine):
                    continue
                counts += np.bincount(exchanges, minlength=len(self.exchanges))
                session.send(P.frame(P.TICKS, mine.tobytes()))
        self._count_sent(counts.tolist())

    def _count_sent(self, counts: list[int]) -> None:
        total = sum(counts)
        if total:
            self.ticks_sent += total
            for n, count in enumerate(counts):
                if count:
                    self.metrics.ticks.labels(self.exchanges[n]).inc(count)

    def _replay(self, session: Session, indexes: set[int]) -> None:
        """Send the kept history of ``indexes`` again (older ticks: volume and time go backwards)."""
        if session.kind != "md" or not session.logged_in:
            return
        records: list[bytes] = []
        counts = [0] * len(self.exchanges)
        depth = self.history.shape[1]
        for index in sorted(indexes):
            kept = int(self.history_len[index])
            if kept:
                first = int(self.history_next[index]) - kept
                records.extend(self.history[index, (first + k) % depth].tobytes() for k in range(kept))
                counts[int(self.exchange_of[index])] += kept
        for start in range(0, len(records), TICK_CHUNK):
            session.send(P.frame(P.TICKS, b"".join(records[start:start + TICK_CHUNK])))
        if records:
            self._count_sent(counts)
            log.info("sim.replay", "replayed already-sent ticks", ticks=len(records), peer=session.peer)

    async def _heartbeats(self) -> None:
        beat = P.frame(P.HEARTBEAT)
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            if "silent" in self.faults:
                continue
            for session in list(self.sessions):
                if session.welcomed:
                    session.send(beat)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        return {
            "listen": f"{self.config.host}:{self.config.port}",
            "instruments": len(self.universe),
            "faults": sorted(self.faults),
            "calendar": self.calendar.mode,
            "ticks_sent": self.ticks_sent,
            "slices_per_round": self.slices_per_round(),
            "sessions": [{"peer": s.peer, "kind": s.kind, "logged_in": s.logged_in, "subscribed": len(s.subs)}
                         for s in self.sessions],
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }
