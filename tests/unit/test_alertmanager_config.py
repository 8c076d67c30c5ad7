"""Alertmanager's configuration rendered from the settings, checked with amtool (Debian
prometheus-alertmanager): the committed default is the rendering of the defaults, every
receiver combination passes `amtool check-config`, and `amtool config routes test` sends
each kind of alert where it belongs."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from feedops.monitoring import alertmanager as am
from feedops.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "monitoring/alertmanager/alertmanager.yml"
SECRET = "wecom-secret-value-7f3a"


def _amtool() -> str:
    path = shutil.which("amtool")
    if not path:
        pytest.skip("amtool not installed (apt-get install prometheus-alertmanager)")
    return path


def secrets_dir(tmp_path: Path) -> Path:
    path = tmp_path / "secrets"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def feed_settings(tmp_path: Path, **values: str):
    environ = {"FEEDOPS_SECRETS_DIR": str(secrets_dir(tmp_path)), **values}
    return load_settings("dev", environ=environ).feed


def all_receivers(tmp_path: Path) -> dict[str, str]:
    slack = tmp_path / "slack-url"
    slack.write_text("http://127.0.0.1:9/slack\n")
    smtp = tmp_path / "smtp-password"
    smtp.write_text("smtp-password\n")
    return {
        "FEEDOPS_ALERTMANAGER_SLACK_API_URL_FILE": str(slack),
        "FEEDOPS_ALERTMANAGER_WECOM_CORP_ID": "ww0123456789",
        "FEEDOPS_ALERTMANAGER_WECOM_AGENT_ID": "1000002",
        "FEEDOPS_ALERTMANAGER_WECOM_TO_PARTY": "2",
        "FEEDOPS_ALERTMANAGER_WECOM_API_SECRET": SECRET,
        "FEEDOPS_ALERTMANAGER_EMAIL_TO": "ops@example.com",
        "FEEDOPS_ALERTMANAGER_EMAIL_SMARTHOST": "127.0.0.1:25",
        "FEEDOPS_ALERTMANAGER_EMAIL_AUTH_USERNAME": "feedops",
        "FEEDOPS_ALERTMANAGER_EMAIL_AUTH_PASSWORD_FILE": str(smtp),
        "FEEDOPS_RUNBOOK_BASE_URL": "https://git.example.com/feedops/blob/main/",
    }


def rendered_file(tmp_path: Path, **values: str) -> Path:
    out = tmp_path / "am" / "alertmanager.yml"
    am.write(am.render(feed_settings(tmp_path, **values)), out)
    return out


def routes(config: Path, *labels: str) -> str:
    result = subprocess.run([_amtool(), "config", "routes", "test", f"--config.file={config}", *labels],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_committed_default_is_the_rendering_of_the_defaults():
    rendered = am.render(am.default_settings())
    assert COMMITTED.read_text() == rendered.config, \
        "regenerate: .venv/bin/python -m feedops.monitoring.alertmanager render --out monitoring/alertmanager/alertmanager.yml --defaults"
    assert (COMMITTED.parent / am.TEMPLATE_NAME).read_text() == rendered.template


def test_default_has_the_local_webhook_and_the_heartbeat(tmp_path):
    config = yaml.safe_load(am.render(feed_settings(tmp_path)).config)
    ops, heartbeat = config["receivers"]
    assert ops == {"name": "ops-channel", "webhook_configs": [{"url": "http://127.0.0.1:9095/alerts", "send_resolved": True}]}
    assert heartbeat["name"] == "heartbeat"
    assert config["route"]["group_by"] == ["alertname", "env", "exchange"]


def test_committed_default_passes_amtool():
    result = subprocess.run([_amtool(), "check-config", str(COMMITTED)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_receiver_configured_passes_amtool(tmp_path):
    config = rendered_file(tmp_path, **all_receivers(tmp_path))
    result = subprocess.run([_amtool(), "check-config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    ops = yaml.safe_load(config.read_text())["receivers"][0]
    assert {"webhook_configs", "slack_configs", "wechat_configs", "email_configs"} <= set(ops)
    assert ops["slack_configs"][0]["api_url_file"].endswith("slack-url")  # Alertmanager reads the URL itself
    assert ops["email_configs"][0]["auth_password_file"].endswith("smtp-password")
    assert "feedops.text" in ops["slack_configs"][0]["text"]
    template = (config.parent / am.TEMPLATE_NAME).read_text()
    assert 'define "feedops.runbook_base" }}https://git.example.com/feedops/blob/main/{{ end' in template


@pytest.mark.parametrize("kind, values", [
    ("slack only", {"FEEDOPS_ALERTMANAGER_WEBHOOK_URL": ""}),
    ("wecom", {}),
    ("email without auth", {"FEEDOPS_ALERTMANAGER_EMAIL_AUTH_USERNAME": "", "FEEDOPS_ALERTMANAGER_EMAIL_AUTH_PASSWORD_FILE": ""}),
])
def test_receiver_combinations_pass_amtool(tmp_path, kind, values):
    settings = all_receivers(tmp_path)
    if kind == "slack only":
        settings = {k: v for k, v in settings.items() if "SLACK" in k}
    elif kind == "wecom":
        settings = {k: v for k, v in settings.items() if "WECOM" in k}
    config = rendered_file(tmp_path, **{**settings, **values})
    result = subprocess.run([_amtool(), "check-config", str(config)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_file_is_owner_only(tmp_path):
    config = rendered_file(tmp_path, **all_receivers(tmp_path))
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_incomplete_wecom_names_the_missing_variables(tmp_path):
    with pytest.raises(am.RenderError) as err:
        am.render(feed_settings(tmp_path, FEEDOPS_ALERTMANAGER_WECOM_CORP_ID="ww01"))
    assert "FEEDOPS_ALERTMANAGER_WECOM_API_SECRET" in str(err.value) and "FEEDOPS_ALERTMANAGER_WECOM_AGENT_ID" in str(err.value)


def test_no_receiver_at_all_is_refused(tmp_path):
    with pytest.raises(am.RenderError, match="no ops receiver"):
        am.render(feed_settings(tmp_path, FEEDOPS_ALERTMANAGER_WEBHOOK_URL=""))


def test_cli_check_never_prints_the_secret(tmp_path):
    _amtool()
    env = {**os.environ, **all_receivers(tmp_path), "FEEDOPS_SECRETS_DIR": str(secrets_dir(tmp_path))}
    result = subprocess.run([sys.executable, "-m", "feedops.monitoring.alertmanager", "check", "--env", "dev"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok: receivers ops-channel: webhook, slack, wechat, email; heartbeat: webhook"
    assert SECRET not in result.stdout + result.stderr
    out = tmp_path / "out" / "alertmanager.yml"
    result = subprocess.run([sys.executable, "-m", "feedops.monitoring.alertmanager", "render", "--out", str(out), "--env", "dev"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0 and SECRET not in result.stdout + result.stderr
    assert SECRET in out.read_text()  # Alertmanager 0.25 has no api_secret_file for WeCom


def test_cli_reports_an_incomplete_receiver(tmp_path):
    env = {**os.environ, "FEEDOPS_ALERTMANAGER_WECOM_CORP_ID": "ww01", "FEEDOPS_SECRETS_DIR": str(secrets_dir(tmp_path))}
    result = subprocess.run([sys.executable, "-m", "feedops.monitoring.alertmanager", "check", "--env", "dev"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 2 and "WeCom receiver incomplete" in result.stderr


# ---------------------------------------------------------------- routing (amtool config routes test)
@pytest.mark.parametrize("labels, receiver", [
    (("alertname=FeedWorkerDown", "severity=critical", "env=prod"), "ops-channel"),
    (("alertname=FeedCoverageLow", "severity=warning", "env=prod", "exchange=SHFE"), "ops-channel"),
    (("alertname=RedisConsumerLagHigh", "severity=critical", "env=staging", "exchange=DCE"), "ops-channel"),
    (("alertname=Watchdog", "severity=none", "env=prod"), "heartbeat"),
    (("alertname=Watchdog",), "heartbeat"),
    (("alertname=SomethingNew",), "ops-channel"),
])
def test_routes(labels, receiver):
    assert routes(COMMITTED, *labels) == receiver


def test_routes_with_every_receiver_configured(tmp_path):
    config = rendered_file(tmp_path, **all_receivers(tmp_path))
    assert routes(config, "alertname=Watchdog", "severity=none") == "heartbeat"
    assert routes(config, "alertname=FeedStale", "severity=critical") == "ops-channel"


def test_critical_repeats_hourly_and_watchdog_every_minute():
    config = yaml.safe_load(COMMITTED.read_text())
    by_receiver = {tuple(r["matchers"]): r for r in config["route"]["routes"]}
    assert by_receiver[('severity="critical"',)]["repeat_interval"] == "1h"
    assert by_receiver[('alertname="Watchdog"',)]["repeat_interval"] == "1m"


# ---------------------------------------------------------------- exchange holidays mute the session-clock alerts
def _muted(intervals: list[dict], day: str) -> list[dict]:
    year, month, dom = day.split("-")
    return [i["times"] for i in intervals
            if i["years"] == [year] and i["months"] == [str(int(month))] and i["days_of_month"] == [str(int(dom))]]


def test_holidays_and_nights_before_them_are_muted():
    config = yaml.safe_load(COMMITTED.read_text())
    (closed,) = config["time_intervals"]
    intervals = closed["time_intervals"]
    # 2026-10-01 (Thursday, National Day): the whole UTC date = Beijing 08:00 to 08:00 next day
    assert _muted(intervals, "2026-10-01") == [[{"start_time": "00:00", "end_time": "24:00"}]]
    # 2026-09-30 (Wednesday, last trading day before it): no night session, UTC 12:00-24:00
    assert _muted(intervals, "2026-09-30") == [[{"start_time": "12:00", "end_time": "24:00"}]]
    # ordinary trading days and weekends are not listed
    assert _muted(intervals, "2026-09-29") == [] and _muted(intervals, "2026-10-08") == []
    assert _muted(intervals, "2026-10-03") == []  # Saturday: outside the session windows anyway
    session = next(r for r in config["route"]["routes"] if "mute_time_intervals" in r)
    assert session["matchers"] == ['alertname=~"FeedWorkerDown|FeedWorkerAbsent|PremarketNotDone"']
    assert session["mute_time_intervals"] == [closed["name"]]


def test_always_open_calendar_mutes_nothing(tmp_path):
    config = yaml.safe_load(am.render(feed_settings(tmp_path, FEEDOPS_CALENDAR="always-open")).config)
    assert "time_intervals" not in config
    assert all("mute_time_intervals" not in r for r in config["route"]["routes"])


def test_cli_check_masks_urls_when_amtool_rejects_the_rendering(tmp_path):
    _amtool()
    url = "ftp://hooks.example.com/T0K3N-in-the-path"  # amtool rejects the scheme and quotes the URL
    env = {**os.environ, "FEEDOPS_ALERTMANAGER_WEBHOOK_URL": url, "FEEDOPS_SECRETS_DIR": str(secrets_dir(tmp_path))}
    result = subprocess.run([sys.executable, "-m", "feedops.monitoring.alertmanager", "check", "--env", "dev"],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 1 and result.stdout.startswith("INVALID: receivers"), result.stdout + result.stderr
    assert "T0K3N" not in result.stdout + result.stderr
