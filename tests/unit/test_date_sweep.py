"""The dates chosen to break things (tests/clock_support.SWEEP), end to end in process.

At each date the exchange calendar, the simulator's ticks (with each exchange's date
quirk), the worker's date normalisation and the health check's market verdict must agree
with a table written from the exchanges' rules (docs/ops/worker.md), not computed by the
code under test. The clock is moved with time-machine for code that reads it itself.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from clock_support import SWEEP
from feedops import clock
from feedops.calendar import BEIJING, HOLIDAYS_FILE, TradingCalendar, load_holidays
from feedops.health import checks as ck
from feedops.sim import protocol as P
from feedops.sim.config import SimConfig
from feedops.sim.server import SimServer
from feedops.worker.ticks import Normaliser
from test_worker_ticks import fields

ALL = {"SHFE", "INE", "DCE", "CZCE", "CFFEX", "GFEX"}
#: name -> (trading day, exchanges that tick, the calendar date the ticks carry as ActionDay)
EXPECTED = {
    "month-end": ("20261130", ALL, "20261130"),  # Monday afternoon, every exchange in session
    "year-end": ("20270104", set(), None),  # no night session before New Year's Day; 2027-01-04 next
    "new-year": ("20270104", set(), None),  # the holiday itself
    "pre-holiday": ("20261008", set(), None),  # no night session before National Day; 8 Oct next
    "friday-night": ("20261130", {"SHFE", "INE", "DCE", "CZCE"}, "20261127"),  # night -> Monday; GFEX has none
    "saturday-night": ("20261130", {"SHFE", "INE"}, "20261128"),  # only au, ag, sc run to 02:30
    "monday-open": ("20261130", set(), None),  # 08:59: a minute early
    "holiday": ("20261008", set(), None),
    "weekend": ("20261130", set(), None),
}
#: what each exchange sends as (TradingDay, ActionDay) at night, the quirks the worker must undo
RAW_AT_NIGHT = {"SHFE": ("T", "A"), "INE": ("T", "A"), "GFEX": ("T", "A"), "DCE": ("T", "T"), "CZCE": ("A", "A")}


def calendar() -> TradingCalendar:
    return TradingCalendar("exchange", load_holidays(HOLIDAYS_FILE))


def sim_ticks(at: dt.datetime) -> list[tuple[str, str, str, str, str]]:
    """One full round of the sim at ``at``: (instrument, exchange, TradingDay, ActionDay, UpdateTime)."""
    server = SimServer(SimConfig(port=0, instruments=600), calendar(), clock=lambda: at.timestamp())
    server.market.subscribers[:] = 1
    sent = []

    def capture(due, ticks):
        for index, record in zip(due, ticks):
            fields = P.TICK.unpack(record.tobytes())
            inst = server.market.universe[index]
            sent.append((inst.instrument_id, inst.exchange, fields[1].decode(), fields[2].decode(), fields[3].decode()))

    server._distribute = capture
    for _ in range(server.slices_per_round()):
        server._tick_slice()
    return sent


def test_the_sweep_covers_every_date_the_issue_names():
    assert set(EXPECTED) == set(SWEEP)


@pytest.mark.parametrize("name", sorted(SWEEP))
def test_calendar_at(name):
    at = SWEEP[name]
    trading_day, exchanges, _ = EXPECTED[name]
    cal = calendar()
    assert cal.trading_day(at).strftime("%Y%m%d") == trading_day
    assert cal.any_open(at) is bool(exchanges)
    with time_machine.travel(at, tick=False):  # code that reads the clock itself sees the same instant
        assert clock.now(BEIJING) == at and cal.trading_day(clock.now()) == cal.trading_day(at)


@pytest.mark.parametrize("name", sorted(SWEEP))
def test_sim_ticks_carry_each_exchanges_dates_at(name):
    at = SWEEP[name]
    trading_day, exchanges, action_day = EXPECTED[name]
    sent = sim_ticks(at)
    assert {exchange for _, exchange, *_ in sent} == exchanges
    for _, exchange, sent_trading_day, sent_action_day, update_time in sent:
        assert update_time == at.strftime("%H:%M:%S")
        kinds = RAW_AT_NIGHT[exchange] if action_day != trading_day else ("T", "T")
        expected = tuple(trading_day if kind == "T" else action_day for kind in kinds)
        assert (sent_trading_day, sent_action_day) == expected, exchange


@pytest.mark.parametrize("name", sorted(name for name, (_, exchanges, _) in EXPECTED.items() if exchanges))
def test_worker_normalises_the_sims_ticks_at(name):
    at = SWEEP[name]
    trading_day, _, action_day = EXPECTED[name]
    sent = sim_ticks(at)
    normaliser = Normaliser(calendar(), {instrument: exchange for instrument, exchange, *_ in sent})
    normaliser.session_trading_day = trading_day  # what the market-data login answers at ``at``
    for instrument, exchange, sent_trading_day, sent_action_day, update_time in sent:
        record = normaliser.normalise(fields(InstrumentID=instrument, ExchangeID=exchange, TradingDay=sent_trading_day,
                                             ActionDay=sent_action_day, UpdateTime=update_time), at.timestamp())
        assert (record["trading_day"], record["action_day"]) == (trading_day, action_day), exchange
        assert record["exchange_ts"] == pytest.approx(at.timestamp())


@pytest.mark.parametrize("name", sorted(SWEEP))
def test_health_market_verdict_at(name):
    at = SWEEP[name]
    trading_day, exchanges, _ = EXPECTED[name]
    cal = calendar()
    results = ck.market_checks(cal, at, cal.any_open(at), None)
    market = next(r for r in results if r.key == "market:open")
    assert market.observed_value is bool(exchanges)
    if exchanges:
        assert f"trading day {dt.datetime.strptime(trading_day, '%Y%m%d').date()}" in market.output
    else:
        assert "market closed" in market.output and "next session" in market.output
    horizon = [r for r in results if r.key == "calendar:holiday-list"]
    # shipped list: 2026 complete, 2027 not: quiet before December, a warning from 1 December on
    assert bool(horizon) is (at.month == 12 or at.year >= 2027)
