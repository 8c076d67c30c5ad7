"""Contract: SimMdApi behaves like openctp-ctp's CThostFtdcMdApi as far as the real library goes offline.

The same scenarios and assertions run against both implementations: local TCP
servers that accept and close (4097), send garbage (8195), or nothing listening at
all (no callback), several fronts (the one that answers is used), calls before
connecting (-1), ``str`` instrument ids (TypeError), callbacks on a thread that is
not the caller's. The real library needs an existing flow directory and is
released from the main thread after ``RegisterSpi(None)``.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from feedops.sim import mdapi as sim_mdapi
from feedops.sim.structs import NATIVE, REAL_MD
from feedops.sim.testing import Recorder

pytestmark = pytest.mark.integration

IMPLEMENTATIONS = [
    pytest.param("sim", id="sim"),
    pytest.param("real", id="openctp", marks=[pytest.mark.ctp, pytest.mark.skipif(
        not NATIVE, reason="openctp-ctp not importable (needs LOCPATH with zh_CN.GB18030: make bootstrap)")]),
]


def module(kind: str):
    return sim_mdapi if kind == "sim" else REAL_MD


class FakeFront:
    """A loopback TCP server that accepts and then closes, or first sends garbage."""

    def __init__(self, garbage: bool = False):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.garbage = garbage
        self.accepted = 0
        self.url = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                if self.garbage:
                    try:
                        conn.sendall(b"\xff" * 64)
                        conn.recv(1)  # the client hangs up on garbage
                    except OSError:
                        pass

    def close(self) -> None:
        self.sock.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def make_api(tmp_path):
    made = []

    def factory(kind: str, fronts: list[str]):
        mod = module(kind)
        flow = tmp_path / f"flow{len(made)}"
        flow.mkdir()  # the real library segfaults on a missing flow directory
        api = mod.CThostFtdcMdApi.CreateFtdcMdApi(str(flow) + "/")
        rec = Recorder()

        class Spi(mod.CThostFtdcMdSpi):
            def OnFrontConnected(self):
                rec.add("connected")

            def OnFrontDisconnected(self, reason):
                rec.add("disconnected", reason)

            def OnHeartBeatWarning(self, lapse):
                rec.add("heartbeat", lapse)

        spi = Spi()
        api.RegisterSpi(spi)
        for url in fronts:
            api.RegisterFront(url)
        made.append((api, spi))
        return api, rec

    yield factory
    for api, _spi in made:
        api.RegisterSpi(None)
        api.Release()


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_accept_then_close_gives_4097_about_every_second(kind, make_api):
    front = FakeFront()
    try:
        api, rec = make_api(kind, [front.url])
        caller = threading.current_thread().name
        started = time.monotonic()
        api.Init()
        rec.wait(lambda r: r.count("disconnected") >= 2, timeout=8, what="two disconnects")
        elapsed = time.monotonic() - started
        assert {e[1] for e in rec.named("disconnected")} == {4097}
        assert rec.count("connected") == 0
        assert elapsed > 0.5  # reconnects on its own after a pause (the 8 s wait bounds it from above)
        assert caller not in rec.threads
    finally:
        front.close()


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_garbage_gives_8195(kind, make_api):
    front = FakeFront(garbage=True)
    try:
        api, rec = make_api(kind, [front.url])
        api.Init()
        rec.wait(lambda r: r.named("disconnected"), timeout=8, what="a disconnect")
        assert rec.named("disconnected")[0] == ("disconnected", 8195)
        assert rec.count("connected") == 0
    finally:
        front.close()


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_nothing_listening_gives_no_callback_and_the_answering_front_is_used(kind, make_api):
    dead = closed_port_url()
    silent_api, silent = make_api(kind, [dead])
    front = FakeFront()
    try:
        api, rec = make_api(kind, [closed_port_url(), front.url])
        silent_api.Init()
        api.Init()
        # three disconnects from the live front take ~2 s: the closed-port client had that long
        rec.wait(lambda r: r.count("disconnected") >= 3, timeout=15, what="the live front's disconnects")
        assert front.accepted >= 3
        assert silent.events == []  # nothing listens: no callback at all
    finally:
        front.close()


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_calls_before_connecting(kind, make_api):
    api, rec = make_api(kind, [closed_port_url()])
    mod = module(kind)
    assert api.SubscribeMarketData([b"rb2601"], 1) == -1
    assert api.ReqUserLogin(mod.CThostFtdcReqUserLoginField(), 1) == -1
    with pytest.raises(TypeError):
        api.SubscribeMarketData(["rb2601"], 1)
    assert isinstance(mod.CThostFtdcMdApi.GetApiVersion(), str)
    tick = mod.CThostFtdcDepthMarketDataField()
    tick.InstrumentID, tick.LastPrice, tick.Volume = "rb2601", 3500.0, 7
    assert (tick.InstrumentID, tick.LastPrice, tick.Volume, tick.ActionDay) == ("rb2601", 3500.0, 7, "")


@pytest.mark.ctp
@pytest.mark.skipif(not NATIVE, reason="openctp-ctp not importable (needs LOCPATH with zh_CN.GB18030: make bootstrap)")
def test_sim_structs_are_the_bindings_when_it_imports():
    assert sim_mdapi.CThostFtdcMdSpi is REAL_MD.CThostFtdcMdSpi
    assert sim_mdapi.CThostFtdcReqUserLoginField is REAL_MD.CThostFtdcReqUserLoginField
    assert sim_mdapi.CThostFtdcDepthMarketDataField is REAL_MD.CThostFtdcDepthMarketDataField
