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
in ``OnRtnDepthMarketData`` as the real library hands them: a struct in CTP's memory
layout (:mod:`feedops.worker.layout`) whose address is ``int(tick.this)``, valid only
during the callback (the memory is reused). The sim builds the structs of a whole frame
at once as a numpy array in that layout, so a consumer that copies the bytes runs the
same code on the sim and on the real library. Fields can also be read by name
(``tick.LastPrice``), from that memory (slower: tests and tools).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..worker.compiled import _jsonlines
from ..worker.layout import DEPTH_DTYPE, DEPTH_SIZE, ENCODING
from . import protocol as P
from .client import SimClientBase
from .structs import NO_VALUE, REAL_MD, struct_classes

_EXPORTED, _FAST = struct_classes(REAL_MD)
globals().update(_EXPORTED)
#: Ticks of a frame turned into structs at a time.
FRAME_CHUNK = 2048
#: The wire's tick fields -> the struct's (the rest of a struct is the instrument's static part).
_FROM_WIRE = tuple(zip(P.TICK_DTYPE.names[1:], P.TICK_FIELDS))


def _wire_plan() -> tuple[tuple[tuple[int, int, int], ...], tuple[tuple[str, str], ...]]:
    """How a wire tick fills its struct: (wire offset, struct offset, size) of the fields whose bytes the struct
    takes as they are (a date or time of 8 characters into its char[9], whose last byte stays 0), and the
    fields numpy converts (another type)."""
    plan, converted = [], []
    for wire_name, field in _FROM_WIRE:
        (wire, at), (struct, to) = P.TICK_DTYPE.fields[wire_name][:2], DEPTH_DTYPE.fields[field][:2]
        if wire == struct or (wire.kind == struct.kind == "S" and wire.itemsize < struct.itemsize):
            plan.append((at, to, wire.itemsize))
        else:
            converted.append((wire_name, field))
    return tuple(plan), tuple(converted)


_WIRE_PLAN, _WIRE_CONVERTED = _wire_plan()
#: The struct of an instrument before its first tick: prices without a value carry CTP's marker (DBL_MAX).
_BLANK = np.zeros(1, dtype=DEPTH_DTYPE)
for _name in DEPTH_DTYPE.names:
    if DEPTH_DTYPE.fields[_name][0].kind == "f" and _name not in ("PreDelta", "CurrDelta"):
        _BLANK[_name] = NO_VALUE


def _field_reader(name: str) -> property:
    def read(self: Any) -> Any:
        rows = self._rows
        value = rows[(self.this - rows.ctypes.data) // DEPTH_SIZE][name]
        return value.decode(ENCODING) if isinstance(value, bytes) else value.item()

    return property(read)


def _depth_class() -> type:
    """What ``OnRtnDepthMarketData`` receives from the sim: like the binding's proxy (a subclass of its class when
    it imports), ``this`` is the address of the struct in CTP's layout, valid during the callback only; a field
    read by name decodes it from that memory. The binding's own field accessors are not used (they would need a
    C++ object behind ``this``)."""
    base = _EXPORTED["CThostFtdcDepthMarketDataField"]  # the binding's class, or its pure-Python stand-in
    namespace: dict[str, Any] = {"__slots__": ("this", "_rows"), "__module__": __name__,
                                 "__doc__": _depth_class.__doc__, "__init__": lambda self: None,
                                 "__setattr__": object.__setattr__}
    namespace.update({name: _field_reader(name) for name in DEPTH_DTYPE.names})
    return type("CThostFtdcDepthMarketDataField", (base,), namespace)


DepthMarketData = _depth_class()


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
        # the static structs of the subscribed instruments, one row each of one table (no object per instrument)
        self._rows: dict[int, int] = {}  # instrument index on the wire -> its row of the table
        self._table = np.zeros(0, dtype=DEPTH_DTYPE)
        self._lookup: np.ndarray | None = None  # wire index -> row, rebuilt after a change
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
        self._rows.clear()
        self._table = np.zeros(0, dtype=DEPTH_DTYPE)
        self._lookup = None

    def _dispatch_other(self, kind: int, payload: bytes) -> None:
        if kind == P.TICKS:
            self._on_ticks(payload)
        elif kind == P.STATIC:
            self._on_static(json.loads(payload))

    def _on_static(self, items: list[list[Any]]) -> None:
        rows, table = self._rows, self._table
        for (index, instrument_id, exchange_id, exchange_inst_id, pre_settlement, pre_close, pre_open_interest,
             upper, lower) in items:
            at = rows.get(index)
            if at is None:
                at = rows[index] = len(rows)
                if at >= len(table):  # grown by doubling, bytes and all (padding included)
                    grown = np.zeros(max(1024, 2 * len(table)), dtype=DEPTH_DTYPE)
                    grown.view(np.uint8)[:table.nbytes] = table.view(np.uint8)
                    self._table = table = grown
            table[at] = _BLANK[0]
            row = table[at]  # a view of the table's row
            row["InstrumentID"] = instrument_id.encode(ENCODING)
            row["ExchangeID"] = exchange_id.encode(ENCODING)
            row["ExchangeInstID"] = exchange_inst_id.encode(ENCODING)
            row["PreSettlementPrice"] = pre_settlement
            row["PreClosePrice"] = pre_close
            row["PreOpenInterest"] = pre_open_interest
            row["UpperLimitPrice"] = upper
            row["LowerLimitPrice"] = lower  # volumes of levels 2-5 stay 0, their prices DBL_MAX
        self._lookup = None  # rebuilt at the next frame

    def _static_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(wire index -> row of the table or -1, the table of static structs)."""
        if self._lookup is None:
            indexes = np.fromiter(self._rows.keys(), dtype=np.int64, count=len(self._rows))
            lookup = np.full(int(indexes.max()) + 1 if len(indexes) else 0, -1, dtype=np.int64)
            lookup[indexes] = np.fromiter(self._rows.values(), dtype=np.int64, count=len(self._rows))
            self._lookup = lookup
        return self._lookup, self._table

    def _on_ticks(self, payload: bytes) -> None:
        """A frame of ticks -> arrays of depth structs built in bulk (FRAME_CHUNK at a time, so a large frame does not
        hold a large array) -> one callback per struct."""
        wire = np.frombuffer(payload, dtype=P.TICK_DTYPE)
        spi = self._spi
        for start in range(0, len(wire), FRAME_CHUNK):
            if not self._on_wire_ticks(wire[start:start + FRAME_CHUNK], spi):
                break

    def _on_wire_ticks(self, wire: np.ndarray, spi: Any) -> bool:
        """Build and hand over the structs of ``wire``; False when the SPI changed inside a callback."""
        callback = self._cb.get("OnRtnDepthMarketData") if spi is not None else None
        lookup, table = self._static_table()
        index = wire["index"].astype(np.int64)
        where = np.full(len(index), -1, dtype=np.int64)
        listed = index < len(lookup)
        where[listed] = lookup[index[listed]]
        if not (where >= 0).all():  # not (or no longer) subscribed: no struct to fill
            wire, where = wire[where >= 0], where[where >= 0]
        rows = table.view(np.uint8).reshape(len(table), DEPTH_SIZE)[where].view(DEPTH_DTYPE).reshape(len(where))
        # (a copy of the static structs as bytes: the structs of this frame)
        _jsonlines.copy_fields(np.ascontiguousarray(wire), P.TICK_DTYPE.itemsize, rows, DEPTH_SIZE, _WIRE_PLAN)
        for wire_name, field in _WIRE_CONVERTED:
            rows[field] = wire[wire_name]
        count = len(rows)
        if callback is not None and count:
            tick = DepthMarketData()
            tick._rows = rows
            base = rows.ctypes.data
            for i, tick.this in enumerate(range(base, base + count * DEPTH_SIZE, DEPTH_SIZE)):
                try:
                    callback(tick)
                except Exception:
                    import traceback

                    traceback.print_exc()
                if self._spi is not spi:  # RegisterSpi(None) or Release() from inside a callback
                    self.ticks_received += i + 1
                    return False
        self.ticks_received += count
        return True
