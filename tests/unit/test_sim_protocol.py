"""Framing of ctp-sim's wire protocol."""

from __future__ import annotations

import pytest

from feedops.sim import protocol as P


def test_split_keeps_partial_frames_for_later():
    data = P.frame(P.HEARTBEAT) + P.json_frame(P.RSP, [["OnRspError"]]) + P.frame(P.TICKS, b"x" * 10)
    buf = bytearray(data[:-3])
    frames = P.split_frames(buf)
    assert [k for k, _ in frames] == [P.HEARTBEAT, P.RSP]
    assert len(buf) == P.HEADER.size + 10 - 3
    buf += data[-3:]
    assert P.split_frames(buf) == [(P.TICKS, b"x" * 10)]
    assert buf == bytearray()


def test_garbage_is_a_frame_error():
    with pytest.raises(P.FrameError):
        P.split_frames(bytearray(b"\xff" * 16))


def test_tick_record_round_trip():
    values = (7, b"20261127", b"20261126", b"21:00:01", 500, 1.5, 3, 4.5, 6.0, 1.0, 2.0, 0.5, 1.4, 1, 1.6, 2, 1.5,
              *(x for level in range(2, 6) for x in (1.4 - level / 10, level, 1.6 + level / 10, 2 * level)))
    assert P.TICK.unpack(P.TICK.pack(*values)) == values
    assert len(P.TICK_FIELDS) == len(values) - 1 == len(P.TICK_DTYPE.names) - 1
    assert P.TICK_DTYPE.itemsize == P.TICK.size
