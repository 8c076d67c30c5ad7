"""validate_env.py as operators run it: exit codes, table, JSON report, every bad input."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from feedops.exitcodes import Check
from feedops.validate import check_ids, run_checklist
from validate_support import (
    SENTINEL_AUTH_CODE,
    SENTINEL_PASSWORD,
    assert_clean_output,
    check,
    clean_environ,
    dev_environ,
    run_validate,
    validate_report,
    write_secrets,
)


def test_dev_env_json_report_is_valid_and_passes(tmp_path):
    proc = run_validate(["--json"], dev_environ(tmp_path))
    assert proc.returncode == Check.OK, proc.stdout + proc.stderr
    report = validate_report(proc.stdout)
    assert report["status"] == "pass" and report["exit_code"] == 0 and report["env"] == "dev"
    assert [c["id"] for c in report["checks"]] == check_ids()
    assert report["env_file"].endswith("envs/dev.env")
    # probes and the ctp-only locale check are reported as skipped, with the reason
    assert check(report, "probe.sink")["status"] == "skip" and "--probe" in check(report, "probe.sink")["summary"]
    assert check(report, "locale.gb18030")["status"] == "skip"
    assert_clean_output(proc)


def test_table_lists_every_check_and_the_verdict(tmp_path):
    proc = run_validate([], dev_environ(tmp_path))
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    for check_id in check_ids():
        assert any(line.split()[1:2] == [check_id] for line in lines), check_id
    assert lines[-1].startswith("result: PASS (exit 0)")


def test_profile_option_checks_the_backup_profile(tmp_path):
    env = dev_environ(tmp_path, CTP_BACKUP_BROKER_ID="")
    proc = run_validate(["--json", "--profile", "backup"], env)
    report = validate_report(proc.stdout)
    assert report["profile"] == "backup"
    assert proc.returncode == Check.CRITICAL
    assert check(report, "profile.required")["problems"][0]["setting"] == "CTP_BACKUP_BROKER_ID"


def test_warnings_only_exit_1(tmp_path):
    proc = run_validate(["--json"], dev_environ(tmp_path, FEEDOPS_QUERY_RATE_PER_SECOND="5"))
    assert proc.returncode == Check.WARNING, proc.stdout
    report = validate_report(proc.stdout)
    assert report["status"] == "warn"
    assert check(report, "ratelimits.ctp_limits")["problems"][0]["setting"] == "FEEDOPS_QUERY_RATE_PER_SECOND"


def test_env_from_feedops_env_variable(tmp_path):
    """--env defaults to FEEDOPS_ENV: prod with dev secrets fails on the prod rules."""
    env = dev_environ(tmp_path, FEEDOPS_ENV="prod", FEEDOPS_PUSHGATEWAY_ENABLED="false")
    proc = run_validate(["--json"], env)
    report = validate_report(proc.stdout)
    assert report["env"] == "prod" and report["env_file"].endswith("envs/prod.env")
    assert proc.returncode == Check.CRITICAL
    assert check(report, "secrets.not_placeholder")["status"] == "pass"  # the test secrets are not dev-...
    assert check(report, "fronts.well_formed")["status"] == "fail"  # prod.env still has .example fronts
    assert check(report, "locale.gb18030")["status"] in ("pass", "fail")  # channel=ctp: the check ran


# --------------------------------------------------------------------------- bad input
def _env_file(tmp_path: Path, text: str, name: str = "broken.env") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BAD_INPUTS = [
    # id, extra environment, extra args, expected check, expected setting, fix fragment
    ("missing-required", {"CTP_PRIMARY_BROKER_ID": ""}, [], "profile.required", "CTP_PRIMARY_BROKER_ID", "set CTP_PRIMARY_BROKER_ID"),
    ("malformed-front", {"CTP_PRIMARY_MD_FRONTS": "http://127.0.0.1:17001"}, [], "fronts.well_formed", "CTP_PRIMARY_MD_FRONTS", "tcp://host:port"),
    ("front-without-port", {"CTP_BACKUP_TD_FRONTS": "tcp://127.0.0.1"}, [], "fronts.well_formed", "CTP_BACKUP_TD_FRONTS", "tcp://host:port"),
    ("port-out-of-range", {"CTP_PRIMARY_TD_FRONTS": "tcp://127.0.0.1:70000"}, [], "fronts.well_formed", "CTP_PRIMARY_TD_FRONTS", "port 1-65535"),
    ("port-zero", {"CTP_PRIMARY_MD_FRONTS": "tcp://127.0.0.1:0"}, [], "fronts.well_formed", "CTP_PRIMARY_MD_FRONTS", "port 1-65535"),
    ("rate-not-numeric", {"FEEDOPS_QUERY_RATE_PER_SECOND": "fast"}, [], "ratelimits.ctp_limits", "FEEDOPS_QUERY_RATE_PER_SECOND", "to a number"),
    ("batch-not-integer", {"FEEDOPS_SUBSCRIBE_BATCH_SIZE": "1e3"}, [], "ratelimits.ctp_limits", "FEEDOPS_SUBSCRIBE_BATCH_SIZE", "to an integer"),
    ("batch-above-ctp-limit", {"FEEDOPS_SUBSCRIBE_BATCH_SIZE": "1001"}, [], "ratelimits.ctp_limits", "FEEDOPS_SUBSCRIBE_BATCH_SIZE", "1000 or less"),
    ("unknown-channel", {"FEEDOPS_CHANNEL": "live"}, [], "settings.load", "FEEDOPS_CHANNEL", "one of 'ctp' or 'sim'"),
    ("unknown-env-variable", {"FEEDOPS_ENV": "qa"}, [], "settings.load", "FEEDOPS_ENV", "dev, staging, prod"),
    ("secrets-dir-missing", {"FEEDOPS_SECRETS_DIR": "/nonexistent/feedops-secrets"}, [], "secrets.present", "FEEDOPS_SECRETS_DIR", "create it"),
    ("secret-missing", {"FEEDOPS_SECRETS_DIR": "EMPTY"}, [], "secrets.present", "CTP_PRIMARY_PASSWORD", "secrets directory"),
    ("auth-code-too-long", {"CTP_PRIMARY_AUTH_CODE": SENTINEL_AUTH_CODE + "x"}, [], "secrets.present", "CTP_PRIMARY_AUTH_CODE", "16 characters or fewer"),
    ("user-id-too-long", {"CTP_BACKUP_USER_ID": "u" * 16}, [], "settings.load", "CTP_BACKUP_USER_ID", "15 characters or fewer"),
    ("placeholder-secret", {"CTP_PRIMARY_PASSWORD": "changeme"}, [], "secrets.not_placeholder", "CTP_PRIMARY_PASSWORD", "real value"),
    ("flow-dir-is-a-file", {"FEEDOPS_FLOW_DIR": "FILE"}, [], "flow_dir.writable", "FEEDOPS_FLOW_DIR", "writable directory"),
    ("flow-dir-unwritable", {"FEEDOPS_FLOW_DIR": "/proc/feedops-flow"}, [], "flow_dir.writable", "FEEDOPS_FLOW_DIR", "writable directory"),
    ("env-file-syntax", {}, ["--env-file", "SYNTAX"], "settings.load", "broken.env:2", "NAME=value"),
    ("env-file-unknown-variable", {}, ["--env-file", "UNKNOWN"], "settings.load", "FEEDOPS_CHANEL", "spelling"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_fails_the_owning_check_naming_setting_and_fix(tmp_path, case):
    _, extra, args, check_id, setting, fix = case
    env = dev_environ(tmp_path, CTP_PRIMARY_PASSWORD=SENTINEL_PASSWORD, CTP_PRIMARY_AUTH_CODE=SENTINEL_AUTH_CODE)
    if case[0] == "secret-missing":
        del env["CTP_PRIMARY_PASSWORD"]
    for key, value in extra.items():
        if value == "EMPTY":
            value = str(tmp_path / "empty-secrets")
            Path(value).mkdir()
        elif value == "FILE":
            value = str(tmp_path / "a-file")
            Path(value).write_text("x")
        env[key] = value
    files = {"SYNTAX": ("FEEDOPS_ENV=dev\nFEEDOPS_CHANNEL sim\n", "broken.env"), "UNKNOWN": ("FEEDOPS_CHANEL=sim\n", "typo.env")}
    args = [str(_env_file(tmp_path, *files[a])) if a in files else a for a in args]

    table = run_validate(args, env)
    assert table.returncode == Check.CRITICAL, table.stdout + table.stderr
    # the same run in process gives the JSON report (the JSON path of the CLI is covered above and below)
    env_file = Path(args[1]) if args[:1] == ["--env-file"] else None
    result, _ = run_checklist(None, environ=env, env_file=env_file)
    report = validate_report(json.dumps(result.to_dict()))
    assert report["exit_code"] == Check.CRITICAL
    owning = check(report, check_id)
    assert owning["status"] == "fail", report
    problem = next(p for p in owning["problems"] if p["setting"] == setting)
    assert fix in problem["fix"] or fix in problem["message"], problem
    # the table shows it as one line with the setting and the fix
    assert any(setting in line and "fix:" in line and fix in line for line in table.stdout.splitlines()), table.stdout
    assert_clean_output(table, SENTINEL_PASSWORD, SENTINEL_AUTH_CODE)
    assert SENTINEL_PASSWORD not in json.dumps(report) and SENTINEL_AUTH_CODE not in json.dumps(report)


def test_env_file_of_the_environment_missing(tmp_path):
    """FEEDOPS_HOME points at a root without envs/staging.env: a configuration problem, exit 2."""
    proc = run_validate(["--json", "--env", "staging"], dev_environ(tmp_path, FEEDOPS_HOME=str(tmp_path)))
    assert proc.returncode == Check.CRITICAL, proc.stderr
    problem = check(validate_report(proc.stdout), "settings.load")["problems"][0]
    assert problem["setting"] == "FEEDOPS_ENV" and "does not exist" in problem["message"] and "create it" in problem["fix"]
    assert_clean_output(proc)


def test_secret_file_with_trailing_whitespace(tmp_path):
    secrets = write_secrets(tmp_path / "secrets", {"CTP_PRIMARY_PASSWORD": SENTINEL_PASSWORD + "  "})
    env = clean_environ(FEEDOPS_SECRETS_DIR=str(secrets), FEEDOPS_FLOW_DIR=str(tmp_path / "flow"))
    proc = run_validate(["--json"], env)
    assert proc.returncode == Check.CRITICAL
    problem = check(validate_report(proc.stdout), "secrets.present")["problems"][0]
    assert problem["setting"] == "CTP_PRIMARY_PASSWORD"
    assert "whitespace" in problem["message"] and "printf" in problem["fix"]
    assert_clean_output(proc, SENTINEL_PASSWORD)


def _run_as_nobody() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("running as root without setpriv (util-linux): root reads any directory")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.parametrize("what", ["directory", "file"])
def test_secrets_unreadable(what):
    prefix = _run_as_nobody()
    base = Path(tempfile.mkdtemp(prefix="feedops-unreadable-"))  # /tmp: reachable by the unprivileged user
    try:
        base.chmod(0o755)
        secrets = write_secrets(base / "secrets")
        target = secrets if what == "directory" else secrets / "CTP_PRIMARY_AUTH_CODE"
        if what == "file":
            for f in secrets.iterdir():
                f.chmod(0o644)
            secrets.chmod(0o755)
        target.chmod(0)
        env = clean_environ(FEEDOPS_SECRETS_DIR=str(secrets), FEEDOPS_FLOW_DIR=str(base / "flow"))
        proc = run_validate(["--json"], env, prefix=prefix)
        assert proc.returncode == Check.CRITICAL, proc.stdout + proc.stderr
        problem = check(validate_report(proc.stdout), "secrets.present")["problems"][0]
        assert problem["setting"] == ("FEEDOPS_SECRETS_DIR" if what == "directory" else "CTP_PRIMARY_AUTH_CODE")
        assert "not readable" in problem["message"] or "unreadable" in problem["message"]
        assert "permissions" in problem["fix"]
        assert_clean_output(proc)
    finally:
        for p in (base / "secrets", base / "secrets" / "CTP_PRIMARY_AUTH_CODE"):
            if p.exists():
                p.chmod(stat.S_IRWXU)
        shutil.rmtree(base)


@pytest.mark.parametrize("args, fragment", [
    (["--env", "qa"], "--env"),
    (["--profile", "tertiary"], "--profile"),
    (["--probe-timeout", "soon"], "--probe-timeout"),
    (["--probe-timeout", "0"], "--probe-timeout"),
    (["--bogus"], "--bogus"),
    (["--env-file", "/nonexistent/x.env"], "--env-file"),
])
def test_bad_arguments_exit_3_with_one_line(tmp_path, args, fragment):
    proc = run_validate(args, dev_environ(tmp_path))
    assert proc.returncode == Check.UNKNOWN
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "--help" in lines[0], proc.stderr
    assert_clean_output(proc)


def test_help_exits_0(tmp_path):
    proc = run_validate(["--help"], dev_environ(tmp_path))
    assert proc.returncode == 0 and "--probe" in proc.stdout


# --------------------------------------------------------------------------- sentinel secret
SENTINEL_SCENARIOS = {
    "valid": ({}, None),
    "other-setting-broken": ({"FEEDOPS_SUBSCRIBE_BATCH_SIZE": "5000", "CTP_BACKUP_MD_FRONTS": "tcp://x:99999"}, None),
    "secret-as-bad-value": ({"FEEDOPS_CHANNEL": SENTINEL_PASSWORD, "FEEDOPS_SHARD": SENTINEL_AUTH_CODE}, None),
    "secret-in-env-file": ({}, f"FEEDOPS_ENV=dev\nCTP_PRIMARY_PASSWORD={SENTINEL_PASSWORD}\n"),
    "secret-on-syntax-error-line": ({}, f"FEEDOPS_ENV=dev\nCTP_PRIMARY_AUTH_CODE {SENTINEL_AUTH_CODE}\n"),
    "text-logs-debug": ({"FEEDOPS_LOG_FORMAT": "text", "FEEDOPS_LOG_LEVEL": "debug", "CTP_PRIMARY_BROKER_ID": ""}, None),
    "placeholder-check-failing": ({"FEEDOPS_ENV": "staging", "FEEDOPS_PUSHGATEWAY_ENABLED": "false"}, None),
}


@pytest.mark.parametrize("scenario", list(SENTINEL_SCENARIOS))
@pytest.mark.parametrize("source", ["environment", "secret-files"])
def test_sentinel_secret_never_in_any_output(tmp_path, scenario, source):
    extra, env_file_text = SENTINEL_SCENARIOS[scenario]
    sentinels = {"CTP_PRIMARY_PASSWORD": SENTINEL_PASSWORD, "CTP_PRIMARY_AUTH_CODE": SENTINEL_AUTH_CODE}
    if source == "environment":
        env = dev_environ(tmp_path, **sentinels)
    else:
        secrets = write_secrets(tmp_path / "secrets", sentinels)
        env = clean_environ(FEEDOPS_SECRETS_DIR=str(secrets), FEEDOPS_FLOW_DIR=str(tmp_path / "flow"))
    env.update(extra)
    args = []
    if env_file_text:
        args = ["--env-file", str(_env_file(tmp_path, env_file_text))]
    for fmt in ([], ["--json"]) if source == "environment" else (["--json"],):
        proc = run_validate([*args, *fmt], env)
        assert proc.returncode in (0, 1, 2), proc.stderr
        assert_clean_output(proc, SENTINEL_PASSWORD, SENTINEL_AUTH_CODE)
        if fmt:
            validate_report(proc.stdout)
        if scenario != "valid":
            assert proc.returncode == Check.CRITICAL, proc.stdout


@pytest.mark.parametrize("at, loud", [("2026-12-02T10:00:00+08:00", False), ("2027-01-04T09:30:00+08:00", True)])
def test_prod_warns_of_the_holiday_calendar_even_when_nothing_else_loads(tmp_path, at, loud):
    """The acceptance run: `validate_env.py --env prod` in December (2027 not entered) warns, naming the
    file and the fix; in January the warning is logged at ERROR. Prod's secrets are missing here, so the
    calendar check runs from its own two variables."""
    env = clean_environ(FEEDOPS_CLOCK_AT=at, FEEDOPS_SECRETS_DIR=str(tmp_path / "none"), FEEDOPS_PUSHGATEWAY_ENABLED="false")
    proc = run_validate(["--env", "prod", "--json"], env)
    report = validate_report(proc.stdout)
    horizon = check(report, "calendar.horizon")
    assert horizon["status"] == "warn", horizon
    assert "lib/feedops/data/holidays.txt" in horizon["summary"] and "complete 2027" in horizon["summary"]
    line = next(json.loads(x) for x in proc.stderr.splitlines() if '"calendar.horizon"' in x)
    assert line["level"] == ("error" if loud else "warning") and line["setting"] == "FEEDOPS_HOLIDAYS_FILE"


def test_a_bad_clock_is_a_configuration_error_naming_the_variable(tmp_path):
    proc = run_validate(["--json"], dev_environ(tmp_path, FEEDOPS_CLOCK_AT="next tuesday"))
    assert proc.returncode == Check.CRITICAL, proc.stderr
    assert "FEEDOPS_CLOCK_AT" in proc.stderr and "'next tuesday' is not a time" in proc.stderr
    assert "Traceback" not in proc.stderr
