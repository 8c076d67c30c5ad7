"""SimMdApi / SimTdApi against an in-process ctp-sim front: the full session and every fault."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from pydantic import SecretStr

from feedops import metric_names
from feedops.calendar import BEIJING, TradingCalendar
from feedops.sim import mdapi, tdapi
from feedops.sim.config import FAULTS, Credentials, SimConfig
from feedops.sim.testing import Recorder, SimThread

pytestmark = pytest.mark.integration

BROKER, USER, PASSWORD, APP, AUTH = "9999", "sim-user", "pw-sentinel-4b1d", "feedops_app", "authsentinel9e2c"


def make_config(**overrides) -> SimConfig:
    values = dict(port=0, instruments=150, seed=11, query_interval_seconds=0.5,
                  credentials=Credentials(BROKER, USER, SecretStr(PASSWORD), APP, SecretStr(AUTH)))
    values.update(overrides)
    return SimConfig(**values)


@pytest.fixture
def front():
    with SimThread(make_config()) as sim:
        yield sim


class MdSpi(mdapi.CThostFtdcMdSpi):
    """Logs in on every connect and (re)subscribes ``ids`` in batches, recording every callback."""

    def __init__(self, api, ids=(), password=PASSWORD, batch=50):
        super().__init__()
        self.api, self.ids, self.password, self.batch = api, list(ids), password, batch
        self.rec = Recorder()
        self.ticks: list[tuple] = []

    def OnFrontConnected(self):
        self.rec.add("connected")
        req = mdapi.CThostFtdcReqUserLoginField()
        req.BrokerID, req.UserID, req.Password = BROKER, USER, self.password
        self.rec.add("login_rc", self.api.ReqUserLogin(req, 1))

    def OnFrontDisconnected(self, reason):
        self.rec.add("disconnected", reason)

    def OnHeartBeatWarning(self, lapse):
        self.rec.add("heartbeat", lapse)

    def OnRspUserLogin(self, login, info, request_id, last):
        self.rec.add("login", info.ErrorID, login.TradingDay if info.ErrorID == 0 else None)
        if info.ErrorID == 0:
            for start in range(0, len(self.ids), self.batch):
                batch = [i.encode() for i in self.ids[start:start + self.batch]]
                self.rec.add("sub_rc", self.api.SubscribeMarketData(batch, len(batch)))

    def OnRspSubMarketData(self, instrument, info, request_id, last):
        self.rec.add("sub", instrument.InstrumentID, info.ErrorID, last)

    def OnRspError(self, info, request_id, last):
        self.rec.add("error", info.ErrorID)

    def OnRtnDepthMarketData(self, tick):
        self.ticks.append((tick.InstrumentID, tick.ExchangeID, tick.TradingDay, tick.ActionDay, tick.UpdateTime,
                           tick.UpdateMillisec, tick.Volume, tick.LastPrice, time.time()))
        self.rec.add("tick", tick.InstrumentID, type(tick))

    def ticked(self) -> set[str]:
        return {t[0] for t in list(self.ticks)}


class TdSpi(tdapi.CThostFtdcTraderSpi):
    def __init__(self, api, auth_code=AUTH, query=True):
        super().__init__()
        self.api, self.auth_code, self.query = api, auth_code, query
        self.rec = Recorder()
        self.instruments: list[tuple] = []

    def OnFrontConnected(self):
        self.rec.add("connected")
        req = tdapi.CThostFtdcReqAuthenticateField()
        req.BrokerID, req.UserID, req.AppID, req.AuthCode = BROKER, USER, APP, self.auth_code
        self.api.ReqAuthenticate(req, 1)

    def OnFrontDisconnected(self, reason):
        self.rec.add("disconnected", reason)

    def OnRspAuthenticate(self, field, info, request_id, last):
        self.rec.add("auth", info.ErrorID)
        if info.ErrorID == 0:
            req = tdapi.CThostFtdcReqUserLoginField()
            req.BrokerID, req.UserID, req.Password = BROKER, USER, PASSWORD
            self.api.ReqUserLogin(req, 2)

    def OnRspUserLogin(self, login, info, request_id, last):
        self.rec.add("login", info.ErrorID)
        if info.ErrorID == 0 and self.query:
            self.rec.add("qry_rc", self.api.ReqQryInstrument(tdapi.CThostFtdcQryInstrumentField(), 3))
            self.rec.add("qry_rc_in_flight", self.api.ReqQryInstrument(tdapi.CThostFtdcQryInstrumentField(), 4))

    def OnRspQryInstrument(self, instrument, info, request_id, last):
        if instrument is not None:
            self.instruments.append((instrument.InstrumentID, instrument.ExchangeID, instrument.ProductID,
                                     instrument.ProductClass, instrument.PriceTick))
        if last:
            self.rec.add("qry_done", request_id, len(self.instruments))

    def OnRspError(self, info, request_id, last):
        self.rec.add("error", info.ErrorID, request_id)

    def OnRtnInstrumentStatus(self, status):
        self.rec.add("status", status.ExchangeID, status.InstrumentID, status.InstrumentStatus)


class Clients:
    """Creates API objects and releases them the way the real library requires."""

    def __init__(self):
        self.apis = []

    def md(self, fronts, ids=(), **kw) -> MdSpi:
        api = mdapi.CThostFtdcMdApi.CreateFtdcMdApi("")
        spi = MdSpi(api, ids, **kw)
        api.RegisterSpi(spi)
        for url in fronts:
            api.RegisterFront(url)
        self.apis.append(api)
        return spi

    def td(self, fronts, **kw) -> TdSpi:
        api = tdapi.CThostFtdcTraderApi.CreateFtdcTraderApi("")
        spi = TdSpi(api, **kw)
        api.RegisterSpi(spi)
        for url in fronts:
            api.RegisterFront(url)
        self.apis.append(api)
        return spi

    def close(self):
        for api in self.apis:
            api.RegisterSpi(None)
            api.Release()


@pytest.fixture
def clients():
    made = Clients()
    yield made
    made.close()


def universe_ids(sim: SimThread) -> list[str]:
    return [inst.instrument_id for inst in sim.server.market.universe]


# ---------------------------------------------------------------------------- the happy path
def test_login_query_subscribe_and_every_instrument_ticks(front, clients):
    td = clients.td([front.url])
    td.api.Init()
    td.rec.wait(lambda r: r.named("qry_done"), what="instrument query")
    assert td.rec.named("auth") == [("auth", 0)] and td.rec.named("login") == [("login", 0)]
    assert td.rec.named("qry_rc") == [("qry_rc", 0)]
    assert td.rec.named("qry_rc_in_flight") == [("qry_rc_in_flight", -2)]  # one query in flight
    assert td.api.ReqQryInstrument(tdapi.CThostFtdcQryInstrumentField(), 5) == -3  # sooner than the front's rate
    ids = [i[0] for i in td.instruments]
    assert ids == universe_ids(front)
    statuses = td.rec.named("status")  # every product's trading phase after login: continuous trading
    assert statuses and {s[3] for s in statuses} == {"2"} and ("SHFE", "cu") in {s[1:3] for s in statuses}
    assert {i[3] for i in td.instruments} <= {"1", "2"} and all(i[4] > 0 for i in td.instruments)

    md = clients.md([front.url], ids)
    caller = threading.current_thread().name
    md.api.Init()
    md.rec.wait(lambda r: sum(1 for e in r.named("sub") if e[2] == 0) == len(ids), what="all subscriptions acknowledged")
    assert all(rc == ("sub_rc", 0) for rc in md.rec.named("sub_rc")) and len(md.rec.named("sub_rc")) == 3
    md.rec.wait(lambda r: md.ticked() == set(ids), timeout=15, what="a tick for every instrument")
    assert caller not in md.rec.threads  # callbacks come on the API's own thread
    tick_type = md.rec.named("tick")[0][2]
    assert issubclass(tick_type, mdapi.CThostFtdcDepthMarketDataField)
    name, exchange, trading_day, action_day, update_time, millisec, volume, price, _ = md.ticks[0]
    assert exchange in {"SHFE", "INE", "DCE", "CZCE", "CFFEX", "GFEX"}
    assert len(trading_day) == len(action_day) == 8 and update_time[2] == ":" and millisec in (0, 500)
    assert md.api.GetTradingDay() == md.rec.named("login")[0][2]


def test_unsubscribe_stops_the_ticks(front, clients):
    ids = universe_ids(front)[:4]
    md = clients.md([front.url], ids)
    md.api.Init()
    md.rec.wait(lambda r: md.ticked() == set(ids), what="ticks for 4 instruments")
    assert md.api.UnSubscribeMarketData([ids[0].encode()], 1) == 0
    md.rec.wait(lambda r: front.server.status()["sessions"][0]["subscribed"] == 3, what="the unsubscription")
    mark = len(md.ticks)
    md.rec.wait(lambda r: {t[0] for t in md.ticks[mark:]} == set(ids[1:]), what="ticks for the other 3")
    assert ids[0] not in {t[0] for t in md.ticks[mark:]}


def test_wrong_password_and_wrong_auth_code_are_refused(front, clients):
    md = clients.md([front.url], universe_ids(front)[:5], password="wrong")
    td = clients.td([front.url], auth_code="wrong")
    md.api.Init()
    td.api.Init()
    md.rec.wait(lambda r: r.named("login"), what="md login response")
    td.rec.wait(lambda r: r.named("auth"), what="authentication response")
    assert md.rec.named("login") == [("login", 3, None)]
    assert td.rec.named("auth") == [("auth", 63)] and not td.rec.named("login")
    assert md.api.SubscribeMarketData([b"x"], 1) == 0  # sent; the front answers "not logged in"
    md.rec.wait(lambda r: r.named("error"), what="not-logged-in error")
    assert md.rec.named("error") == [("error", 4)]


def test_garbage_and_malformed_requests_do_not_hurt_the_front(front, clients):
    import json
    import socket

    from feedops.sim import protocol as P

    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as junk:
        junk.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert junk.recv(100) == b""  # the front hangs up on non-protocol bytes
    with socket.create_connection(("127.0.0.1", front.port), timeout=5) as odd:
        odd.sendall(P.json_frame(P.HELLO, {"kind": "md"}) + P.json_frame(P.REQ, {"op": "sub", "req": 5, "data": {"ids": 7}}))
        received = bytearray()
        while b"malformed" not in received:
            chunk = odd.recv(65536)
            assert chunk
            received += chunk
        frames = P.split_frames(received)
        assert [k for k, _ in frames][0] == P.WELCOME
        assert json.loads(frames[-1][1])[0][:4] == ["OnRspError", None, None, 1]
    md = clients.md([front.url], universe_ids(front)[:3])
    md.api.Init()
    md.rec.wait(lambda r: len(md.ticks) >= 3, what="ticks for a well-behaved client")


def test_calls_before_connecting_return_minus_one_and_str_ids_raise(clients):
    api = mdapi.CThostFtdcMdApi.CreateFtdcMdApi("")
    clients.apis.append(api)
    assert api.SubscribeMarketData([b"rb2601"], 1) == -1
    assert api.ReqUserLogin(mdapi.CThostFtdcReqUserLoginField(), 1) == -1
    with pytest.raises(TypeError):
        api.SubscribeMarketData(["rb2601"], 1)
    assert "ctp-sim" in mdapi.CThostFtdcMdApi.GetApiVersion()


def test_release_inside_a_callback_does_not_deadlock(front):
    api = mdapi.CThostFtdcMdApi.CreateFtdcMdApi("")
    released = threading.Event()

    class Spi(mdapi.CThostFtdcMdSpi):
        def OnFrontConnected(self):
            api.Release()
            released.set()

    api.RegisterSpi(Spi())
    api.RegisterFront(front.url)
    api.Init()
    assert released.wait(10)
    joiner = threading.Thread(target=api.Join, daemon=True)
    joiner.start()
    joiner.join(10)
    assert not joiner.is_alive()


def test_subscription_cap_per_session(clients):
    with SimThread(make_config(max_sub=10)) as sim:
        md = clients.md([sim.url], universe_ids(sim)[:12])
        md.api.Init()
        md.rec.wait(lambda r: len(r.named("sub")) == 12, what="12 subscription responses")
        errors = [e[2] for e in md.rec.named("sub")]
        assert errors == [0] * 10 + [6000, 6000]


def test_second_front_takes_over_when_the_first_dies(clients):
    with SimThread(make_config()) as first, SimThread(make_config()) as second:
        ids = universe_ids(first)[:20]
        md = clients.md([first.url, second.url], ids)
        md.api.Init()
        md.rec.wait(lambda r: r.count("login") == 1 and md.ticked(), what="ticks from the first front")
        first.stop()
        md.rec.wait(lambda r: r.named("disconnected"), what="the disconnect")
        assert md.rec.named("disconnected")[0] == ("disconnected", 4097)
        md.rec.wait(lambda r: r.count("login") == 2, what="login on the second front")
        before = len(md.ticks)
        md.rec.wait(lambda r: len(md.ticks) > before + 20, what="ticks from the second front")
        assert md.api.current_front == ("127.0.0.1", second.port)


# ---------------------------------------------------------------------------- faults
def test_every_fault_is_tested_here():
    tested = {name[len("test_fault_"):] for name in globals() if name.startswith("test_fault_")}
    assert tested == set(FAULTS)


def test_fault_disconnect(front, clients):
    md = clients.md([front.url], universe_ids(front)[:10])
    md.api.Init()
    md.rec.wait(lambda r: r.named("login"), what="login")
    front.set_fault("disconnect")
    md.rec.wait(lambda r: r.count("disconnected") >= 2, what="repeated disconnects")  # accept-then-close, ~1 s apart
    assert {e[1] for e in md.rec.named("disconnected")} == {4097}
    assert md.rec.count("connected") == 1
    front.set_fault("disconnect", False)
    md.rec.wait(lambda r: r.count("login") == 2, what="reconnect and login again")
    assert md.api.SubscribeMarketData([b"x"], 1) == 0


def test_fault_silent(clients):
    with SimThread(make_config(faults={"silent"})) as sim:
        md = clients.md([sim.url])
        md.api.heartbeat_warning_seconds = 1.0
        md.api.Init()
        md.rec.wait(lambda r: r.named("heartbeat"), what="OnHeartBeatWarning")
        assert md.rec.count("connected") == 0 and md.rec.count("disconnected") == 0
        sim.set_fault("silent", False)
        md.rec.wait(lambda r: r.named("login"), what="the front answering again")
        assert md.rec.named("login")[0][1] == 0


def test_fault_refuse_login(front, clients):
    front.set_fault("refuse_login")
    md = clients.md([front.url])
    md.api.Init()
    md.rec.wait(lambda r: r.named("login"), what="login response")
    assert md.rec.named("login") == [("login", 3, None)]


def test_fault_flow_control(front, clients):
    front.set_fault("flow_control")
    td = clients.td([front.url])
    td.api.Init()
    td.rec.wait(lambda r: r.named("error"), what="OnRspError")
    assert td.rec.named("error") == [("error", 90, 3)]
    assert not td.instruments
    front.set_fault("flow_control", False)
    deadline = time.monotonic() + 5
    while td.api.ReqQryInstrument(tdapi.CThostFtdcQryInstrumentField(), 9) == -3:  # local rate limit
        assert time.monotonic() < deadline
        time.sleep(0.05)
    td.rec.wait(lambda r: r.named("qry_done"), what="the query succeeding after the fault")
    refusals = front.server.metrics.registry.get_sample_value(metric_names.SIM_QUERY_REFUSALS.name, {"reason": "fault"})
    assert refusals == 1


def test_fault_dead_instruments(clients):
    with SimThread(make_config(faults={"dead_instruments"}, dead_share=0.2)) as sim:
        ids = universe_ids(sim)
        dead = {ids[i] for i, is_dead in enumerate(sim.server.market.dead) if is_dead}
        assert 0 < len(dead) < len(ids)
        md = clients.md([sim.url], ids)
        md.api.Init()
        md.rec.wait(lambda r: md.ticked() == set(ids) - dead, timeout=15, what="every live instrument")
        rounds_before = sim.server._slice_no // sim.server.slices_per_round()
        md.rec.wait(lambda r: sim.server._slice_no // sim.server.slices_per_round() >= rounds_before + 2,
                    what="two more tick rounds")
        assert not md.ticked() & dead


def test_fault_replay(front, clients):
    ids = universe_ids(front)[:10]
    md = clients.md([front.url], ids)
    md.api.Init()
    md.rec.wait(lambda r: len(md.ticks) >= 30, what="some ticks")
    front.set_fault("replay")

    def went_backwards(_r):
        highest: dict[str, int] = {}
        for name, *_, volume, _price, _at in list(md.ticks):
            if volume < highest.get(name, 0):
                return True
            highest[name] = max(volume, highest.get(name, 0))
        return False

    md.rec.wait(went_backwards, what="replayed (older) ticks")


def test_fault_date_quirks(front, clients):
    calendar = TradingCalendar("always-open")
    front.set_fault("date_quirks")
    md = clients.md([front.url], universe_ids(front))
    md.api.Init()
    wanted = {"SHFE", "DCE", "CZCE"}
    md.rec.wait(lambda r: wanted <= {t[1] for t in list(md.ticks)}, what="ticks from SHFE, DCE and CZCE")
    today = dt.datetime.now(BEIJING).date()
    night_trading_day = calendar.next_trading_day(today).strftime("%Y%m%d")
    today_text = today.strftime("%Y%m%d")
    dates = {t[1]: (t[2], t[3]) for t in list(md.ticks)}
    assert dates["SHFE"] == (night_trading_day, today_text)  # right: trading day, calendar date
    assert dates["DCE"] == (night_trading_day, night_trading_day)  # ActionDay wrong
    assert dates["CZCE"] == (today_text, today_text)  # TradingDay wrong


def _ticks_per_instrument(md: MdSpi, sim: SimThread, rounds: int) -> float:
    start_slice = sim.server._slice_no
    start = len(md.ticks)
    md.rec.wait(lambda r: sim.server._slice_no >= start_slice + rounds * 50, timeout=20, what=f"{rounds} rounds")
    return (len(md.ticks) - start) / len(md.ids)


def test_fault_burst(front, clients):
    md = clients.md([front.url], universe_ids(front)[:20])
    md.api.Init()
    md.rec.wait(lambda r: len(md.ticks) >= 20, what="first ticks")
    normal = _ticks_per_instrument(md, front, 3)  # ~3 per instrument in 1.5 s
    front.set_fault("burst")
    burst = _ticks_per_instrument(md, front, 3)  # ~12 with burst_factor 4
    assert normal <= 4.5 and burst >= 2 * normal, (normal, burst)


def test_fault_slow(clients):
    with SimThread(make_config(slow_delay_ms=3000)) as sim:
        md = clients.md([sim.url], universe_ids(sim)[:5])
        md.api.Init()
        md.rec.wait(lambda r: len(md.ticks) >= 10, what="first ticks")

        def lag(tick) -> float:
            stamp = dt.datetime.strptime(tick[3] + tick[4], "%Y%m%d%H:%M:%S").replace(tzinfo=BEIJING)
            return tick[8] - (stamp.timestamp() + tick[5] / 1000)

        baseline = max(lag(t) for t in md.ticks[:10])  # stamp granularity (0/500 ms) plus machine load
        sim.set_fault("slow")
        start = len(md.ticks)
        md.rec.wait(lambda r: len(md.ticks) >= start + 20, timeout=15, what="delayed ticks")
        late = [lag(t) for t in md.ticks[start + 10:start + 20]]
        assert min(late) > 2.5 and min(late) > baseline + 2.0, (baseline, late)
