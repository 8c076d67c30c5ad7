#!/usr/bin/env python3
"""Benchmark ctp-sim: ticks/s one sim process offers to ONE client, and the client's cost per tick.

Starts a ctp-sim front on a free loopback port, queries the instrument list through
SimTraderApi, subscribes everything through SimMdApi in batches of 1000 and counts
OnRtnDepthMarketData callbacks (the callback copies the struct's bytes, as the worker's
callback does) over a measuring window. Prints:

* offered ticks/s (the sim's feedops_sim_ticks_sent_total over the window);
* received ticks/s at the client;
* client CPU µs per tick (process CPU time / ticks: socket read, decode, struct fill, callback);
* sim CPU share (of one core).

Target: >= 40,000 ticks/s offered to one client on a 2-core machine.

    .venv/bin/python bench/bench_sim.py [--instruments 30000] [--seconds 10] [--burst]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
from feedops.paths import bootstrap_locpath  # noqa: E402

if bootstrap_locpath():  # before feedops.sim imports the openctp-ctp structs
    os.environ.setdefault("LOCPATH", bootstrap_locpath())

from feedops.polling import free_port, wait_for  # noqa: E402
from feedops.sim import mdapi, tdapi  # noqa: E402
from feedops.worker.layout import DEPTH_SIZE  # noqa: E402


def sim_ticks_sent(control_url: str) -> float:
    with urllib.request.urlopen(control_url + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("feedops_sim_ticks_sent_total{"))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Trader(tdapi.CThostFtdcTraderSpi):
    def __init__(self, api):
        super().__init__()
        self.api, self.ids, self.done = api, [], threading.Event()

    def OnFrontConnected(self):
        req = tdapi.CThostFtdcReqUserLoginField()
        req.BrokerID, req.UserID, req.Password = "bench", "bench", "bench"
        self.api.ReqUserLogin(req, 1)

    def OnRspUserLogin(self, login, info, request_id, last):
        self.api.ReqQryInstrument(tdapi.CThostFtdcQryInstrumentField(), 2)

    def OnRspQryInstrument(self, instrument, info, request_id, last):
        if instrument is not None:
            self.ids.append(instrument.InstrumentID)
        if last:
            self.done.set()


class Market(mdapi.CThostFtdcMdSpi):
    def __init__(self, api, ids):
        super().__init__()
        self.api, self.ids, self.ticks, self.acked = api, ids, 0, 0
        self.copied = b""

    def OnFrontConnected(self):
        req = mdapi.CThostFtdcReqUserLoginField()
        req.BrokerID, req.UserID, req.Password = "bench", "bench", "bench"
        self.api.ReqUserLogin(req, 1)

    def OnRspUserLogin(self, login, info, request_id, last):
        for start in range(0, len(self.ids), 1000):
            batch = [i.encode() for i in self.ids[start:start + 1000]]
            self.api.SubscribeMarketData(batch, len(batch))

    def OnRspSubMarketData(self, instrument, info, request_id, last):
        self.acked += 1

    def OnRtnDepthMarketData(self, tick):
        self.ticks += 1
        self.copied = ctypes.string_at(int(tick.this), DEPTH_SIZE)  # the worker's copy step: the struct's bytes


def callback_path_us(records: int = 200_000) -> tuple[float, float]:
    """µs per tick of SimMdApi's decode-and-callback path alone (no socket): empty callback, and a copy of the
    struct's bytes.

    Copy rows are kept (as a queue would), so the second figure includes allocating them.
    """
    from feedops.sim import protocol as P

    api = mdapi.SimMdApi("")
    api._on_static([[i, f"x{i}", "SHFE", f"x{i}", 1.0, 1.0, 10.0, 1.1, 0.9] for i in range(1000)])
    payload = b"".join(P.TICK.pack(i % 1000, b"20261127", b"20261127", b"09:00:01", 500, 1.0, i, 2.0, 3.0, 1.0, 1.0,
                                   1.0, 0.9, 1, 1.1, 1, 1.0, *([0.8, 1, 1.2, 1] * 4)) for i in range(records))

    class Empty(mdapi.CThostFtdcMdSpi):
        def OnRtnDepthMarketData(self, tick):
            pass

    class Copy(mdapi.CThostFtdcMdSpi):
        def __init__(self):
            super().__init__()
            self.rows = []

        def OnRtnDepthMarketData(self, tick):
            self.rows.append(ctypes.string_at(int(tick.this), DEPTH_SIZE))

    results = []
    for spi in (Empty(), Copy()):
        api.RegisterSpi(spi)
        best = float("inf")
        for _ in range(3):  # best of three: the machine is shared
            t0 = time.perf_counter()
            api._on_ticks(payload)
            best = min(best, time.perf_counter() - t0)
        results.append(best / records * 1e6)
    return results[0], results[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instruments", type=int, default=30000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--burst", action="store_true", help="run with the burst fault (x4 rate)")
    args = parser.parse_args()

    port, control = free_port(), free_port()
    argv = [sys.executable, "-m", "feedops.sim", "--listen", f"127.0.0.1:{port}", "--control", f"127.0.0.1:{control}",
            "--accept-any-login", "--always-open", "--instruments", str(args.instruments), "--seed", "7",
            "--log-level", "warning"]
    if args.burst:
        argv += ["--fault", "burst"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"))
    sim = subprocess.Popen(argv, env=env, start_new_session=True)
    control_url = f"http://127.0.0.1:{control}"
    try:
        wait_for(lambda: urllib.request.urlopen(control_url + "/healthz", timeout=1).status == 200, 30, "the sim")
        front = f"tcp://127.0.0.1:{port}"
        td = tdapi.CThostFtdcTraderApi.CreateFtdcTraderApi("")
        trader = Trader(td)
        td.RegisterSpi(trader)
        td.RegisterFront(front)
        t0 = time.monotonic()
        td.Init()
        if not trader.done.wait(60):
            raise SystemExit("bench: instrument query did not finish")
        query_seconds = time.monotonic() - t0
        td.RegisterSpi(None)
        td.Release()

        md = mdapi.CThostFtdcMdApi.CreateFtdcMdApi("")
        market = Market(md, trader.ids)
        md.RegisterSpi(market)
        md.RegisterFront(front)
        t0 = time.monotonic()
        md.Init()
        wait_for(lambda: market.acked >= len(trader.ids), 60, "subscriptions")
        subscribe_seconds = time.monotonic() - t0
        time.sleep(2.0)  # warm-up: every instrument has had its first snapshots
        ticks0, sent0, cpu0, sim_cpu0, wall0 = (market.ticks, sim_ticks_sent(control_url), time.process_time(),
                                                cpu_seconds(sim.pid), time.monotonic())
        time.sleep(args.seconds)
        ticks1, sent1, cpu1, sim_cpu1, wall1 = (market.ticks, sim_ticks_sent(control_url), time.process_time(),
                                                cpu_seconds(sim.pid), time.monotonic())
        md.RegisterSpi(None)
        md.Release()
    finally:
        sim.terminate()
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
    window = wall1 - wall0
    empty_us, copy_us = callback_path_us()
    received = ticks1 - ticks0
    print(f"instruments            {len(trader.ids)}{' (burst x4)' if args.burst else ''}")
    print(f"instrument query       {query_seconds:.2f} s")
    print(f"subscribe all          {subscribe_seconds:.2f} s")
    print(f"offered ticks/s        {(sent1 - sent0) / window:,.0f}   (target >= 40,000)")
    print(f"received ticks/s       {received / window:,.0f}")
    print(f"client CPU per tick    {(cpu1 - cpu0) / max(received, 1) * 1e6:.2f} us")
    print(f"callback path          {empty_us:.2f} us/tick (empty callback), {copy_us:.2f} us/tick (copy of the struct's bytes)")
    print(f"sim CPU                {(sim_cpu1 - sim_cpu0) / window * 100:.0f} % of one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
