"""The sim's tick generation against the exchange calendar: sessions, night dates, each exchange's date quirk."""

from __future__ import annotations

import datetime as dt

from feedops.calendar import BEIJING, HOLIDAYS_FILE, TradingCalendar, load_holidays
from feedops.sim import protocol as P
from feedops.sim.config import SimConfig
from feedops.sim.server import SimServer


def ticks_at(local: dt.datetime, faults: set[str] | None = None) -> dict[str, tuple[str, str, str]]:
    """Run one full round of slices at Beijing time ``local``; return instrument -> (TradingDay, ActionDay, exchange)."""
    calendar = TradingCalendar("exchange", load_holidays(HOLIDAYS_FILE))
    server = SimServer(SimConfig(port=0, instruments=400, faults=set(faults or ())), calendar,
                       clock=lambda: local.timestamp())
    server.market.subscribers[:] = 1
    sent: dict[str, tuple[str, str, str]] = {}

    def capture(due, ticks):
        for index, record in zip(due, ticks):
            fields = P.TICK.unpack(record.tobytes())
            assert fields[0] == index
            inst = server.market.universe[index]
            sent[inst.instrument_id] = (fields[1].decode(), fields[2].decode(), inst.exchange)

    server._distribute = capture
    for _ in range(server.slices_per_round()):
        server._tick_slice()
    return sent


MONDAY = dt.datetime(2026, 12, 7, tzinfo=BEIJING)


def at(day: dt.datetime, hhmm: str) -> dt.datetime:
    hour, minute = map(int, hhmm.split(":"))
    return day.replace(hour=hour, minute=minute)


def by_exchange(sent, exchange):
    return {v[:2] for v in sent.values() if v[2] == exchange}


def test_shfe_and_ine_send_five_levels_the_others_one():
    calendar = TradingCalendar("exchange", load_holidays(HOLIDAYS_FILE))
    server = SimServer(SimConfig(port=0, instruments=400), calendar, clock=lambda: at(MONDAY, "10:00").timestamp())
    server.market.subscribers[:] = 1
    seen: dict[str, list] = {}

    def capture(due, ticks):
        for index, record in zip(due, ticks):
            seen.setdefault(server.market.universe[index].exchange, []).append(record)

    server._distribute = capture
    for _ in range(server.slices_per_round()):
        server._tick_slice()
    assert set(seen) == {"SHFE", "INE", "DCE", "CZCE", "CFFEX", "GFEX"}
    for exchange, records in seen.items():
        for record in records:
            bids = [record["bid"], *(record[f"bid{k}"] for k in range(2, 6))]
            asks = [record["ask"], *(record[f"ask{k}"] for k in range(2, 6))]
            volumes = [record[f"{side}_volume{k}"] for k in range(2, 6) for side in ("bid", "ask")]
            if exchange in ("SHFE", "INE"):
                assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
                assert len(set(bids)) == 5 and min(volumes) >= 1
            else:
                assert {*bids[1:], *asks[1:]} == {P.TICK_DTYPE["bid2"].type(1.7976931348623157e308)}
                assert set(volumes) == {0}


def test_weekend_nothing_ticks():
    assert ticks_at(at(MONDAY - dt.timedelta(days=2), "10:00")) == {}


def test_day_session_all_exchanges_tick_with_plain_dates():
    sent = ticks_at(at(MONDAY, "10:00"))
    assert {v[2] for v in sent.values()} == {"SHFE", "INE", "DCE", "CZCE", "CFFEX", "GFEX"}
    assert {v[:2] for v in sent.values()} == {("20261207", "20261207")}


def test_lunch_break_then_cffex_first():
    assert ticks_at(at(MONDAY, "12:30")) == {}  # everything closed
    sent = ticks_at(at(MONDAY, "13:15"))  # CFFEX resumes at 13:00, commodities at 13:30
    assert {v[2] for v in sent.values()} == {"CFFEX"}


def test_night_session_dates_follow_each_exchanges_quirk():
    sent = ticks_at(at(MONDAY, "22:00"))
    assert "CFFEX" not in {v[2] for v in sent.values()} and "GFEX" not in {v[2] for v in sent.values()}
    assert by_exchange(sent, "SHFE") == {("20261208", "20261207")}  # right
    assert by_exchange(sent, "DCE") == {("20261208", "20261208")}  # ActionDay is the trading day
    assert by_exchange(sent, "CZCE") == {("20261207", "20261207")}  # TradingDay is the calendar date
    assert any(name.startswith("cu") for name in sent) and any(name.startswith("rb") for name in sent)


def test_after_23_only_late_night_products():
    sent = ticks_at(at(MONDAY, "23:30"))
    products = {name.rstrip("0123456789") for name in sent}
    assert "cu" in products and "au" in products and "rb" not in products and "m" not in products


def test_friday_night_belongs_to_monday():
    sent = ticks_at(at(MONDAY - dt.timedelta(days=3), "21:30"))
    assert by_exchange(sent, "SHFE") == {("20261207", "20261204")}


def test_date_quirks_fault_shows_night_dates_by_day():
    sent = ticks_at(at(MONDAY, "10:00"), {"date_quirks"})
    assert by_exchange(sent, "SHFE") == {("20261208", "20261207")}
    assert by_exchange(sent, "DCE") == {("20261208", "20261208")}
    assert by_exchange(sent, "CZCE") == {("20261207", "20261207")}


def test_dead_instruments_never_tick_about_the_configured_share():
    everything = ticks_at(at(MONDAY, "10:00"))
    alive = ticks_at(at(MONDAY, "10:00"), {"dead_instruments"})
    missing = set(everything) - set(alive)
    assert set(alive) < set(everything)
    assert 0.05 * len(everything) < len(missing) < 0.2 * len(everything)  # --dead-share 0.1


class _Transport:
    def __init__(self):
        self.frames: list[bytes] = []

    def is_closing(self):
        return False

    def write(self, data):
        self.frames.append(data)

    def get_write_buffer_size(self):
        return 0


def test_trading_phase_changes_reach_trader_sessions():
    import json

    from feedops.sim.session import Session

    now = [at(MONDAY, "10:14").replace(second=59).timestamp()]
    calendar = TradingCalendar("exchange", load_holidays(HOLIDAYS_FILE))
    server = SimServer(SimConfig(port=0, instruments=400), calendar, clock=lambda: now[0])
    trader = Session(server)
    trader.transport, trader.kind, trader.logged_in = _Transport(), "td", True
    server.sessions.add(trader)
    server._tick_slice()  # 10:14:59: no change since the server started
    assert trader.transport.frames == []
    now[0] += 2  # 10:15:01: the commodity morning break starts, CFFEX keeps trading
    server._tick_slice()
    items = [item for frame in trader.transport.frames for item in json.loads(P.split_frames(bytearray(frame))[0][1])]
    assert {item[0] for item in items} == {"OnRtnInstrumentStatus"}
    last = {(item[2]["ExchangeID"], item[2]["InstrumentID"]): item[2]["InstrumentStatus"] for item in items}
    assert last[("SHFE", "cu")] == "6" and last[("DCE", "m")] == "6"
    assert set(last.values()) == {"6"} and ("CFFEX", "IF") not in last  # only what changed
