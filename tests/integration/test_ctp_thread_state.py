"""Ticks on CTP's own thread: the real openctp-ctp director, called from a native thread as the library does.

bench/native_thread.c stands in for CTP's thread (a pthread Python never made) and calls the
binding's director method for OnRtnDepthMarketData. The worker's SPI keeps that thread's Python
thread state after the first tick (feedops.worker.callbacks.keep_thread_state); without it, the
director makes and deletes one per tick (the benchmark's figures in docs/ops/worker.md)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from feedops.buildext import CFLAGS
from feedops.sim.structs import REAL_MD
from feedops.worker.callbacks import md_spi_class

pytestmark = pytest.mark.skipif(REAL_MD is None, reason="openctp-ctp does not import here (its locale: LOCPATH)")
ROOT = Path(__file__).resolve().parents[2]
DIRECTOR = "_ZN28SwigDirector_CThostFtdcMdSpi20OnRtnDepthMarketDataEP30CThostFtdcDepthMarketDataField"


@pytest.fixture(scope="module")
def native_thread(tmp_path_factory):
    """call(spi, struct, count): count director calls from a new native thread."""
    out = tmp_path_factory.mktemp("native") / ("native_thread" + sysconfig.get_config_var("SHLIB_SUFFIX"))
    subprocess.run(["gcc", *CFLAGS, "-shared", "-fPIC", str(ROOT / "bench" / "native_thread.c"), "-o", str(out)],
                   check=True)
    call = ctypes.CDLL(str(out)).call_on_native_thread
    call.restype = ctypes.c_double
    call.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_long]
    binding = sys.modules[REAL_MD.__name__.rpartition(".")[0] + "._thostmduserapi"]
    director = ctypes.cast(getattr(ctypes.CDLL(binding.__file__), DIRECTOR), ctypes.c_void_p).value
    return lambda spi, struct, count: call(director, int(spi.this), int(struct.this), count)


def _struct():
    struct = REAL_MD.CThostFtdcDepthMarketDataField()
    struct.InstrumentID = "rb2601"
    return struct


def _recorder():
    """An on_depth that records, per call, its thread and whether this thread state saw an earlier call."""
    local, seen = threading.local(), []

    def on_depth(depth):
        seen.append((threading.get_ident(), getattr(local, "earlier", False), depth.InstrumentID))
        local.earlier = True

    return on_depth, seen


def test_the_worker_spi_keeps_ctp_threads_python_thread_state_across_ticks(native_thread):
    on_depth, seen = _recorder()
    spi = md_spi_class(REAL_MD.CThostFtdcMdSpi)(SimpleNamespace(events=SimpleNamespace(put=lambda e: None),
                                                                on_depth=on_depth))
    assert native_thread(spi, _struct(), 3) >= 0
    assert len(seen) == 3 and len({ident for ident, _, _ in seen}) == 1 and seen[0][0] != threading.get_ident()
    assert [earlier for _, earlier, _ in seen] == [False, True, True]  # one thread state for all three ticks
    assert {name for _, _, name in seen} == {"rb2601"}
    # a new CTP thread (a reconnect), whose id the system may give again: its thread state is kept in turn
    assert native_thread(spi, _struct(), 3) >= 0
    assert [earlier for _, earlier, _ in seen[3:]] == [False, True, True]


def test_production_path_director_to_the_compiled_queue_keeps_the_thread_state(native_thread, monkeypatch):
    """The worker's SPI hands the director the tick queue's compiled offer itself (no Python frame): it copies
    the struct and keeps CTP's thread state; the queue's clock, called once per tick, sees one thread state."""
    import time as real_time

    from feedops import clock
    from feedops.worker.pipeline import TickQueue

    local, seen = threading.local(), []

    def now():
        seen.append((threading.get_ident(), getattr(local, "earlier", False)))
        local.earlier = True
        return real_time.time()

    monkeypatch.setattr(clock, "time", now)
    queue = TickQueue(16)
    spi = md_spi_class(REAL_MD.CThostFtdcMdSpi)(SimpleNamespace(events=SimpleNamespace(put=lambda e: None),
                                                                on_depth=queue.offer))
    assert spi.OnRtnDepthMarketData == queue.offer  # bound on the instance: the director finds it there
    for _ in range(2):  # two CTP threads one after the other (a reconnect)
        assert native_thread(spi, _struct(), 3) >= 0
    assert [earlier for _, earlier in seen] == [False, True, True, False, True, True]
    assert queue.received == 6 and queue.take(10)[0]["InstrumentID"].tolist() == [b"rb2601"] * 6


def test_without_it_the_director_makes_a_thread_state_per_tick(native_thread):
    """The control: a plain SPI (the binding's base class, no keep_thread_state) sees a new thread state each time."""
    on_depth, seen = _recorder()

    class PlainSpi(REAL_MD.CThostFtdcMdSpi):
        def OnRtnDepthMarketData(self, pDepthMarketData):
            on_depth(pDepthMarketData)

    assert native_thread(PlainSpi(), _struct(), 3) >= 0
    assert [earlier for _, earlier, _ in seen] == [False, False, False]
