"""Each check of the pre-market checklist, in process (the CLI tests cover the command line)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import time_machine
from prometheus_client import generate_latest

from clock_support import SWEEP
from feedops.addresses import mask_url
from feedops.validate import checks as checks_mod
from feedops.validate.checks import is_placeholder_secret, writable_dir_problem
from feedops.validate.registry import owner_of
from feedops.validate.runner import outcome_registries, pushgateway_target, render_table, run_checklist
from validate_support import PINNED_IMAGE_TAG, ROOT, SENTINEL_PASSWORD, clean_environ, dev_environ

LOOPBACK_PROFILES = """
CTP_PRIMARY_MD_FRONTS=tcp://127.0.0.11:41213,tcp://127.0.0.12:41213
CTP_PRIMARY_TD_FRONTS=tcp://127.0.0.13:41205
CTP_PRIMARY_BROKER_ID=4200
CTP_PRIMARY_USER_ID=88001
CTP_PRIMARY_APP_ID=feedops_1.0
CTP_BACKUP_MD_FRONTS=tcp://127.0.0.21:41213
CTP_BACKUP_TD_FRONTS=tcp://127.0.0.23:41205
CTP_BACKUP_BROKER_ID=4200
CTP_BACKUP_USER_ID=88002
CTP_BACKUP_APP_ID=feedops_1.0
"""


def env_file(tmp_path: Path, env: str, extra: str = "", profiles: str = LOOPBACK_PROFILES) -> Path:
    path = tmp_path / f"{env}.env"
    pinned = "" if env == "dev" or "FEEDOPS_IMAGE_TAG=" in extra else f"FEEDOPS_IMAGE_TAG={PINNED_IMAGE_TAG}\n"
    path.write_text(f"FEEDOPS_ENV={env}\nFEEDOPS_CHANNEL=sim\n{pinned}{profiles}\n{extra}\n")
    return path


def run(tmp_path, env="dev", extra_env=None, file_extra=None, profiles=LOOPBACK_PROFILES, **kwargs):
    environ = dev_environ(tmp_path, **(extra_env or {}))
    path = env_file(tmp_path, env, file_extra or "", profiles) if (env != "dev" or file_extra is not None) else None
    report, settings = run_checklist(env, environ=environ, env_file=path, **kwargs)
    return report, {r.id: r for r in report.results}


def test_a_complete_staging_configuration_passes(tmp_path, pinned_clock):
    report, results = run(tmp_path, "staging")
    assert report.status == "pass", render_table(report)
    assert report.exit_code == 0
    assert results["profile.backup_complete"].status == "pass"


def horizon_at(tmp_path, at: dt.datetime, holidays: str | None = None, env: str = "prod"):
    """calendar.horizon in ``env`` with the clock moved in process (time-machine) to ``at``."""
    extra = {}
    if holidays is not None:
        (tmp_path / "holidays.txt").write_text(holidays)
        extra["FEEDOPS_HOLIDAYS_FILE"] = str(tmp_path / "holidays.txt")
    with time_machine.travel(at, tick=False):
        _, results = run(tmp_path, env, extra_env=extra)
    return results["calendar.horizon"]


@pytest.mark.parametrize("name", sorted(SWEEP))
def test_calendar_horizon_at_every_sweep_date(tmp_path, name):
    at = SWEEP[name]
    result = horizon_at(tmp_path, at)
    # the shipped list: 2026 complete, 2027 not entered yet
    if at.year >= 2027:  # this year missing: a warning, logged loud, never a failure
        assert result.status == "warn" and result.loud and "the holidays of 2027 are not entered" in result.summary
    elif at.month == 12:  # next year due from 1 December
        assert result.status == "warn" and not result.loud and "the holidays of 2027 are not entered" in result.summary
    else:
        assert result.status == "pass" and "holidays entered for 2026" in result.summary
    for problem in result.problems:
        assert problem.setting == "FEEDOPS_HOLIDAYS_FILE" and "lib/feedops/data/holidays.txt" in problem.fix
        assert "complete 2027" in problem.fix and "docs/ops/holidays.md" in problem.fix


def test_calendar_horizon_from_the_first_of_december(tmp_path):
    holidays = "2026-10-01\ncomplete 2026\n"
    november = horizon_at(tmp_path, dt.datetime(2026, 11, 30, 23, 59, tzinfo=SWEEP["weekend"].tzinfo), holidays)
    december = horizon_at(tmp_path, dt.datetime(2026, 12, 1, 0, 0, tzinfo=SWEEP["weekend"].tzinfo), holidays)
    assert november.status == "pass" and december.status == "warn"
    assert str(tmp_path / "holidays.txt") in december.problems[0].fix
    ready = horizon_at(tmp_path, dt.datetime(2026, 12, 1, tzinfo=SWEEP["weekend"].tzinfo), holidays + "complete 2027\n")
    assert ready.status == "pass" and "2026 and 2027" in ready.summary


def test_calendar_horizon_a_year_without_its_line_is_not_entered_even_with_dates(tmp_path):
    result = horizon_at(tmp_path, SWEEP["month-end"], "2026-10-01\n2026-10-02\n")  # dates, no 'complete 2026'
    assert result.status == "warn" and result.loud and "no year marked complete" in result.summary


def test_calendar_horizon_is_skipped_on_the_always_open_calendar(tmp_path):
    result = horizon_at(tmp_path, SWEEP["year-end"], env="dev")
    assert result.status == "skip" and "always-open" in result.summary


def test_calendar_horizon_bad_holiday_file_fails_naming_the_line(tmp_path):
    result = horizon_at(tmp_path, SWEEP["month-end"], "2026-10-01\ncomplete twenty\n")
    assert result.status == "fail" and "line 2" in result.summary and "FEEDOPS_HOLIDAYS_FILE" in result.summary


@pytest.mark.parametrize("env, expected", [("dev", "warn"), ("staging", "fail"), ("prod", "fail")])
def test_incomplete_backup_is_fatal_only_in_staging_and_prod(tmp_path, env, expected):
    profiles = "\n".join(line for line in LOOPBACK_PROFILES.splitlines() if not line.startswith("CTP_BACKUP_USER_ID"))
    report, results = run(tmp_path, env, file_extra="", profiles=profiles)
    result = results["profile.backup_complete"]
    assert result.status == expected
    assert [p.setting for p in result.problems] == ["CTP_BACKUP_USER_ID"]
    assert "CTP_BACKUP_USER_ID" in result.problems[0].fix


def test_backup_secret_missing_in_prod_names_the_secrets_directory(tmp_path):
    environ = dev_environ(tmp_path)
    (Path(environ["FEEDOPS_SECRETS_DIR"]) / "CTP_BACKUP_AUTH_CODE").unlink()
    report, _ = run_checklist("prod", environ=environ, env_file=env_file(tmp_path, "prod"))
    result = {r.id: r for r in report.results}["profile.backup_complete"]
    assert result.status == "fail"
    assert result.problems[0].setting == "CTP_BACKUP_AUTH_CODE" and "secrets directory" in result.problems[0].fix


def test_backup_identical_to_primary_warns(tmp_path):
    same = LOOPBACK_PROFILES.replace("CTP_BACKUP_MD_FRONTS=tcp://127.0.0.21:41213",
                                     "CTP_BACKUP_MD_FRONTS=tcp://127.0.0.11:41213,tcp://127.0.0.12:41213")
    same = same.replace("CTP_BACKUP_USER_ID=88002", "CTP_BACKUP_USER_ID=88001")
    _, results = run(tmp_path, "dev", file_extra="", profiles=same)
    assert results["profile.backup_complete"].status == "warn"
    assert "change nothing" in results["profile.backup_complete"].problems[0].message


@pytest.mark.parametrize("env, expected", [("dev", "warn"), ("staging", "fail")])
def test_placeholder_front_hosts(tmp_path, env, expected):
    profiles = LOOPBACK_PROFILES.replace("127.0.0.12", "md2.broker.example")
    _, results = run(tmp_path, env, file_extra="", profiles=profiles)
    result = results["fronts.well_formed"]
    assert result.status == expected
    assert result.problems[0].setting == "CTP_PRIMARY_MD_FRONTS" and "placeholder" in result.problems[0].message


def test_duplicate_front_warns(tmp_path):
    _, results = run(tmp_path, "dev", extra_env={"CTP_PRIMARY_MD_FRONTS": "tcp://127.0.0.1:17001,tcp://127.0.0.1:17001"})
    assert results["fronts.well_formed"].status == "warn"
    assert "twice" in results["fronts.well_formed"].problems[0].message


@pytest.mark.parametrize("value", ["changeme", "CHANGEME", "<secret>", "<password>", "${CTP_PASSWORD}", "xxxx", "***", "password", "TODO"])
def test_placeholder_secrets_are_rejected(value):
    assert is_placeholder_secret(value, "dev")


@pytest.mark.parametrize("value, env, expected", [
    ("dev-abc123", "dev", False), ("dev-abc123", "staging", True), ("dev-abc123", "prod", True),
    ("Zq81-real-one", "prod", False), ("developer", "prod", False),
])
def test_generated_dev_secrets_only_in_dev(value, env, expected):
    assert is_placeholder_secret(value, env) is expected


def test_placeholder_secret_check_names_variable_not_value(tmp_path):
    environ = dev_environ(tmp_path, CTP_BACKUP_AUTH_CODE="changeme")
    report, _ = run_checklist(None, environ=environ)
    result = {r.id: r for r in report.results}["secrets.not_placeholder"]
    assert result.status == "fail" and result.problems[0].setting == "CTP_BACKUP_AUTH_CODE"
    assert "changeme" not in render_table(report)


def test_secrets_present_says_where_each_secret_came_from(tmp_path):
    _, results = run(tmp_path, "dev", extra_env={"CTP_PRIMARY_PASSWORD": SENTINEL_PASSWORD})
    summary = results["secrets.present"].summary
    assert "CTP_PRIMARY_PASSWORD from environment" in summary
    assert "CTP_PRIMARY_AUTH_CODE from secret file" in summary
    assert SENTINEL_PASSWORD not in summary


def test_rate_limit_soft_and_hard_limits(tmp_path):
    _, results = run(tmp_path, "dev", extra_env={"FEEDOPS_CHANNEL": "ctp", "FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS": "0.5"})
    assert results["ratelimits.ctp_limits"].status == "warn"
    assert results["ratelimits.ctp_limits"].problems[0].setting == "FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS"
    _, results = run(tmp_path, "dev", extra_env={"FEEDOPS_RETRY_BACKOFF_SECONDS": "10", "FEEDOPS_RETRY_BACKOFF_MAX_SECONDS": "5"})
    assert results["ratelimits.ctp_limits"].status == "fail"
    assert results["ratelimits.ctp_limits"].problems[0].setting == "FEEDOPS_RETRY_BACKOFF_MAX_SECONDS"


def test_writable_dir_problem(tmp_path):
    assert writable_dir_problem(tmp_path) is None
    assert writable_dir_problem(tmp_path / "a" / "b") is None  # parent writable, will be created
    assert not (tmp_path / "a").exists()  # the check never creates it
    (tmp_path / "file").write_text("x")
    assert "not a directory" in writable_dir_problem(tmp_path / "file")
    assert "not a directory" in writable_dir_problem(tmp_path / "file" / "flow")
    assert "not writable" in writable_dir_problem(Path("/proc/feedops-flow"))


def test_locale_check_runs_only_for_ctp_and_finds_the_bootstrap_locale(tmp_path):
    _, results = run(tmp_path, "dev")
    assert results["locale.gb18030"].status == "skip"
    locale_dir = ROOT / ".venv" / "locale"
    if not (locale_dir / "zh_CN.GB18030").exists():
        pytest.skip("run make bootstrap first: it generates .venv/locale/zh_CN.GB18030")
    _, results = run(tmp_path, "dev", extra_env={"FEEDOPS_CHANNEL": "ctp", "LOCPATH": str(locale_dir)})
    assert results["locale.gb18030"].status == "pass", results["locale.gb18030"].problems


def test_locale_check_fails_naming_locpath(tmp_path, monkeypatch):
    monkeypatch.setattr(checks_mod, "GB18030_LOCALE", "zz_ZZ.GB18030")  # a locale that exists nowhere
    _, results = run(tmp_path, "dev", extra_env={"FEEDOPS_CHANNEL": "ctp", "LOCPATH": str(tmp_path)})
    result = results["locale.gb18030"]
    assert result.status == "fail" and result.problems[0].setting == "LOCPATH"
    assert "localedef" in result.problems[0].fix


def test_unknown_environment_variable_is_a_warning(tmp_path):
    report, results = run(tmp_path, "dev", extra_env={"FEEDOPS_CHANEL": "ctp"})
    assert results["settings.load"].status == "warn" and report.exit_code == 1
    assert results["settings.load"].problems[0].setting == "FEEDOPS_CHANEL"


def test_config_errors_go_to_the_owning_checks_and_the_rest_is_skipped(tmp_path):
    report, results = run(tmp_path, "dev", extra_env={"FEEDOPS_SUBSCRIBE_BATCH_SIZE": "2000", "FEEDOPS_LOG_LEVEL": "loud"})
    assert report.status == "fail"
    assert results["ratelimits.ctp_limits"].status == "fail"
    assert [p.setting for p in results["settings.load"].problems] == ["FEEDOPS_LOG_LEVEL"]
    assert "ratelimits.ctp_limits" in results["settings.load"].summary
    assert results["profile.required"].status == "skip"


@pytest.mark.parametrize("setting, owner", [
    ("CTP_PRIMARY_MD_FRONTS", "fronts.well_formed"), ("CTP_BACKUP_TD_FRONTS", "fronts.well_formed"),
    ("CTP_BACKUP_PASSWORD", "secrets.present"), ("FEEDOPS_SECRETS_DIR", "secrets.present"),
    ("FEEDOPS_QUERY_RATE_PER_SECOND", "ratelimits.ctp_limits"), ("FEEDOPS_FLOW_DIR", "flow_dir.writable"),
    ("FEEDOPS_CHANNEL", "settings.load"), ("dev.env:3", "settings.load"),
])
def test_owner_of(setting, owner):
    assert owner_of(setting) == owner


def test_mask_url_hides_passwords():
    assert mask_url("redis://:hunter22@redis:6379/0") == "redis://:***@redis:6379/0"
    assert mask_url("redis://user:hunter22@10.0.0.1/0") == "redis://user:***@10.0.0.1/0"
    assert mask_url("redis://redis:6379/0") == "redis://redis:6379/0"


def test_sink_password_never_in_the_report(tmp_path):
    from conftest import free_port

    closed = f"tcp://127.0.0.1:{free_port()}"  # probe a port nobody listens on, never a dev stack's 17001
    fronts = {f"CTP_{p}_{k}_FRONTS": closed for p in ("PRIMARY", "BACKUP") for k in ("MD", "TD")}
    report, _ = run(tmp_path, "dev", extra_env={"FEEDOPS_SINK_URL": f"redis://:Sink-Pw-77x@127.0.0.1:{free_port()}/0",
                                                **fronts}, probe=True, probe_timeout=0.5)
    assert "Sink-Pw-77x" not in render_table(report)
    assert "Sink-Pw-77x" not in str(report.to_dict())


def test_pushgateway_target_without_a_loadable_configuration(tmp_path):
    environ = clean_environ(FEEDOPS_PUSHGATEWAY_ENABLED="true", FEEDOPS_PUSHGATEWAY_URL="http://127.0.0.1:1",
                            FEEDOPS_SUBSCRIBE_BATCH_SIZE="oops")
    report, settings = run_checklist(None, environ=environ)
    assert settings is None
    assert pushgateway_target(settings, None, environ) == "http://127.0.0.1:1"
    assert pushgateway_target(settings, None, clean_environ()) == "http://127.0.0.1:9091"  # dev.env enables the native one
    assert pushgateway_target(settings, None, clean_environ(FEEDOPS_PUSHGATEWAY_ENABLED="false")) is None
    broken = tmp_path / "x.env"
    broken.write_text("FEEDOPS_PUSHGATEWAY_ENABLED=true\nthis is not an env line\n")
    assert pushgateway_target(None, None, clean_environ(), broken) is None  # unparsable file: nothing trusted


def test_outcome_metrics(tmp_path):
    report, _ = run(tmp_path, "dev")
    registry, success = outcome_registries(report)
    text = generate_latest(registry).decode()
    assert 'feedops_check_status{checker="validate_env"} 0.0' in text
    assert 'feedops_check_check_status{check="profile.required",checker="validate_env"} 0.0' in text
    assert 'check="probe.sink"' not in text  # skipped checks are not pushed
    assert "feedops_check_last_success_timestamp_seconds" in generate_latest(success).decode()
    report, _ = run(tmp_path, "dev", extra_env={"CTP_PRIMARY_USER_ID": ""})
    registry, success = outcome_registries(report)
    text = generate_latest(registry).decode()
    assert 'feedops_check_status{checker="validate_env"} 2.0' in text
    assert 'feedops_check_check_status{check="profile.required",checker="validate_env"} 2.0' in text
    assert success is None  # a failed run pushes no last-success time


def test_secrets_in_any_report_string_are_redacted(tmp_path):
    environ = dev_environ(tmp_path, CTP_PRIMARY_PASSWORD=SENTINEL_PASSWORD, FEEDOPS_IMAGE_TAG=SENTINEL_PASSWORD,
                          FEEDOPS_SHARD=SENTINEL_PASSWORD)
    report, _ = run_checklist(None, environ=environ)
    assert report.status == "fail"
    assert SENTINEL_PASSWORD not in str(report.to_dict()) and SENTINEL_PASSWORD not in render_table(report)


def test_staging_and_prod_refuse_a_floating_image_tag_naming_the_fix(tmp_path, pinned_clock):
    for env in ("staging", "prod"):
        report, results = run(tmp_path, env, file_extra="FEEDOPS_IMAGE_TAG=latest")
        assert results["image.pinned"].status == "fail" and report.exit_code == 2
        problem = results["image.pinned"].problems[0]
        assert problem.setting == "FEEDOPS_IMAGE_TAG" and "tag@sha256:<digest>" in problem.fix
        assert "docs/ops/releases.md" in problem.fix


def test_pinned_forms_pass_and_dev_may_float(tmp_path, pinned_clock):
    digest = "sha256:" + "5e" * 32
    for value in (PINNED_IMAGE_TAG, digest):
        _, results = run(tmp_path, "prod", file_extra=f"FEEDOPS_IMAGE_TAG={value}")
        assert results["image.pinned"].status == "pass" and digest in results["image.pinned"].summary
    _, results = run(tmp_path, "dev", file_extra="FEEDOPS_IMAGE_TAG=latest")
    assert results["image.pinned"].status == "pass" and "floating" in results["image.pinned"].summary


def test_an_image_tag_of_no_form_fails_loading(tmp_path, pinned_clock):
    report, results = run(tmp_path, "staging", file_extra="FEEDOPS_IMAGE_TAG=v1@sha256:short")
    assert report.exit_code == 2
    assert "FEEDOPS_IMAGE_TAG" in render_table(report) and "TAG@sha256" in render_table(report)
