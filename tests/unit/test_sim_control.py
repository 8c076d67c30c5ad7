"""ctp-sim's control endpoint validates every parameter of every fault endpoint: a missing, malformed,
repeated or unknown one is a 400 whose JSON names it, and nothing changes."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request

import pytest

from feedops.calendar import HOLIDAYS_FILE, TradingCalendar, load_holidays
from feedops.sim.config import FAULTS, SimConfig
from feedops.sim.control import ControlServer, ParamError, parse_fault_request
from feedops.sim.server import SimServer


@pytest.fixture(scope="module")
def control():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = SimServer(SimConfig(port=0, instruments=50), TradingCalendar("exchange", load_holidays(HOLIDAYS_FILE)))
    server = ControlServer("127.0.0.1", 0, sim, loop)
    yield sim, f"http://{server.address}"
    server.close()
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def post(base: str, path: str) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


BAD = [  # (query, the parameter named)
    ("", "on"),  # the issue: without on, burst was switched on
    ("factor=2", "on"),
    ("on=", "on"),
    ("on=maybe", "on"),
    ("on=1&on=0", "on"),
    ("on=1&colour=red", "colour"),
    ("on=1&factor=abc", "factor"),  # the issue: a raw Python error
    ("on=1&factor=", "factor"),
    ("on=1&factor=nan", "factor"),
    ("on=1&factor=inf", "factor"),
    ("on=1&factor=0.5", "factor"),
    ("on=1&factor=51", "factor"),
    ("on=1&factor=2&factor=3", "factor"),
    ("on=1&&&", "query"),
]


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("query, parameter", BAD)
def test_every_bad_parameter_is_a_400_naming_it_and_changes_nothing(control, fault, query, parameter):
    sim, base = control
    before = (set(sim.faults), sim.config.burst_factor)
    code, body = post(base, f"/faults/{fault}?{query}" if query else f"/faults/{fault}")
    if fault != "burst" and "factor" in query:
        parameter = "factor"  # factor on another fault: named as not applicable, whatever else is wrong
    assert code == 400, body
    assert body["parameter"] == parameter, body
    assert parameter in body["error"] or "query" in body["error"]
    assert "Traceback" not in body["error"] and "could not convert" not in body["error"]
    assert (set(sim.faults), sim.config.burst_factor) == before


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_on_and_off_switch_each_fault(control, fault):
    sim, base = control
    code, body = post(base, f"/faults/{fault}?on=1")
    assert code == 200 and body["on"] is True and fault in sim.faults
    code, body = post(base, f"/faults/{fault}?on=off")
    assert code == 200 and body["on"] is False and fault not in sim.faults


def test_burst_factor_is_set_with_the_fault(control):
    sim, base = control
    code, body = post(base, "/faults/burst?on=1&factor=2.5")
    assert code == 200 and body["burst_factor"] == 2.5 and "burst" in sim.faults
    code, body = post(base, "/faults/burst?on=0")
    assert code == 200 and "burst" not in sim.faults and sim.config.burst_factor == 2.5


def test_factor_on_another_fault_says_it_is_for_burst_only():
    with pytest.raises(ParamError, match="burst fault only") as info:
        parse_fault_request("silent", "on=1&factor=2")
    assert info.value.parameter == "factor"
    assert parse_fault_request("burst", "on=TRUE&factor=50") == (True, 50.0)
    assert parse_fault_request("slow", "on=0") == (False, None)
