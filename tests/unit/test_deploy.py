"""deploy/: the systemd units pass `systemd-analyze verify`, the crontab's commands exist and
run (--dry-run), the two schedules are the same, and a scheduled run records and pushes its
outcome, a skipped one included.

The units name the checkout at /opt/feedops (the install prefix); the tests install them
into a temporary unit directory with the prefix replaced by this checkout, so that
`systemd-analyze verify` finds every ExecStart. Each dry-run moves the clock
(FEEDOPS_CLOCK_AT) to the line's own weekday and time in a fixed week, so no result
depends on today's date.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from feedops.calendar import BEIJING
from validate_support import ROOT, clean_environ, write_secrets

DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("feedops-*@.*"))
PREFIX = "/opt/feedops"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
#: the Monday of the fixed week the dry-runs are dated in (2026-11-30 .. 2026-12-05: no holiday)
WEEK = dt.date(2026, 11, 30)
DOW = {"Mon": 0, "Tue": 1, "Wed": 2, "Thu": 3, "Fri": 4, "Sat": 5, "Sun": 6}
#: the environment each unit is instantiated for in the tests (the drill runs on ctp-sim)
INSTANCE = {"health": "prod", "premarket": "prod", "shutdown": "prod", "drill": "dev"}

needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None and not os.environ.get("CI"),
                                   reason="systemd-analyze missing: apt-get install systemd (.ci/run does this)")


def install_units(target: Path, units: list[Path] = UNITS) -> list[Path]:
    """Copy the units with the prefix replaced by this checkout; one instance link per template."""
    target.mkdir(parents=True, exist_ok=True)
    instances = []
    for unit in units:
        (target / unit.name).write_text(unit.read_text().replace(PREFIX, str(ROOT)))
        job = unit.name.split("@")[0].removeprefix("feedops-")
        link = target / unit.name.replace("@.", f"@{INSTANCE[job]}.")
        link.symlink_to(unit.name)
        instances.append(link)
    return instances


def verify(paths: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run([SYSTEMD_ANALYZE or "systemd-analyze", "verify", *map(str, paths)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})


@needs_systemd
def test_every_unit_passes_systemd_analyze_verify(tmp_path):
    assert {u.name for u in UNITS} == {f"feedops-{j}@.{k}" for j in INSTANCE for k in ("service", "timer")}
    done = verify(install_units(tmp_path))
    # verify exits 0 on warnings (an unknown key is only "ignoring"): a clean unit prints nothing
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr + done.stdout


@needs_systemd
def test_verify_catches_a_missing_command_and_a_bad_key(tmp_path):
    links = install_units(tmp_path, [DEPLOY / "systemd" / "feedops-health@.service"])
    unit = tmp_path / "feedops-health@.service"
    unit.write_text(unit.read_text().replace("start_live_env.sh", "no_such_script.sh"))
    assert verify(links).returncode != 0
    unit.write_text(unit.read_text().replace("no_such_script.sh", "start_live_env.sh").replace("[Service]", "[Service]\nBogus=1"))
    assert "Unknown key" in verify(links).stderr


def test_timers_do_not_catch_up_and_services_are_oneshot():
    for unit in UNITS:
        text = unit.read_text()
        if unit.suffix == ".timer":
            assert "Persistent=false" in text and "WantedBy=timers.target" in text, unit.name
        else:
            assert "Type=oneshot" in text and f"ExecStart={PREFIX}/scripts/operations/start_live_env.sh" in text, unit.name


# ---------------------------------------------------------------- crontab
def crontab() -> tuple[dict[str, str], list[tuple[list[str], str]]]:
    """(variables, [(five time fields, command)]) of deploy/crontab."""
    variables, jobs = {}, []
    for line in (DEPLOY / "crontab").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        var = re.match(r"^([A-Z_]+)=(\S*)$", line)
        if var:
            variables[var.group(1)] = var.group(2)
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"not a crontab line: {line}"
        jobs.append((fields[:5], fields[5]))
    return variables, jobs


def _expand(field: str, low: int, high: int) -> set[int]:
    if field == "*":
        return set(range(low, high + 1))
    values = set()
    for part in field.split(","):
        first, _, last = part.partition("-")
        values |= set(range(int(first), int(last or first) + 1))
    assert values and min(values) >= low and max(values) <= high, f"{field} outside {low}-{high}"
    return values


def cron_slots(fields: list[str]) -> set[tuple[int, str]]:
    """(weekday Mon=0, HH:MM) pairs of a crontab line (dom and mon must be *)."""
    minute, hour, dom, month, dow = fields
    assert dom == "*" and month == "*", "the schedule is by weekday and time only"
    days = {(d - 1) % 7 for d in _expand(dow, 0, 7)}  # cron: 0 and 7 are Sunday
    return {(d, f"{h:02d}:{m:02d}") for d in days for h in _expand(hour, 0, 23) for m in _expand(minute, 0, 59)}


def timer_slots(unit: Path) -> set[tuple[int, str]]:
    slots = set()
    for spec in re.findall(r"^OnCalendar=(.+)$", unit.read_text(), re.M):
        if spec == "*-*-* *:*:00":
            slots |= cron_slots(["*", "*", "*", "*", "*"])
            continue
        days, date, time_, tz = spec.split()
        assert date == "*-*-*" and tz == "Asia/Shanghai", spec
        first, _, last = days.partition("..")
        slots |= {(d, time_[:5]) for d in range(DOW[first], DOW[last or first] + 1)}
    return slots


def commands(command: str) -> list[list[str]]:
    """The programs of a crontab command (split at ';'), without redirections."""
    words = shlex.split(command.replace(";", " ; "))
    parts, current = [], []
    for word in words + [";"]:
        if word == ";":
            parts.append(current)
            current = []
        elif not re.match(r"^\d?>>?|^2>&1$", word):
            current.append(word)
    return [p for p in parts if p]


def job_of(argv: list[str]) -> str:
    return next(w for w in argv if w in INSTANCE)


def test_crontab_and_timers_schedule_the_same_runs():
    _, jobs = crontab()
    by_job: dict[str, set] = {}
    for fields, command in jobs:
        job = job_of(commands(command)[0])
        by_job.setdefault(job, set()).update(cron_slots(fields))
    for job in INSTANCE:
        assert by_job.get(job) == timer_slots(DEPLOY / "systemd" / f"feedops-{job}@.timer"), job


def test_crontab_host_settings_are_deploy_host_env():
    variables, _ = crontab()
    host = dict(line.split("=", 1) for line in (DEPLOY / "host.env").read_text().splitlines()
                if line and not line.startswith("#"))
    assert host and {k: variables.get(k) for k in host} == host


def dry_run_env(tmp_path: Path, variables: dict[str, str]) -> dict[str, str]:
    secrets = write_secrets(tmp_path / "etc-secrets")
    secrets.chmod(0o700)
    env = clean_environ(FEEDOPS_STATE_DIR=str(tmp_path / "state"), DOCKER_STUB_LOG=str(tmp_path / "docker.calls"))
    env.update({k: v.replace("/etc/feedops/secrets", str(secrets)) for k, v in variables.items()
                if k not in ("SHELL", "CRON_TZ")})
    env["PATH"] = f"{ROOT / 'tests' / 'bats' / 'stubs'}:{env['PATH']}"  # docker: the recording stub
    return env


def dated(slot: tuple[int, str]) -> str:
    day, hhmm = slot
    when = dt.datetime.combine(WEEK + dt.timedelta(days=day), dt.time.fromisoformat(hhmm), tzinfo=BEIJING)
    return when.isoformat()


def run_dry(argv: list[str], env: dict[str, str], clock: str) -> subprocess.CompletedProcess:
    if argv[0] == "env":  # env -u VAR ... PROGRAM ARGS: unset as env(1) would
        while argv[1] == "-u":
            env = {k: v for k, v in env.items() if k != argv[2]}
            argv = [argv[0], *argv[3:]]
        argv = argv[1:]
    program = Path(argv[0].replace(PREFIX, str(ROOT)))
    assert program.is_file() and os.access(program, os.X_OK), f"{argv[0]} does not exist in the checkout"
    return subprocess.run([str(program), *argv[1:], "--dry-run"], env={**env, "FEEDOPS_CLOCK_AT": clock},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_every_crontab_command_exists_and_runs_dry(tmp_path):
    variables, jobs = crontab()
    env = dry_run_env(tmp_path, variables)
    for fields, command in jobs:
        slot = sorted(cron_slots(fields))[0]
        for argv in commands(command):
            done = run_dry(argv, env, dated(slot))
            assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
            mode = job_of(argv)
            assert "plan:" in done.stdout or "dry-run:" in done.stdout, done.stdout
            if "--scheduled" in argv:
                assert f"plan: scheduled {mode}: run" in done.stdout, done.stdout
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").rglob("*.last.json"))  # dry: nothing recorded


def test_every_unit_command_runs_dry(tmp_path):
    variables = dict(line.split("=", 1) for line in (DEPLOY / "host.env").read_text().splitlines()
                     if line and not line.startswith("#"))
    env = dry_run_env(tmp_path, variables)
    for unit in (u for u in UNITS if u.suffix == ".service"):
        job = unit.name.split("@")[0].removeprefix("feedops-")
        unit_env = env if "EnvironmentFile=" in unit.read_text() else dry_run_env(tmp_path, {})
        slot = sorted(timer_slots(unit.with_suffix(".timer")))[0]
        for line in re.findall(r"^Exec(?:Start|StopPost)=(.+)$", unit.read_text(), re.M):
            done = run_dry(shlex.split(line.replace("%i", INSTANCE[job])), unit_env, dated(slot))
            assert done.returncode == 0, f"{unit.name}: {line}: {done.stderr[-2000:]}"
        assert job == "health" or f"plan: scheduled {job}: run" in subprocess.run(
            [str(ROOT / "scripts/operations/start_live_env.sh"), job, "--env", INSTANCE[job], "--scheduled", "--dry-run"],
            env={**unit_env, "FEEDOPS_CLOCK_AT": dated(slot)}, capture_output=True, text=True, timeout=120).stdout


def test_compose_health_runs_the_checker_in_a_one_off_container(tmp_path):
    """On a compose host the health check runs in the worker's image on the project network
    (service names resolve, /run/secrets exists), even when the worker is down."""
    variables, _ = crontab()
    done = run_dry([f"{PREFIX}/scripts/operations/start_live_env.sh", "health"], dry_run_env(tmp_path, variables),
                   dated((2, "10:00")))
    assert done.returncode == 0, done.stderr
    assert "--project-name feedops-prod" in done.stdout
    assert "run --rm --no-deps -T worker python scripts/operations/check_feed_health.py --env prod --format nagios" in done.stdout


# ---------------------------------------------------------------- outcomes reach the Pushgateway
def scheduled(mode: str, clock: str, tmp_path: Path, pushgateway_url: str) -> subprocess.CompletedProcess:
    env = clean_environ(FEEDOPS_STATE_DIR=str(tmp_path / "state"), FEEDOPS_CALENDAR="exchange",
                        FEEDOPS_PUSHGATEWAY_ENABLED="true", FEEDOPS_PUSHGATEWAY_URL=pushgateway_url,
                        FEEDOPS_PROMETHEUS_ENABLED="false", FEEDOPS_ALERTMANAGER_ENABLED="false",
                        FEEDOPS_CLOCK_AT=clock, FEEDOPS_LOG_FORMAT="json")
    return subprocess.run([str(ROOT / "scripts/operations/start_live_env.sh"), mode, "--env", "dev", "--scheduled"],
                          env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)


def pushed(url: str, metric: str) -> dict[str, float]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(rf"^{metric}\{{([^}}]*)\}} (\S+)$", text, re.M)}


@pytest.mark.integration
def test_a_skipped_run_is_recorded_and_pushed_but_is_no_success(tmp_path, pushgateway):
    done = scheduled("premarket", "2026-10-01T08:30:00+08:00", tmp_path, pushgateway.url)  # National Day
    assert done.returncode == 0, done.stderr
    assert "scheduled premarket skipped: 2026-10-01 (Thursday) is not a trading day" in done.stderr
    run = (tmp_path / "state" / "runs" / "premarket.last.json").read_text()
    assert '"outcome": "SKIPPED"' in run and '"last_success_ts": null' in run
    last_run = [v for k, v in pushed(pushgateway.url, "feedops_runbook_last_run_timestamp_seconds").items()
                if 'mode="premarket"' in k and 'env="dev"' in k]
    assert last_run, "the skipped run pushed no last-run time"
    codes = [v for k, v in pushed(pushgateway.url, "feedops_runbook_exit_code").items() if 'mode="premarket"' in k]
    assert codes == [0.0]
    assert not [k for k in pushed(pushgateway.url, "feedops_runbook_last_success_timestamp_seconds") if 'mode="premarket"' in k]


@pytest.mark.integration
def test_a_late_premarket_is_refused_recorded_and_pushed(tmp_path, pushgateway):
    done = scheduled("premarket", "2026-12-02T09:10:00+08:00", tmp_path, pushgateway.url)
    assert done.returncode == 76, done.stderr  # SCHEDULE_REFUSED
    assert "scheduled premarket refused: the day session of 2026-12-02 opened at 09:00" in done.stderr
    assert not (tmp_path / "state" / "pids").exists() or not any((tmp_path / "state" / "pids").iterdir())  # nothing started
    codes = [v for k, v in pushed(pushgateway.url, "feedops_runbook_exit_code").items() if 'mode="premarket"' in k]
    assert codes == [76.0]


def test_scheduled_and_format_are_refused_where_they_do_not_apply(tmp_path):
    env = clean_environ(FEEDOPS_STATE_DIR=str(tmp_path / "state"))
    for argv, words in ((["restart", "--scheduled"], "--scheduled is only for premarket, shutdown and drill"),
                        (["health", "--format", "xml"], "--format must be nagios, text or json"),
                        (["status", "--format", "text"], "--format is only for health")):
        done = subprocess.run([str(ROOT / "scripts/operations/start_live_env.sh"), *argv], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 64 and words in done.stderr, (argv, done.stderr)


@pytest.mark.integration
def test_the_health_mode_pushes_the_checkers_verdict_even_with_no_feed(tmp_path, pushgateway):
    """Nothing runs: the check reports it, pushes CRITICAL or UNKNOWN, and the mode exits HEALTH_FAILED (69)."""
    from feedops import metric_names as mn

    env = clean_environ(FEEDOPS_STATE_DIR=str(tmp_path / "state"), FEEDOPS_PUSHGATEWAY_ENABLED="true",
                        FEEDOPS_PUSHGATEWAY_URL=pushgateway.url, FEEDOPS_WORKER_URLS=f"http://127.0.0.1:{_free_port()}",
                        FEEDOPS_PROMETHEUS_ENABLED="false", FEEDOPS_ALERTMANAGER_ENABLED="false", FEEDOPS_ENV="dev")
    done = subprocess.run([str(ROOT / "scripts/operations/start_live_env.sh"), "health", "--format", "json"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 69, done.stderr[-2000:]
    text = urllib.request.urlopen(f"{pushgateway.url}/metrics", timeout=5).read().decode()
    pushed_status = [line for line in text.splitlines()
                     if line.startswith("feedops_check_status{") and 'checker="check_feed_health"' in line
                     and f'job="{mn.PUSH_JOB_HEALTH}"' in line]
    assert pushed_status and float(pushed_status[0].rsplit(" ", 1)[1]) in (2.0, 3.0), text[-2000:]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_systemd
def test_systemd_fires_the_timers_at_the_beijing_times_of_the_crontab():
    """systemd itself computes the elapses of each timer over a fixed week (--base-time): in
    Beijing time they are the crontab's weekdays and times, whatever the host's zone."""
    start = dt.datetime.combine(WEEK, dt.time(0, 0), tzinfo=BEIJING)
    for job in ("premarket", "shutdown", "drill"):
        timer = DEPLOY / "systemd" / f"feedops-{job}@.timer"
        expected = timer_slots(timer)
        fired = set()
        for spec in re.findall(r"^OnCalendar=(.+)$", timer.read_text(), re.M):
            done = subprocess.run([SYSTEMD_ANALYZE or "systemd-analyze", "calendar", f"--iterations={len(expected)}",
                                   f"--base-time={start.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC", spec],
                                  capture_output=True, text=True, timeout=30, env={**os.environ, "TZ": "UTC"})
            assert done.returncode == 0, done.stderr
            for stamp in re.findall(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", done.stdout):
                when = dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.timezone.utc).astimezone(BEIJING)
                if when < start + dt.timedelta(days=7):
                    fired.add((when.weekday(), f"{when:%H:%M}"))
        assert fired == expected, (job, sorted(fired ^ expected))
