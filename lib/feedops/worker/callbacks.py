"""The CTP callbacks (SPI classes) and the event queue they feed.

CTP calls the SPI methods on its own native thread. Each callback copies what it needs
and returns: a depth tick goes to the pipeline's bounded queue (``gateway.on_depth``:
``TickQueue.offer`` copies the struct's bytes), everything else (connected, disconnected,
login and subscription answers, query results) becomes one ``(kind, payload)`` tuple in
:func:`event_queue`, which the main thread alone reads (:class:`feedops.worker.gateway.Gateway`
for the market-data session, :class:`feedops.worker.trader_front.TraderFront` for the
instrument query). No callback logs, changes state or calls back into the API
(docs/ops/ctp-reference.md: never ``Release()`` inside a callback).

The classes are built on the binding's SPI base classes (``md_spi_class(module.CThostFtdcMdSpi)``),
so the same code serves openctp-ctp and ctp-sim.
"""

from __future__ import annotations

import queue
from typing import Any

from .compiled import _jsonlines


def keep_thread_state() -> None:
    """Keep the calling thread's Python thread state for the life of the process.

    CTP calls the SPI on threads of its own, which Python never made. For each call, the
    binding's SWIG director takes the interpreter lock with ``PyGILState_Ensure``, which on
    such a thread makes a new thread state, and gives it back with ``PyGILState_Release``,
    which deletes it: most of the callback's cost on CTP's thread (``make bench`` prints the
    director's cost from a native thread; docs/ops/worker.md has the figures). The compiled
    module takes one ``PyGILState_Ensure`` more, never released, so the thread state stays
    and the next calls only take and give back the lock (``_jsonlines.keep_thread_state``;
    the tick queue's compiled ``offer`` checks it on every tick: one compare of the thread state's count). A
    thread Python made keeps its thread state anyway: nothing changes there (ctp-sim's
    client thread)."""
    _jsonlines.keep_thread_state()


def _err(info: Any) -> tuple[int, str]:
    if info is None:
        return 0, ""
    return int(info.ErrorID), str(info.ErrorMsg or "").strip()


def md_spi_class(base: type) -> type:
    class MdSpi(base):  # type: ignore[misc, valid-type]
        def __init__(self, gateway: Any):
            super().__init__()
            self.gateway = gateway
            self.put = gateway.events.put
            self.on_depth = gateway.on_depth
            if isinstance(getattr(gateway.on_depth, "__self__", None), _jsonlines.Ring):
                # the tick's whole path: the director -> Ring.offer (copies the struct's bytes, keeps CTP's
                # thread state; None: nothing), no Python frame; the binding looks the method up on the instance
                self.OnRtnDepthMarketData = gateway.on_depth

        def OnFrontConnected(self):
            keep_thread_state()
            self.put(("md_connected", None))

        def OnFrontDisconnected(self, nReason):
            self.put(("md_disconnected", int(nReason)))

        def OnHeartBeatWarning(self, nTimeLapse):
            self.put(("heartbeat_warning", int(nTimeLapse)))

        def OnRspUserLogin(self, pRspUserLogin, pRspInfo, nRequestID, bIsLast):
            day = pRspUserLogin.TradingDay if pRspUserLogin is not None else ""
            self.put(("md_login", (_err(pRspInfo), day)))

        def OnRspSubMarketData(self, pSpecificInstrument, pRspInfo, nRequestID, bIsLast):
            if pSpecificInstrument is not None:
                self.put(("sub_ack", (pSpecificInstrument.InstrumentID, _err(pRspInfo))))

        def OnRspError(self, pRspInfo, nRequestID, bIsLast):
            self.put(("md_error", _err(pRspInfo)))

        def OnRtnDepthMarketData(self, pDepthMarketData):
            """Replaced per SPI by ``gateway.on_depth`` itself (``__init__``): the director calls the tick queue's
            compiled ``offer`` with no Python frame in between. This one serves an ``on_depth`` of another kind."""
            keep_thread_state()
            if pDepthMarketData is not None:
                self.on_depth(pDepthMarketData)

    return MdSpi


def td_spi_class(base: type) -> type:
    class TdSpi(base):  # type: ignore[misc, valid-type]
        def __init__(self, front: Any):
            super().__init__()
            self.put = front.events.put
            self.rows: list[tuple[str, str, str, str]] = []

        def OnFrontConnected(self):
            self.put(("td_connected", None))

        def OnFrontDisconnected(self, nReason):
            self.put(("td_disconnected", int(nReason)))

        def OnRspAuthenticate(self, pRspAuthenticateField, pRspInfo, nRequestID, bIsLast):
            self.put(("td_auth", _err(pRspInfo)))

        def OnRspUserLogin(self, pRspUserLogin, pRspInfo, nRequestID, bIsLast):
            day = pRspUserLogin.TradingDay if pRspUserLogin is not None else ""
            self.put(("td_login", (_err(pRspInfo), day)))

        def OnRspQryInstrument(self, pInstrument, pRspInfo, nRequestID, bIsLast):
            if pInstrument is not None:
                self.rows.append((pInstrument.InstrumentID, pInstrument.ExchangeID, pInstrument.ProductID,
                                  pInstrument.ProductClass))
            if bIsLast:
                self.put(("qry_done", (nRequestID, _err(pRspInfo))))

        def OnRspError(self, pRspInfo, nRequestID, bIsLast):
            self.put(("td_error", (nRequestID, _err(pRspInfo))))

    return TdSpi


def event_queue() -> queue.Queue:
    """The queue of CTP events (logins, acknowledgements, disconnects) the main thread waits on with a timeout.

    A ``queue.Queue``, never a ``queue.SimpleQueue``: on CPython 3.11 a signal handled while
    ``SimpleQueue.get(timeout=...)`` waits, once the timeout has passed, turns the wait into one without end
    (the remaining time goes negative, which means "forever"), so a SIGTERM under load left the worker
    waiting for an event that never came until the runbook's SIGKILL. ``Queue.get`` waits on a
    ``threading`` lock, which treats an expired timeout as expired."""
    return queue.Queue()
