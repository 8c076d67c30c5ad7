"""The ctp-sim front as a process: CLI, control endpoint, metrics, kill and restart, secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from clock_support import child_environ
from feedops.calendar import HOLIDAYS_FILE, TradingCalendar, load_holidays
from feedops.exitcodes import Sim
from feedops.paths import SCHEMAS_DIR
from feedops.polling import free_port
from feedops.settings import FeedSettings
from feedops.sim import mdapi
from feedops.sim.testing import Recorder
from feedops.sim.universe import generate

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "operations" / "ctp_sim.py"
SENTINEL = "pw-sentinel-51ab7c"


class SimProcess:
    def __init__(self, tmp_path: Path, port: int, control: int, *extra: str):
        secrets = tmp_path / "secrets"
        secrets.mkdir(exist_ok=True)
        (secrets / "CTP_PRIMARY_PASSWORD").write_text(SENTINEL + "\n")
        env = child_environ()
        env.update(FEEDOPS_SECRETS_DIR=str(secrets), LOCPATH=str(ROOT / ".venv" / "locale"))
        self.log_path = tmp_path / f"sim-{port}-{len(list(tmp_path.iterdir()))}.log"
        self.control_url = f"http://127.0.0.1:{control}"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), "--env", "dev", "--listen", f"127.0.0.1:{port}",
                                      "--control", f"127.0.0.1:{control}", "--instruments", "60", "--log-format",
                                      "json", *extra], stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.control_url + path, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def post(self, path: str) -> tuple[int, str]:
        request = urllib.request.Request(self.control_url + path, method="POST", data=b"")
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def wait_ready(self) -> None:
        Recorder().wait(lambda _r: self._healthy(), timeout=30, what="the sim's /healthz")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"sim exited {self.proc.returncode}: {self.output()}")
        try:
            return self.get("/healthz")[0] == 200
        except OSError:
            return False

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture
def sims():
    started: list[SimProcess] = []
    yield started
    for sim in started:
        sim.stop()


class Spi(mdapi.CThostFtdcMdSpi):
    def __init__(self, api, password, ids):
        super().__init__()
        self.api, self.password, self.ids, self.rec = api, password, ids, Recorder()

    def OnFrontConnected(self):
        self.rec.add("connected")
        req = mdapi.CThostFtdcReqUserLoginField()
        req.BrokerID, req.UserID, req.Password = "9999", "dev-primary", self.password
        self.api.ReqUserLogin(req, 1)

    def OnFrontDisconnected(self, reason):
        self.rec.add("disconnected", reason)

    def OnRspUserLogin(self, login, info, request_id, last):
        self.rec.add("login", info.ErrorID)
        if info.ErrorID == 0:
            self.api.SubscribeMarketData(self.ids, len(self.ids))

    def OnRtnDepthMarketData(self, tick):
        self.rec.add("tick", tick.InstrumentID)


def client(port: int, password: str, ids: list[bytes]) -> tuple[object, Spi]:
    api = mdapi.CThostFtdcMdApi.CreateFtdcMdApi("")
    spi = Spi(api, password, ids)
    api.RegisterSpi(spi)
    api.RegisterFront(f"tcp://127.0.0.1:{port}")
    api.Init()
    return api, spi


def release(api) -> None:
    api.RegisterSpi(None)
    api.Release()


def nearest_futures(at, products: tuple[str, ...]) -> list[bytes]:
    """The nearest listed future of each product in the dev sim's 60-instrument universe at ``at``:
    derived from the universe, never written down (it moves every month)."""
    calendar = TradingCalendar("always-open", load_holidays(HOLIDAYS_FILE))
    universe = generate(60, FeedSettings.model_fields["sim_seed"].default, calendar.trading_day(at))
    return [next(i.instrument_id for i in universe if i.product == product and not i.is_option).encode()
            for product in products]


@pytest.mark.dates
def test_cli_front_control_metrics_kill_and_restart(tmp_path, sims, clock_at):
    port, control = free_port(), free_port()
    sim = SimProcess(tmp_path, port, control)
    sims.append(sim)
    sim.wait_ready()
    status = json.loads(sim.get("/status")[1])
    assert status["instruments"] == 60 and status["calendar"] == "always-open"  # dev: FEEDOPS_CALENDAR=always-open
    ids = nearest_futures(clock_at, ("cu", "m"))  # SHFE and DCE

    good_api, good = client(port, SENTINEL, ids)
    bad_api, bad = client(port, "not-the-password", ids)
    try:
        good.rec.wait(lambda r: r.count("tick") >= 4, what="ticks after a good login")
        bad.rec.wait(lambda r: r.named("login"), what="the bad login's answer")
        assert good.rec.named("login") == [("login", 0)] and bad.rec.named("login") == [("login", 3)]

        # runtime faults through the control endpoint
        assert sim.post("/faults/refuse_login?on=1")[0] == 200
        assert 'feedops_sim_fault_active{fault="refuse_login"} 1.0' in sim.get("/metrics")[1]
        code, body = sim.post("/faults/nonsense?on=1")
        assert code == 404 and "unknown fault 'nonsense'" in body
        assert sim.post("/faults/refuse_login?on=0")[0] == 200
        code, body = sim.post("/faults/burst?on=1&factor=2.5")
        assert code == 200 and json.loads(body)["burst_factor"] == 2.5
        assert json.loads(sim.get("/status")[1])["slices_per_round"] == 20  # 500 ms / 2.5 over 10 ms slices
        code, body = sim.post("/faults/burst?on=1&factor=99")
        assert code == 400 and "burst factor 99.0 is out of range; fix: use 1-50" in body
        code, body = sim.post("/faults/silent?on=1&factor=2")
        assert code == 400 and "burst fault only" in body
        assert not json.loads(sim.get("/faults")[1])["silent"]["on"]  # the refused request changed nothing
        assert sim.post("/faults/burst?on=0")[0] == 200
        faults = json.loads(sim.get("/faults")[1])
        assert faults["refuse_login"]["on"] is False and set(faults) >= {"disconnect", "silent", "slow"}
        metrics = sim.get("/metrics")[1]
        assert 'feedops_sim_logins_total{result="ok"} 1.0' in metrics
        assert 'feedops_sim_logins_total{result="failed"} 1.0' in metrics
        assert 'feedops_sim_sessions{kind="md"} 2.0' in metrics
        assert "feedops_sim_ticks_sent_total{" in metrics

        # killing the sim: OnFrontDisconnected(4097); a restart on the same port: reconnect and login
        sim.stop(signal.SIGKILL)
        good.rec.wait(lambda r: r.named("disconnected"), what="the disconnect after kill")
        assert good.rec.named("disconnected")[0] == ("disconnected", 4097)
        restarted = SimProcess(tmp_path, port, control)
        sims.append(restarted)
        restarted.wait_ready()
        good.rec.wait(lambda r: r.count("login") == 2, timeout=15, what="login after the restart")
        before = good.rec.count("tick")
        good.rec.wait(lambda r: r.count("tick") >= before + 4, what="ticks after the restart")
        for path in ("/metrics", "/status", "/faults"):
            assert SENTINEL not in restarted.get(path)[1]
    finally:
        release(good_api)
        release(bad_api)
    assert restarted.stop() == Sim.OK
    schema = json.loads((SCHEMAS_DIR / "log-line.schema.json").read_text())
    for output in (sim.output(), restarted.output()):
        assert SENTINEL not in output
        lines = [line for line in output.splitlines() if line.strip()]
        assert lines and "Traceback" not in output
        for line in lines:
            jsonschema.validate(json.loads(line), schema)


def test_fault_at_start_and_bad_fault_name(tmp_path, sims):
    port, control = free_port(), free_port()
    sim = SimProcess(tmp_path, port, control, "--fault", "disconnect,slow")
    sims.append(sim)
    sim.wait_ready()
    assert json.loads(sim.get("/status")[1])["faults"] == ["disconnect", "slow"]
    api, spi = client(port, SENTINEL, [])
    try:
        spi.rec.wait(lambda r: r.count("disconnected") >= 2, what="accept-then-close disconnects")
        assert {e[1] for e in spi.rec.named("disconnected")} == {4097} and not spi.rec.named("connected")
    finally:
        release(api)
    bad = subprocess.run([sys.executable, str(SCRIPT), "--listen", "127.0.0.1:1", "--fault", "meteor"],
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, LOCPATH=str(ROOT / ".venv" / "locale")))
    assert bad.returncode == Sim.USAGE
    assert bad.stderr.strip().count("\n") == 0 and "unknown fault meteor" in bad.stderr
