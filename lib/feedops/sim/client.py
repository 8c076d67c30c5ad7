"""The connection engine shared by :class:`SimMdApi` and :class:`SimTdApi`.

Behaviour copied from the real library (docs/ops/ctp-reference.md, "Connections"):

* ``Init()`` starts a network thread of ours; every SPI callback runs on it, never
  on the caller's thread;
* fronts are tried in registration order; one that refuses the connection is
  skipped *silently* (no callback at all when nothing listens), the next is tried;
* a front that accepts and then closes gives ``OnFrontDisconnected(4097)``; garbage
  gives ``OnFrontDisconnected(8195)``; one that accepts and says nothing gives no
  ``OnFrontConnected`` and ``OnHeartBeatWarning`` after the heartbeat window;
* reconnection is automatic about 1 s after a disconnect; the client must log in
  and subscribe again;
* requests return 0 when sent, -1 while not connected;
* ``Release()`` may be called from a callback (it then does not wait for the thread).
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
import traceback
from typing import Any, Callable

from .. import log as log_mod
from ..log import get_logger
from . import protocol as P
from .structs import fields_of, fill

_FRONT = re.compile(r"^(?:tcp|ssl)://(?P<host>[^:/\s]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5})/?$")
RECONNECT_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 2.0
RECV_BYTES = 1 << 20

log = get_logger("ctp-sim.client")


def parse_front(address: str | bytes) -> tuple[str, int] | None:
    if isinstance(address, bytes):
        address = address.decode(errors="replace")
    m = _FRONT.match(str(address).strip())
    if not m or not 0 < int(m.group("port")) < 65536:
        return None
    return m.group("host").strip("[]"), int(m.group("port"))


class SimClientBase:
    """Connection, framing, request sending and callback dispatch for one API object."""

    KIND = "md"
    #: Seconds without any byte from a connected front before OnHeartBeatWarning (the real library: 61).
    heartbeat_warning_seconds: float = 61.0
    #: Delay before reconnecting after a disconnect (the real library: about 1 s).
    reconnect_seconds: float = RECONNECT_SECONDS

    def __init__(self, flow_path: str = "", fast_structs: dict[str, type] | None = None) -> None:
        self.flow_path = flow_path
        self._fronts: list[tuple[str, int]] = []
        self._spi: Any = None
        self._structs = fast_structs or {}
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._ready = False  # the front answered (OnFrontConnected was called)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trading_day = ""
        self.front_id = 0
        self.session_id = 0
        self.current_front: tuple[str, int] | None = None

    # ------------------------------------------------------------------ API methods shared by md and td
    def RegisterFront(self, pszFrontAddress: str) -> None:
        front = parse_front(pszFrontAddress)
        if front is None:
            log.warning("sim.client.bad_front", "ignoring a front address that is not tcp://host:port",
                        front=str(pszFrontAddress))
            return
        self._fronts.append(front)

    def RegisterNameServer(self, pszNsAddress: str) -> None:
        self.RegisterFront(pszNsAddress)

    def RegisterSpi(self, pSpi: Any) -> None:
        self._spi = pSpi
        self._bind_spi()

    def Init(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"ctp-sim-{self.KIND}-api", daemon=True)
        self._thread.start()

    def Join(self) -> int:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        return 0

    def Release(self) -> None:
        self._stop.set()
        self._spi = None
        self._bind_spi()
        self._close_socket()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def GetTradingDay(self) -> str:
        return self._trading_day

    # ------------------------------------------------------------------ callbacks
    def _bind_spi(self) -> None:
        """Cache the SPI's own callback methods; the base classes' no-ops are skipped (nothing to call)."""
        spi = self._spi
        self._cb: dict[str, Callable[..., Any]] = {}
        if spi is None:
            return
        for name in dir(spi):
            if not name.startswith("On"):
                continue
            method = getattr(spi, name, None)
            defined_in = getattr(getattr(method, "__func__", method), "__module__", "") or ""
            if callable(method) and not defined_in.startswith(("openctp_ctp", "feedops.sim.mdapi", "feedops.sim.tdapi")):
                self._cb[name] = method

    def _call(self, name: str, *args: Any) -> None:
        method = self._cb.get(name) if self._spi is not None else None
        if method is None:
            return
        try:
            method(*args)
        except Exception:  # the binding prints and swallows callback exceptions
            traceback.print_exc()

    # ------------------------------------------------------------------ requests
    def _request(self, op: str, request_id: int, data: dict[str, Any] | None = None) -> int:
        if not self._ready:
            return P.RC_NETWORK
        payload = P.json_frame(P.REQ, {"op": op, "req": int(request_id), "data": data or {}})
        return self._send_raw(payload)

    def _send_raw(self, payload: bytes) -> int:
        with self._send_lock:
            sock = self._sock
            if sock is None or not self._ready:
                return P.RC_NETWORK
            try:
                sock.sendall(payload)
            except OSError:
                return P.RC_NETWORK
        return P.RC_OK

    @staticmethod
    def _struct_fields(struct: Any) -> dict[str, Any]:
        return fields_of(struct) if struct is not None else {}

    # ------------------------------------------------------------------ network thread
    def _close_socket(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _run(self) -> None:
        log_mod.name_native_thread(f"ctp-sim-{self.KIND}-api")  # CTP's own network thread in production
        while not self._stop.is_set():
            for front in list(self._fronts):
                if self._stop.is_set():
                    return
                try:
                    sock = socket.create_connection(front, timeout=CONNECT_TIMEOUT_SECONDS)
                except OSError:
                    continue  # nothing listens there: silently try the next front
                reason = self._serve(sock, front)
                if self._stop.is_set():
                    return
                self._call("OnFrontDisconnected", reason)
                break
            self._stop.wait(self.reconnect_seconds)

    def _serve(self, sock: socket.socket, front: tuple[str, int]) -> int:
        """Run one connection until it breaks; return the CTP disconnect reason."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.settimeout(0.5)
        with self._send_lock:
            self._sock = sock
        self.current_front = front
        buf = bytearray()
        last_rx = time.monotonic()
        try:
            try:
                sock.sendall(P.json_frame(P.HELLO, {"kind": self.KIND}))
            except OSError:
                return P.REASON_READ_FAILURE  # accepted and closed at once: the real library reports 4097
            while not self._stop.is_set():
                try:
                    chunk = sock.recv(RECV_BYTES)
                except socket.timeout:
                    idle = time.monotonic() - last_rx
                    if idle >= self.heartbeat_warning_seconds:
                        self._call("OnHeartBeatWarning", int(idle))
                        last_rx = time.monotonic()
                    continue
                except OSError:
                    return P.REASON_READ_FAILURE
                if not chunk:
                    return P.REASON_READ_FAILURE
                last_rx = time.monotonic()
                buf += chunk
                try:
                    for kind, payload in P.split_frames(buf):
                        self._dispatch(kind, payload)
                        if self._stop.is_set():
                            break
                except (P.FrameError, ValueError, TypeError, KeyError, struct.error):
                    return P.REASON_BAD_PACKET  # not ctp-sim protocol (callback exceptions never get here)
            return P.REASON_READ_FAILURE
        except OSError:
            return P.REASON_WRITE_FAILURE
        finally:
            with self._send_lock:
                self._ready = False
                self._sock = None
            self.current_front = None
            self._on_disconnected()
            try:
                sock.close()
            except OSError:
                pass

    def _dispatch(self, kind: int, payload: bytes) -> None:
        if kind == P.RSP:
            self._dispatch_rsp(json.loads(payload))
        elif kind == P.WELCOME:
            info = json.loads(payload)
            self.front_id = int(info.get("front_id", 0))
            self.session_id = int(info.get("session_id", 0))
            self._on_welcome(info)
            self._ready = True
            self._call("OnFrontConnected")
        elif kind == P.HEARTBEAT:
            pass
        else:
            self._dispatch_other(kind, payload)

    def _dispatch_rsp(self, items: list[list[Any]]) -> None:
        structs = self._structs
        info_cls = structs["CThostFtdcRspInfoField"]
        for callback, struct_name, fields, error_id, error_msg, request_id, is_last in items:
            body = fill(structs[struct_name](), fields) if struct_name else None
            info = None
            if error_id is not None:
                info = info_cls()
                info.ErrorID = int(error_id)
                info.ErrorMsg = error_msg or ""
            self._before_callback(callback, body, info, request_id, is_last)
            if callback == "OnRspError":
                self._call(callback, info, request_id, is_last)
            elif callback.startswith("OnRtn"):
                self._call(callback, body)
            else:
                self._call(callback, body, info, request_id, is_last)

    # hooks for subclasses
    def _on_welcome(self, info: dict[str, Any]) -> None:
        pass

    def _on_disconnected(self) -> None:
        pass

    def _before_callback(self, callback: str, body: Any, info: Any, request_id: int, is_last: bool) -> None:
        if callback == "OnRspUserLogin" and body is not None and (info is None or info.ErrorID == 0):
            self._trading_day = getattr(body, "TradingDay", "") or self._trading_day

    def _dispatch_other(self, kind: int, payload: bytes) -> None:
        pass
