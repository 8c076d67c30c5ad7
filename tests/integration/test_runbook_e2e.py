"""start_live_env.sh end to end on the native runtime with two ctp-sim fronts.

One stack per module (premarket is the expensive step), driven through the real
runbook script: premarket reaches healthy; a bad configuration fails a restart and
``rollback`` restores the last-known-good snapshot; the primary sim dies and
``failover --to backup`` recovers; ``shutdown`` leaves no process behind. Everything
runs in a temporary state dir on free loopback ports, so a dev stack is never touched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from clock_support import SWEEP, child_environ
from conftest import ROOT, free_port, wait_for
from feedops import clock
from feedops.calendar import HOLIDAYS_FILE, TradingCalendar, load_holidays
from feedops.exitcodes import Runbook
from feedops.runbook.binaries import BINARIES, INSTALL_HINT, find_binary

pytestmark = pytest.mark.integration

RUNBOOK = ROOT / "scripts" / "operations" / "start_live_env.sh"
SENTINEL = "e2eSntl7q"  # CTP auth codes are at most 16 characters
REQUIRED = ("ctp_sim.py", "full_feed_subscription.py", "check_feed_health.py", "validate_env.py")


def _fronts(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


def stack_environ(tmp: Path) -> dict[str, str]:
    """A dev stack of its own: state, secrets, sink and free loopback ports under ``tmp``."""
    secrets = tmp / "secrets"
    secrets.mkdir(mode=0o700)
    for var in ("CTP_PRIMARY_PASSWORD", "CTP_PRIMARY_AUTH_CODE", "CTP_BACKUP_PASSWORD", "CTP_BACKUP_AUTH_CODE"):
        (secrets / var).write_text(f"{SENTINEL}{var[4]}{var[-1]}")
    primary, backup, worker = free_port(), free_port(), free_port()
    environ = child_environ(("FEEDOPS_", "CTP_PRIMARY_", "CTP_BACKUP_"))
    environ.update({
        "FEEDOPS_STATE_DIR": str(tmp / "state"), "FEEDOPS_SECRETS_DIR": str(secrets),
        "FEEDOPS_SINK_URL": f"file:{tmp / 'feed'}", "FEEDOPS_FLOW_DIR": str(tmp / "flow"), "FEEDOPS_CACHE_DIR": str(tmp / "cache"),
        "FEEDOPS_WORKER_LISTEN": f"127.0.0.1:{worker}", "FEEDOPS_WORKER_URLS": f"http://127.0.0.1:{worker}",
        "CTP_PRIMARY_MD_FRONTS": _fronts(primary), "CTP_PRIMARY_TD_FRONTS": _fronts(primary),
        "CTP_BACKUP_MD_FRONTS": _fronts(backup), "CTP_BACKUP_TD_FRONTS": _fronts(backup),
        "FEEDOPS_SIM_INSTRUMENTS": "200", "FEEDOPS_LOG_FORMAT": "json",
        "LOCPATH": str(ROOT / ".venv" / "locale"),
        # envs/dev.env enables the native monitoring stack: here on free ports, data in the temp dir
        "FEEDOPS_MONITORING_DIR": str(tmp / "monitoring"),
        "FEEDOPS_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "FEEDOPS_ALERTMANAGER_URL": f"http://127.0.0.1:{free_port()}",
        "FEEDOPS_PUSHGATEWAY_URL": f"http://127.0.0.1:{free_port()}",
    })
    return environ


def stop_stack(environ: dict[str, str]) -> None:
    """Stop whatever a stack left running, through its pid files, by pid."""
    subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "feedops.runbook", "--runtime", "native", "stop",
                    "--kind", "all", "--timeout", "10"], env=environ, cwd=ROOT, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    missing = [s for s in REQUIRED if not (ROOT / "scripts" / "operations" / s).exists()]
    if missing:
        pytest.skip(f"runbook e2e needs {', '.join(missing)}")
    environ = stack_environ(tmp_path_factory.mktemp("runbook"))
    yield environ
    stop_stack(environ)  # whatever a failed test left running


def runbook(environ: dict[str, str], *args: str, timeout: float = 120, **overrides: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(RUNBOOK), *args, "--runtime", "native"], env={**environ, **overrides}, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert SENTINEL not in proc.stdout + proc.stderr, "a secret leaked into the runbook's output"
    return proc


def worker_status(environ: dict[str, str]) -> dict:
    with urllib.request.urlopen(f"{environ['FEEDOPS_WORKER_URLS']}/status", timeout=2) as resp:
        return json.loads(resp.read())


def pid_records(environ: dict[str, str]) -> dict[str, dict]:
    pid_dir = Path(environ["FEEDOPS_STATE_DIR"]) / "pids"
    return {p.stem: json.loads(p.read_text()) for p in pid_dir.glob("*.pid")} if pid_dir.is_dir() else {}


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def explain(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


def test_premarket_reaches_healthy_and_marks_last_good(env):
    proc = runbook(env, "premarket")
    assert proc.returncode == Runbook.OK, explain(proc)
    assert "ready: 1/1 worker(s) ready" in proc.stdout
    assert "feedops health:" in proc.stdout  # the health summary is printed
    state = Path(env["FEEDOPS_STATE_DIR"])
    success = json.loads((state / "runs" / "premarket.last-success").read_text())
    assert success["env"] == "dev" and success["profile"] == "primary"
    good = json.loads((state / "last-good.json").read_text())
    snapshot = json.loads((state / "snapshots" / f"{good['snapshot']}.json").read_text())
    assert snapshot["values"]["CTP_PRIMARY_MD_FRONTS"] == env["CTP_PRIMARY_MD_FRONTS"]
    assert not any("PASSWORD" in k or "AUTH_CODE" in k for k in snapshot["values"])
    assert sorted(pid_records(env)) == sorted(["sim-backup", "sim-primary", "worker-0", *installed_monitoring()])
    assert worker_status(env)["profile"] == "primary"
    for line in proc.stderr.splitlines():
        assert json.loads(line)["component"], line  # every line of every program is a JSON log line


def installed_monitoring() -> list[str]:
    """The monitoring components premarket starts in dev on this machine (those installed)."""
    return [name for name in ("prometheus", "alertmanager", "pushgateway") if find_binary(BINARIES[name][0])]


def prometheus_get(environ: dict[str, str], path: str) -> dict:
    with urllib.request.urlopen(f"{environ['FEEDOPS_PROMETHEUS_URL']}{path}", timeout=5) as resp:
        return json.loads(resp.read())["data"]


def test_premarket_brings_up_the_monitoring_stack(env):
    """Prometheus scrapes every target of the rendered native config (worker, both sims, Pushgateway,
    Alertmanager, itself), each with the env label; the runbook's validation and health check pushed
    (with env); status shows them."""
    if installed_monitoring() != ["prometheus", "alertmanager", "pushgateway"]:
        pytest.skip(f"needs the Debian monitoring binaries: {INSTALL_HINT}")

    def all_up():
        targets = prometheus_get(env, "/api/v1/targets")["activeTargets"]
        return targets if targets and all(t["health"] == "up" for t in targets) else None

    targets = wait_for(all_up, timeout=60, interval=0.5, what="every Prometheus target up")
    assert sorted({t["labels"]["job"] for t in targets}) == ["alertmanager", "ctp-sim", "feedops-worker", "prometheus",
                                                             "pushgateway"]
    assert {t["labels"]["env"] for t in targets} == {"dev"}

    def pushed():  # the monitoring starts before validate_env: its outcome is pushed too
        result = prometheus_get(env, "/api/v1/query?query=feedops_check_status")["result"]
        return result if {r["metric"]["checker"] for r in result} == {"validate_env", "check_feed_health"} else None

    result = wait_for(pushed, timeout=30, interval=0.5, what="validate_env's and the health check's pushes in Prometheus")
    assert {r["metric"]["env"] for r in result} == {"dev"}
    assert wait_for(lambda: prometheus_get(env, "/api/v1/alertmanagers")["activeAlertmanagers"], timeout=30,
                    what="Prometheus to discover Alertmanager")
    rules = [r["name"] for g in prometheus_get(env, "/api/v1/rules")["groups"] for r in g["rules"]]
    if "Watchdog" in rules:  # the dead man's switch reaches Alertmanager within a minute of the start
        am = env["FEEDOPS_ALERTMANAGER_URL"]
        wait_for(lambda: json.loads(urllib.request.urlopen(f"{am}/api/v2/alerts?filter=alertname%3D%22Watchdog%22",
                                                           timeout=5).read()), timeout=60, interval=1,
                 what="the Watchdog alert at Alertmanager")
    proc = runbook(env, "status")
    assert proc.returncode == Runbook.OK, explain(proc)
    for name in installed_monitoring():
        assert re.search(rf"^\s+{name}\s+running \(pid \d+\)", proc.stdout, re.M), proc.stdout
    assert f"{env['FEEDOPS_PROMETHEUS_URL']}/targets" in proc.stdout


def test_second_run_while_one_holds_the_lock(env):
    lock = Path(env["FEEDOPS_STATE_DIR"]) / "runbook.lock"
    holder = subprocess.Popen(["sleep", "60"])
    try:
        lock.write_text(f"pid={holder.pid} mode=premarket started=now\n")
        proc = runbook(env, "restart")
        assert proc.returncode == Runbook.LOCK_HELD, explain(proc)
        assert f"pid={holder.pid} mode=premarket" in proc.stderr
    finally:
        holder.kill()
        holder.wait()
        lock.unlink()


def test_rollback_restores_last_good_snapshot_after_a_bad_config(env):
    dead = _fronts(free_port())
    bad = {"CTP_PRIMARY_MD_FRONTS": dead, "CTP_PRIMARY_TD_FRONTS": dead}
    proc = runbook(env, "restart", "--timeout", "3", **bad)
    assert proc.returncode == Runbook.NOT_READY, explain(proc)
    assert "waiting: 0/1 ready" in proc.stdout  # progress lines while waiting
    # the bad setting is still in the environment: the snapshot must win over it
    proc = runbook(env, "rollback", **bad)
    assert proc.returncode == Runbook.OK, explain(proc)
    front = worker_status(env)["front"]
    assert front["address"] == env["CTP_PRIMARY_MD_FRONTS"] and front["logged_in"], front
    state = Path(env["FEEDOPS_STATE_DIR"])
    assert json.loads((state / "pin.json").read_text())["reason"] == "rollback"
    assert json.loads((state / "runs" / "restart.last.json").read_text())["outcome"] == "NOT_READY"
    assert json.loads((state / "runs" / "rollback.last.json").read_text())["outcome"] == "OK"


def make(environ: dict[str, str], target: str, **overrides: str) -> subprocess.CompletedProcess:
    """``make TARGET ARGS='--runtime native'`` in the checkout, as an operator runs it."""
    clean = {k: v for k, v in {**environ, **overrides}.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    proc = subprocess.run(["make", "-C", str(ROOT), target, "ARGS=--runtime native"], env=clean, capture_output=True,
                          text=True, timeout=180)
    assert SENTINEL not in proc.stdout + proc.stderr, "a secret leaked into the runbook's output"
    return proc


def worker_environ(environ: dict[str, str]) -> dict[str, str]:
    """The environment the running worker (its supervisor's child) was started with (the configuration it runs)."""
    pid = json.loads((Path(environ["FEEDOPS_STATE_DIR"]) / "supervisor" / "worker-0.json").read_text())["child_pid"]
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_make_rollback_with_two_releases_lands_on_the_earlier_and_status_shows_it(tmp_path):
    """Release A, then release B (another configuration), then
    `make rollback` runs A again (its snapshot beats B's settings still in the environment) and
    `make status` marks A as the running release; one more rollback has nothing before A (71)."""
    environ = stack_environ(tmp_path)
    for name in ("PROMETHEUS", "ALERTMANAGER", "PUSHGATEWAY"):  # releases are the point here
        environ[f"FEEDOPS_{name}_ENABLED"] = "false"
    release_b = {"FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS": "0.35"}
    try:
        proc = runbook(environ, "premarket")
        assert proc.returncode == Runbook.OK, explain(proc)
        assert runbook(environ, "shutdown").returncode == Runbook.OK
        proc = runbook(environ, "premarket", **release_b)
        assert proc.returncode == Runbook.OK, explain(proc)
        assert worker_environ(environ).get("FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS") == "0.35"
        ledger = json.loads((Path(environ["FEEDOPS_STATE_DIR"]) / "ledger.json").read_text())["entries"]
        release_a, release_b_id = (e["release"] for e in ledger if e["kind"] == "release")
        assert release_a != release_b_id
        proc = make(environ, "rollback", **release_b)
        assert proc.returncode == Runbook.OK, explain(proc)
        assert f"rollback: RELEASE={release_a} " in proc.stdout
        assert "ready: 1/1 worker(s) ready" in proc.stdout
        worker = worker_environ(environ)  # restarted on A's snapshot: its batch interval, not B's
        assert worker["FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS"] != "0.35"
        proc = make(environ, "status", **release_b)
        assert proc.returncode == Runbook.OK, explain(proc)
        marked = [line for line in proc.stdout.splitlines() if line.startswith("  * ")]
        assert len(marked) == 1 and marked[0].split()[1] == release_a, proc.stdout
        assert re.search(rf"^    {release_b_id} ", proc.stdout, re.M), proc.stdout
        proc = runbook(environ, "rollback", **release_b)
        assert proc.returncode == Runbook.ROLLBACK_FAILED, explain(proc)
        assert "is the oldest recorded" in proc.stdout + proc.stderr
        assert worker_status(environ)["front"]["logged_in"]  # the failed rollback stopped nothing
        assert runbook(environ, "shutdown").returncode == Runbook.OK
    finally:
        stop_stack(environ)


def test_native_rollback_runs_the_earlier_revision_from_its_own_tree(tmp_path):
    """Native releases are revisions: release A on one commit, release B on the next; rollback exports
    A's tree (git archive) and the worker runs from it (then the sims too, on the next start). The checkout is a shared clone
    (FEEDOPS_HOME) that gets an empty commit, so the repository under test is never written to."""
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    home = tmp_path / "checkout"
    subprocess.run(["git", "clone", "--quiet", "--shared", "--no-checkout", str(ROOT), str(home)], check=True, timeout=120)
    subprocess.run(["git", "-C", str(home), "checkout", "--quiet", "--detach", "HEAD"], check=True, timeout=120)
    git = ["git", "-C", str(home), "-c", "user.name=e2e", "-c", "user.email=e2e@localhost"]
    rev_a = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    environ = stack_environ(tmp_path)
    environ["FEEDOPS_HOME"] = str(home)
    for name in ("PROMETHEUS", "ALERTMANAGER", "PUSHGATEWAY"):
        environ[f"FEEDOPS_{name}_ENABLED"] = "false"
    try:
        proc = runbook(environ, "premarket")
        assert proc.returncode == Runbook.OK, explain(proc)
        assert runbook(environ, "shutdown").returncode == Runbook.OK
        subprocess.run([*git, "commit", "--quiet", "--allow-empty", "-m", "release B"], check=True, timeout=60)
        proc = runbook(environ, "premarket")
        assert proc.returncode == Runbook.OK, explain(proc)
        assert pid_records(environ)["worker-0"]["argv"][1].startswith(str(home))
        proc = runbook(environ, "rollback")
        assert proc.returncode == Runbook.OK, explain(proc)
        assert f"REVISION={rev_a} " in proc.stdout
        tree = Path(environ["FEEDOPS_STATE_DIR"]) / "releases" / rev_a
        records = pid_records(environ)  # rollback restarts the worker; the fronts (sims) keep running
        assert str(tree / "scripts" / "operations" / "full_feed_subscription.py") in records["worker-0"]["argv"]
        worker = worker_environ(environ)  # the worker itself, under its supervisor
        assert worker["PYTHONPATH"] == str(tree / "lib") and worker["FEEDOPS_HOME"] == str(home)
        assert worker_status(environ)["front"]["logged_in"]
        proc = runbook(environ, "status")
        marked = [line for line in proc.stdout.splitlines() if line.startswith("  * ")]
        assert len(marked) == 1 and f"rev {rev_a[:12]}" in marked[0], proc.stdout
        assert runbook(environ, "shutdown").returncode == Runbook.OK
        proc = runbook(environ, "premarket")  # pinned: a new start runs the sims from that revision too
        assert proc.returncode == Runbook.OK, explain(proc)
        assert all(any(a.startswith(str(tree / "scripts")) for a in r["argv"]) for r in pid_records(environ).values()), \
            pid_records(environ)
        assert runbook(environ, "shutdown").returncode == Runbook.OK
    finally:
        stop_stack(environ)


def test_rotation_to_wrong_credentials_restores_the_previous_ones(env, tmp_path):
    rotated = tmp_path / "rotated"
    rotated.mkdir(mode=0o700)
    for var in ("CTP_PRIMARY_PASSWORD", "CTP_PRIMARY_AUTH_CODE", "CTP_BACKUP_PASSWORD", "CTP_BACKUP_AUTH_CODE"):
        (rotated / var).write_text(f"{SENTINEL}x{var[-1]}")  # the front (ctp-sim) still expects the old ones
    proc = runbook(env, "rotate", "--secrets-dir", str(rotated), "--timeout", "10")  # margin for a cold start on a busy CI machine
    assert proc.returncode == Runbook.ROTATION_FAILED, explain(proc)
    assert "restoring the previous ones" in proc.stderr
    assert "logged in" in proc.stdout  # the progress lines show why: the front refused the new credentials
    state = Path(env["FEEDOPS_STATE_DIR"])
    pin = json.loads((state / "pin.json").read_text())
    assert pin["values"]["FEEDOPS_SECRETS_DIR"] == env["FEEDOPS_SECRETS_DIR"]  # the rollback pin, as before
    front = worker_status(env)["front"]
    assert front["logged_in"] and front["address"] == env["CTP_PRIMARY_MD_FRONTS"], front


def test_failover_to_backup_after_the_primary_dies(env):
    primary = pid_records(env)["sim-primary"]["pid"]
    os.killpg(primary, 9)
    proc = runbook(env, "failover", "--to", "backup")
    assert proc.returncode == Runbook.OK, explain(proc)
    assert "ready on profile backup" in proc.stdout
    status = worker_status(env)
    assert status["profile"] == "backup" and status["front"]["address"] == env["CTP_BACKUP_MD_FRONTS"], status["front"]
    ledger = json.loads((Path(env["FEEDOPS_STATE_DIR"]) / "ledger.json").read_text())["entries"]
    assert ledger[-1]["kind"] == "profile" and ledger[-1]["from"] == "primary" and ledger[-1]["profile"] == "backup"


def test_a_sigkilled_worker_is_restarted_by_its_supervisor_counted_and_pushed(env):
    """The runbook started the worker under its supervisor: SIGKILL of the worker itself (not the group) is
    followed by a new worker 1 s later (docs/ops/supervisor.md: within 2 s), ready again on the same profile;
    the restart is in the state, in `status`, and pushed to the stack's Pushgateway, where Prometheus has it."""
    state = Path(env["FEEDOPS_STATE_DIR"])
    record_file = state / "supervisor" / "worker-0.json"
    before = json.loads(record_file.read_text())
    profile = worker_status(env)["profile"]
    os.kill(before["child_pid"], 9)
    record = wait_for(lambda: (r := json.loads(record_file.read_text()))["child_pid"] not in (None, before["child_pid"])
                      and r, timeout=30, what="the supervisor starts a new worker")
    assert record["restarts"] == before["restarts"] + 1 and record["last_exit"] == -9
    assert record["started_ts"] - record["last_exit_ts"] <= 2.0
    wait_for(lambda: worker_status(env)["ready"], timeout=60, interval=0.2, what="the restarted worker ready")
    assert worker_status(env)["profile"] == profile
    assert pid_records(env)["worker-0"]["pid"] != record["child_pid"]  # the pid file names the supervisor
    proc = runbook(env, "status")
    assert re.search(rf"worker-0 .* restarts {record['restarts']}, last killed by SIGKILL", proc.stdout), proc.stdout
    if installed_monitoring() == ["prometheus", "alertmanager", "pushgateway"]:
        query = "/api/v1/query?query=feedops_supervisor_restarts_total%7Bcomponent%3D%22worker-0%22%7D"
        wait_for(lambda: [r for r in prometheus_get(env, query)["result"] if float(r["value"][1]) == record["restarts"]],
                 timeout=60, interval=0.5, what="the restart count pushed and scraped")


def test_shutdown_leaves_no_process_behind(env):
    pids = [r["pid"] for r in pid_records(env).values()]
    assert pids
    proc = runbook(env, "shutdown")
    assert proc.returncode == Runbook.OK, explain(proc)
    assert not [p for p in pids if alive(p)]
    assert pid_records(env) == {}


def test_run_outcomes_are_pushed_to_a_real_pushgateway(pushgateway, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "CTP_PRIMARY_PASSWORD").write_text(SENTINEL)
    environ = child_environ(("FEEDOPS_", "CTP_PRIMARY_", "CTP_BACKUP_"))
    environ.update({"FEEDOPS_STATE_DIR": str(tmp_path / "state"), "FEEDOPS_SECRETS_DIR": str(secrets),
                    "FEEDOPS_PUSHGATEWAY_ENABLED": "true", "FEEDOPS_PUSHGATEWAY_URL": pushgateway.url})

    def record(mode: str, rc: int, duration: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-m", "feedops.runbook", "--runtime", "native", "record",
                               "--mode", mode, "--rc", str(rc), "--duration", duration], env={**environ, **extra}, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)

    assert record("premarket", 0, "9.5").returncode == 0
    assert record("restart", Runbook.NOT_READY, "31").returncode == 0
    with urllib.request.urlopen(f"{pushgateway.url}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    lines = [line for line in metrics.splitlines() if line.startswith("feedops_")]
    assert any(line.startswith("feedops_runbook_exit_code{") and 'mode="premarket"' in line and line.endswith(" 0") for line in lines)
    assert any(line.startswith("feedops_runbook_exit_code{") and 'mode="restart"' in line and line.endswith(f" {int(Runbook.NOT_READY)}") for line in lines)
    assert any(line.startswith("feedops_runbook_duration_seconds{") and 'mode="premarket"' in line and line.endswith(" 9.5") for line in lines)
    assert any(line.startswith("feedops_runbook_last_success_timestamp_seconds{") and 'mode="premarket"' in line for line in lines)
    assert not any(line.startswith("feedops_runbook_last_success_timestamp_seconds{") and 'mode="restart"' in line for line in lines)
    assert any(line.startswith("feedops_active_profile{") and 'profile="primary"' in line and line.endswith(" 1") for line in lines)
    assert SENTINEL not in metrics
    # Pushgateway down: the outcome is still recorded, the push failure is a warning, the exit code unchanged
    dead = f"http://127.0.0.1:{free_port()}"
    proc = record("failover", 0, "1", FEEDOPS_PUSHGATEWAY_URL=dead)
    assert proc.returncode == 0 and "runbook.push.failed" in proc.stderr and dead in proc.stderr
    assert json.loads((tmp_path / "state" / "runs" / "failover.last.json").read_text())["exit_code"] == 0
    # a native shutdown stops its own Pushgateway with the feed: the failed push is expected, logged at INFO
    proc = record("shutdown", 0, "1", FEEDOPS_PUSHGATEWAY_URL=dead)
    assert proc.returncode == 0 and "runbook.push.failed" not in proc.stderr and "runbook.push.skipped" in proc.stderr
    assert json.loads((tmp_path / "state" / "runs" / "shutdown.last.json").read_text())["exit_code"] == 0


@pytest.mark.dates
def test_premarket_at_a_moved_date(request, tmp_path, clock_at):
    """The whole pre-market on the sim at another date (--clock-at, else New Year's Eve 22:00): the sim,
    the worker and the checks all read FEEDOPS_CLOCK_AT, so the sink files the ticks under the trading
    day of that date, whatever today is."""
    at = clock_at if request.config.getoption("--clock-at") else SWEEP["year-end"]
    environ = stack_environ(tmp_path)
    environ[clock.ENV_VAR] = clock.anchored(at)
    for name in ("PROMETHEUS", "ALERTMANAGER", "PUSHGATEWAY"):  # the feed's dates are the point here
        environ[f"FEEDOPS_{name}_ENABLED"] = "false"
    try:
        proc = runbook(environ, "premarket")
        assert proc.returncode == Runbook.OK, explain(proc)
        dev_calendar = TradingCalendar("always-open", load_holidays(HOLIDAYS_FILE))  # envs/dev.env's
        expected = dev_calendar.trading_day(at).strftime("%Y%m%d")
        assert worker_status(environ)["trading_day"] == expected
        days = sorted(p.name for p in (tmp_path / "feed").iterdir())
        assert days == [expected], f"ticks filed under {days}, expected the trading day of {at} ({expected})"
        stopped = runbook(environ, "shutdown")
        assert stopped.returncode == Runbook.OK, explain(stopped)  # names a component that did not stop
    finally:
        stop_stack(environ)
