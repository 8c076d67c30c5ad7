"""One client connection of the sim front: framing in, the HELLO/REQ dispatch, sending (slow, overflow).

The connection's state (kind, login, subscriptions) lives here; what a request does is
:mod:`feedops.sim.handlers`, the session registry and faults are :mod:`feedops.sim.server`.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from ..log import get_logger
from . import protocol as P

if TYPE_CHECKING:
    from .server import SimServer

log = get_logger("ctp-sim")


class Session(asyncio.Protocol):
    """One client connection (market data or trader)."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.kind = ""  # md | td once HELLO arrived
        self.welcomed = False
        self.logged_in = False
        self.authenticated = False
        self.subs: set[int] = set()
        self.mask: np.ndarray = np.zeros(len(server.market.universe), dtype=bool)  # subs, for the tick path
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
                self.server.requests.handle(self, str(message.get("op", "")), request_id,
                                            message.get("data") or {})

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
