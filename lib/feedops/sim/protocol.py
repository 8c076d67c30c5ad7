"""ctp-sim's wire protocol (loopback TCP, not SFIT's).

Every frame is a 6-byte header ``<BBI`` (magic 0xC7, frame type, payload length)
followed by the payload. Control frames carry compact JSON; tick frames carry
fixed-size binary records (:data:`TICK`), many per frame, so that a client decodes
them with one ``struct.iter_unpack``.

A client that reads a frame with the wrong magic treats the stream as garbage
(CTP's disconnect reason 0x2003), exactly as the real library does with a front
that sends junk.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

MAGIC = 0xC7
HEADER = struct.Struct("<BBI")
MAX_FRAME = 64 * 1024 * 1024

# server -> client
WELCOME = 1  # {"front_id", "session_id", "query_interval"}: the front answered (OnFrontConnected)
HEARTBEAT = 2  # empty
RSP = 3  # JSON list of callbacks: [callback, struct name or null, fields or null, error id or null, error msg, request id, is last]
TICKS = 4  # binary TICK records
STATIC = 5  # JSON list of [index, *STATIC_FIELDS values]: the fixed part of each newly subscribed instrument's depth struct
# client -> server
HELLO = 16  # {"kind": "md" | "td", "api": version}
REQ = 17  # {"op": ..., "req": request id, "data": {...}}

#: One depth-market-data update: instrument index, TradingDay, ActionDay, UpdateTime, UpdateMillisec,
#: LastPrice, Volume, Turnover, OpenInterest, OpenPrice, HighestPrice, LowestPrice,
#: BidPrice1, BidVolume1, AskPrice1, AskVolume1, AveragePrice, then levels 2-5 (BidPrice2, BidVolume2,
#: AskPrice2, AskVolume2, ... AskVolume5: SHFE and INE send them; elsewhere the prices are DBL_MAX, volumes 0).
TICK = struct.Struct("<I8s8s8sHdiddddddidid" + "didi" * 4)
#: :data:`TICK` as a numpy record (packed, little-endian): the server builds ticks and the client decodes them
#: a frame at a time.
TICK_DTYPE = np.dtype([
    ("index", "<u4"), ("trading_day", "S8"), ("action_day", "S8"), ("update_time", "S8"), ("millisec", "<u2"),
    ("last", "<f8"), ("volume", "<i4"), ("turnover", "<f8"), ("open_interest", "<f8"), ("open", "<f8"),
    ("high", "<f8"), ("low", "<f8"), ("bid", "<f8"), ("bid_volume", "<i4"), ("ask", "<f8"), ("ask_volume", "<i4"),
    ("average", "<f8"),
    *((f"{name}{level}", kind) for level in range(2, 6) for name, kind in (
        ("bid", "<f8"), ("bid_volume", "<i4"), ("ask", "<f8"), ("ask_volume", "<i4"))),
])
assert TICK_DTYPE.itemsize == TICK.size
TICK_FIELDS = ("TradingDay", "ActionDay", "UpdateTime", "UpdateMillisec", "LastPrice", "Volume", "Turnover",
               "OpenInterest", "OpenPrice", "HighestPrice", "LowestPrice", "BidPrice1", "BidVolume1", "AskPrice1",
               "AskVolume1", "AveragePrice",
               *(f"{name}{level}" for level in range(2, 6) for name in ("BidPrice", "BidVolume", "AskPrice", "AskVolume")))

#: Depth-struct fields that do not change during a session, sent once per subscription.
STATIC_FIELDS = ("InstrumentID", "ExchangeID", "ExchangeInstID", "PreSettlementPrice", "PreClosePrice",
                 "PreOpenInterest", "UpperLimitPrice", "LowerLimitPrice")

# CTP disconnect reasons (docs/ops/ctp-reference.md)
REASON_READ_FAILURE = 0x1001  # 4097
REASON_WRITE_FAILURE = 0x1002
REASON_HEARTBEAT_TIMEOUT = 0x2001
REASON_BAD_PACKET = 0x2003  # 8195

# request return codes
RC_OK, RC_NETWORK, RC_IN_FLIGHT, RC_RATE = 0, -1, -2, -3

# CTP error ids the sim uses (ErrorID, ErrorMsg as the real fronts word them)
ERR_INVALID_LOGIN = (3, "CTP:不合法的登录")
ERR_NOT_LOGGED_IN = (4, "CTP:还没有登录")
ERR_AUTH_FAILED = (63, "CTP:客户端认证失败")
ERR_QUERY_NOT_READY = (90, "CTP:查询未就绪，请稍后重试")
ERR_SUB_TOO_MANY = (6000, "CTP:sub too many insts")


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(MAGIC, kind, len(payload)) + payload


def json_frame(kind: int, obj: Any) -> bytes:
    return frame(kind, json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())


class FrameError(ValueError):
    """The byte stream is not ctp-sim protocol (bad magic or absurd length)."""


def split_frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """Remove every complete frame from ``buf`` and return them as (type, payload)."""
    frames = []
    pos = 0
    size = len(buf)
    unpack = HEADER.unpack_from
    while size - pos >= HEADER.size:
        magic, kind, length = unpack(buf, pos)
        if magic != MAGIC or length > MAX_FRAME:
            raise FrameError(f"bad frame header at offset {pos}")
        end = pos + HEADER.size + length
        if end > size:
            break
        frames.append((kind, bytes(buf[pos + HEADER.size:end])))
        pos = end
    if pos:
        del buf[:pos]
    return frames
