"""The ctp-sim front: one TCP address serving market-data and trader sessions.

An asyncio server (one thread) holds the sessions, generates depth snapshots every
``tick_interval_ms`` per subscribed, open, active instrument (spread evenly over
10 ms slices, many records per frame) and applies the faults. Faults switch at
start (:class:`SimConfig.faults`) and at run time (:meth:`SimServer.set_fault`,
reached through the control endpoint in :mod:`feedops.sim.control`).

This module is the front's lifecycle, its session registry, the faults, the tick loop and
the sending of ticks. The rest has a module of its own: configuration
(:mod:`feedops.sim.config`), one connection (:mod:`feedops.sim.session`), what each request
does (:mod:`feedops.sim.handlers`), prices, dates, trading phases and the replay history
(:mod:`feedops.sim.market`).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import time
from collections import deque
from typing import Any, Callable

import numpy as np
from prometheus_client import CollectorRegistry

from .. import clock as clock_mod
from .. import metric_names as M
from ..calendar import BEIJING, TradingCalendar
from ..log import get_logger
from . import protocol as P
from .config import FAULTS, SimConfig
from .handlers import RequestHandlers
from .market import Market
from .session import Session
from .universe import generate

log = get_logger("ctp-sim")

SLICE_SECONDS = 0.01
TICK_CHUNK = 20000


class ListenError(OSError):
    """The listen address cannot be bound (port in use, address not local)."""


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
        self.requests = RequestHandlers(self)
        self._next_session = 1
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._delayed: deque[tuple[float, Session, bytes]] = deque()
        self.started_at = time.time()
        self.ticks_sent = 0
        self.trading_day_at_start = self.calendar.trading_day(_dt.datetime.fromtimestamp(clock(), BEIJING))
        self.market = Market(generate(config.instruments, config.seed, self.trading_day_at_start), config,
                             self.calendar)
        self._slice_no = 0
        for name in config.faults:
            self._apply_fault(name, True)
        self._clock_second = -1
        self._refresh_clock(_dt.datetime.fromtimestamp(self.clock(), BEIJING))  # dates and phases from the start

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
                 instruments=len(self.market.universe), faults=sorted(self.faults),
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
        self.unsubscribe(session, set(session.subs))
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
                self.replay(session, session.subs)
        elif name == "date_quirks":
            self._clock_second = -1  # recompute dates now

    # ------------------------------------------------------------------ market
    def trading_day(self, now: _dt.datetime) -> _dt.date:
        """The trading day the front announces at ``now`` (the next one under the date_quirks fault)."""
        return self.market.trading_day(now, "date_quirks" in self.faults)

    def _refresh_clock(self, now: _dt.datetime) -> None:
        """Once a second: the market's dates and trading phases; trader sessions learn the phases that changed."""
        changed = self.market.set_clock(now, "date_quirks" in self.faults)
        if changed:
            stamp = now.strftime("%H:%M:%S")
            for session in self.sessions:
                if session.kind == "td" and session.logged_in:
                    session.rsp(self.market.status_items(changed, stamp))

    def unsubscribe(self, session: Session, gone: set[int]) -> None:
        if gone:
            indexes = np.fromiter(gone, dtype=np.intp, count=len(gone))
            self.market.subscribers[indexes] -= 1
            session.mask[indexes] = False
        session.subs -= gone
        self.metrics.subscribed.set(sum(len(s.subs) for s in self.sessions))

    # ------------------------------------------------------------------ ticks
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
        due = self.market.due(self._slice_no % n_slices, n_slices, self._slice_no // n_slices,
                              skip_dead="dead_instruments" in self.faults)
        if not len(due):
            return
        millisec = 0 if (wall % 1.0) < 0.5 else 500
        self._distribute(due, self.market.make_ticks(due, self.market.update_time, millisec))

    def _distribute(self, due: np.ndarray, ticks: np.ndarray) -> None:
        counts = np.zeros(len(self.market.exchanges), dtype=np.int64)
        if "silent" not in self.faults:
            for session in self.sessions:
                if session.kind != "md" or not session.logged_in or not session.subs:
                    continue
                wanted = session.mask[due]
                if wanted.all():
                    mine, exchanges = ticks, self.market.exchange_of[due]
                else:
                    mine, exchanges = ticks[wanted], self.market.exchange_of[due[wanted]]
                if not len(mine):
                    continue
                counts += np.bincount(exchanges, minlength=len(self.market.exchanges))
                session.send(P.frame(P.TICKS, mine.tobytes()))
        self._count_sent(counts.tolist())

    def _count_sent(self, counts: list[int]) -> None:
        total = sum(counts)
        if total:
            self.ticks_sent += total
            for n, count in enumerate(counts):
                if count:
                    self.metrics.ticks.labels(self.market.exchanges[n]).inc(count)

    def replay(self, session: Session, indexes: set[int]) -> None:
        """Send the kept history of ``indexes`` again (older ticks: volume and time go backwards)."""
        if session.kind != "md" or not session.logged_in:
            return
        records, counts = self.market.replay_records(indexes)
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
            "instruments": len(self.market.universe),
            "faults": sorted(self.faults),
            "calendar": self.calendar.mode,
            "ticks_sent": self.ticks_sent,
            "slices_per_round": self.slices_per_round(),
            "sessions": [{"peer": s.peer, "kind": s.kind, "logged_in": s.logged_in, "subscribed": len(s.subs)}
                         for s in self.sessions],
            "uptime_seconds": round(time.time() - self.started_at, 3),
        }
