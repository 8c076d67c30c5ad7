"""Alertmanager's configuration, rendered from the settings (Alertmanager does not expand
environment variables).

    python -m feedops.monitoring.alertmanager render --out FILE [--env ENV | --defaults] [--group-readable]
    python -m feedops.monitoring.alertmanager check [--env ENV | --defaults]

``render`` writes FILE and ``feedops.tmpl`` (the notification templates) next to it;
``check`` renders into a temporary directory, runs ``amtool check-config`` and prints
which integrations each receiver has. Neither prints a URL or a secret.

Receivers: ``ops-channel`` gets every alert: the webhook (FEEDOPS_ALERTMANAGER_WEBHOOK_URL,
a local one by default), plus Slack, WeCom and e-mail where configured. ``heartbeat`` gets
only the Watchdog. FeedWorkerDown, FeedWorkerAbsent and PremarketNotDone (judged on the
wall-clock session window) are muted while the exchange calendar is closed (holidays, and
the night before one). Slack's URL and the SMTP password stay in files Alertmanager reads
itself (``api_url_file``, ``auth_password_file``); Alertmanager 0.25 has no file field for
the webhook URL or the WeCom secret, so those are written into the rendered file, which
is created readable by its owner only.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..calendar import CalendarError, TradingCalendar
from ..fileio import atomic_write_text
from ..log import redact, register_secret
from ..settings import ConfigError, FeedSettings, load_settings

TEMPLATE = Path(__file__).with_name("feedops.tmpl")
TEMPLATE_NAME = "feedops.tmpl"
#: Alerts whose absence of the worker makes them meaningless (the worker's own tick alerts).
WORKER_SYMPTOMS = ("FeedCoverageLow", "FeedStale", "FeedThroughputLow", "FeedInstrumentsNeverTicked")
WORKER_GONE = ("FeedWorkerDown", "FeedNotLoggedIn")
#: Alerts judged on the wall-clock session window (feedops:session_window_open), which
#: knows weekdays but not exchange holidays: muted while the exchange calendar is closed.
SESSION_CLOCK_ALERTS = ("FeedWorkerDown", "FeedWorkerAbsent", "PremarketNotDone")
EXCHANGE_CLOSED = "exchange-closed"
TITLE = '{{ template "feedops.title" . }}'
TEXT = '{{ template "feedops.text" . }}'


class RenderError(ValueError):
    """A receiver is configured incompletely; the message names the variables."""


@dataclass(frozen=True)
class Rendered:
    config: str
    template: str
    integrations: dict[str, list[str]]  # receiver -> integration kinds (for people: no URLs)


def _receivers(feed: FeedSettings) -> tuple[list[dict], dict[str, list[str]]]:
    ops: dict = {"name": "ops-channel"}
    kinds: list[str] = []
    if feed.alertmanager_webhook_url:
        ops["webhook_configs"] = [{"url": feed.alertmanager_webhook_url, "send_resolved": True}]
        kinds.append("webhook")
    if feed.alertmanager_slack_api_url_file:
        ops["slack_configs"] = [{"api_url_file": feed.alertmanager_slack_api_url_file, "channel": feed.alertmanager_slack_channel,
                                 "send_resolved": True, "title": TITLE, "text": TEXT}]
        kinds.append("slack")
    wecom = {"FEEDOPS_ALERTMANAGER_WECOM_CORP_ID": feed.alertmanager_wecom_corp_id,
             "FEEDOPS_ALERTMANAGER_WECOM_AGENT_ID": feed.alertmanager_wecom_agent_id,
             "FEEDOPS_ALERTMANAGER_WECOM_TO_PARTY": feed.alertmanager_wecom_to_party,
             "FEEDOPS_ALERTMANAGER_WECOM_API_SECRET": feed.alertmanager_wecom_api_secret}
    if any(wecom.values()):
        missing = [name for name, value in wecom.items() if not value]
        if missing:
            raise RenderError(f"WeCom receiver incomplete: set {', '.join(missing)}")
        ops["wechat_configs"] = [{"corp_id": feed.alertmanager_wecom_corp_id, "agent_id": feed.alertmanager_wecom_agent_id,
                                  "to_party": feed.alertmanager_wecom_to_party,
                                  "api_secret": feed.alertmanager_wecom_api_secret.get_secret_value(),  # type: ignore[union-attr]
                                  "send_resolved": True, "message": TEXT}]
        kinds.append("wechat")
    if feed.alertmanager_email_to:
        email: dict = {"to": feed.alertmanager_email_to, "from": feed.alertmanager_email_from,
                       "smarthost": feed.alertmanager_email_smarthost, "send_resolved": True,
                       "headers": {"Subject": TITLE}, "text": TEXT}
        if feed.alertmanager_email_auth_username:
            if not feed.alertmanager_email_auth_password_file:
                raise RenderError("e-mail receiver incomplete: set FEEDOPS_ALERTMANAGER_EMAIL_AUTH_PASSWORD_FILE "
                                  "(FEEDOPS_ALERTMANAGER_EMAIL_AUTH_USERNAME is set)")
            email["auth_username"] = feed.alertmanager_email_auth_username
            email["auth_password_file"] = feed.alertmanager_email_auth_password_file
        ops["email_configs"] = [email]
        kinds.append("email")
    if not kinds:
        raise RenderError("no ops receiver configured: set FEEDOPS_ALERTMANAGER_WEBHOOK_URL (or Slack, WeCom, e-mail)")
    if not feed.alertmanager_heartbeat_url:
        raise RenderError("no heartbeat receiver: set FEEDOPS_ALERTMANAGER_HEARTBEAT_URL")
    heartbeat = {"name": "heartbeat", "webhook_configs": [{"url": feed.alertmanager_heartbeat_url, "send_resolved": False}]}
    return [ops, heartbeat], {"ops-channel": kinds, "heartbeat": ["webhook"]}


def closed_intervals(calendar: TradingCalendar) -> list[dict]:
    """Alertmanager time intervals (UTC) covering the session windows the exchange calendar
    closes, for the years of its holiday list: a weekday holiday mutes its UTC date
    (Beijing 08:00 to 08:00 the next day: the day window and that night); a trading day
    without a night session (the last one before a holiday) mutes its UTC 12:00-24:00
    (Beijing 20:00 to 08:00). Empty for the always-open calendar or no holiday list."""
    if calendar.always_open or not calendar.holidays:
        return []
    day = _dt.date(min(calendar.holidays).year, 1, 1)
    end = _dt.date(max(calendar.holidays).year, 12, 31)
    out = []
    while day <= end:
        if day.weekday() < 5:
            times = None
            if not calendar.is_trading_day(day):
                times = {"start_time": "00:00", "end_time": "24:00"}
            elif not calendar.has_night_session(day):
                times = {"start_time": "12:00", "end_time": "24:00"}
            if times:
                out.append({"times": [times], "days_of_month": [str(day.day)], "months": [str(day.month)],
                            "years": [str(day.year)]})
        day += _dt.timedelta(days=1)
    return out


def config_dict(feed: FeedSettings, template_path: str = TEMPLATE_NAME) -> tuple[dict, dict[str, list[str]]]:
    receivers, kinds = _receivers(feed)
    try:
        closed = closed_intervals(TradingCalendar.from_settings(feed))
    except CalendarError as exc:
        raise RenderError(str(exc)) from exc
    session_route = {"matchers": [f'alertname=~"{"|".join(SESSION_CLOCK_ALERTS)}"'], "receiver": "ops-channel",
                     "repeat_interval": "1h"}
    if closed:
        session_route["mute_time_intervals"] = [EXCHANGE_CLOSED]
    config = {
        "route": {
            "receiver": "ops-channel",
            "group_by": ["alertname", "env", "exchange"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                # the dead man's switch: its arrival every minute is the heartbeat
                {"matchers": ['alertname="Watchdog"'], "receiver": "heartbeat",
                 "group_wait": "0s", "group_interval": "1m", "repeat_interval": "1m"},
                # the session-clock alerts (all critical), muted on exchange holidays
                session_route,
                {"matchers": ['severity="critical"'], "receiver": "ops-channel", "repeat_interval": "1h"},
            ],
        },
        "inhibit_rules": [
            {"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
             "equal": ["alertname", "env", "exchange"]},
            # a worker that is down or logged out explains its own coverage, staleness and throughput
            {"source_matchers": [f'alertname=~"{"|".join(WORKER_GONE)}"'],
             "target_matchers": [f'alertname=~"{"|".join(WORKER_SYMPTOMS)}"'],
             "equal": ["env", "job", "instance"]},
        ],
        "receivers": receivers,
        "templates": [template_path],
    }
    if closed:
        config["time_intervals"] = [{"name": EXCHANGE_CLOSED, "time_intervals": closed}]
    return config, kinds


HEADER = ("# Generated by `python -m feedops.monitoring.alertmanager render` from the settings\n"
          "# (lib/feedops/monitoring/alertmanager.py); do not edit. This copy: the defaults.\n")


def default_settings() -> FeedSettings:
    """The settings model's defaults (the committed monitoring/alertmanager/alertmanager.yml)."""
    return FeedSettings()


def render(feed: FeedSettings) -> Rendered:
    config, kinds = config_dict(feed)
    text = HEADER + yaml.safe_dump(config, sort_keys=False, width=200)
    template = TEMPLATE.read_text().replace("@RUNBOOK_BASE@", feed.runbook_base_url)
    return Rendered(text, template, kinds)


def write(rendered: Rendered, out: Path, group_readable: bool = False) -> None:
    """Write the configuration (owner-only, or owner and group with ``group_readable``: it may hold
    the webhook URL or WeCom secret) and the template next to it, each atomically."""
    atomic_write_text(out, rendered.config, 0o640 if group_readable else 0o600)
    atomic_write_text(out.parent / TEMPLATE_NAME, rendered.template, 0o644)


def amtool_check(config: Path) -> subprocess.CompletedProcess:
    amtool = shutil.which("amtool")
    if amtool is None:
        raise FileNotFoundError("amtool not installed (apt-get install prometheus-alertmanager)")
    return subprocess.run([amtool, "check-config", str(config)], capture_output=True, text=True)


def _loopback_receivers(feed: FeedSettings) -> list[str]:
    """The webhook settings whose host is this host's loopback (the URLs themselves are not shown)."""
    from urllib.parse import urlsplit

    from ..endpoints import LOOPBACK_HOSTS

    pairs = (("FEEDOPS_ALERTMANAGER_WEBHOOK_URL", feed.alertmanager_webhook_url),
             ("FEEDOPS_ALERTMANAGER_HEARTBEAT_URL", feed.alertmanager_heartbeat_url))
    return [name for name, url in pairs if url and (urlsplit(url).hostname or "") in LOOPBACK_HOSTS | {"[::1]"}]


def _summary(rendered: Rendered) -> str:
    return "; ".join(f"{name}: {', '.join(kinds)}" for name, kinds in rendered.integrations.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feedops.monitoring.alertmanager",
                                     description="Render Alertmanager's configuration from the feedops settings.")
    sub = parser.add_subparsers(dest="command", required=True)
    render_cmd = sub.add_parser("render", help="write the configuration and its template")
    render_cmd.add_argument("--out", type=Path, required=True, help="configuration file to write (feedops.tmpl goes next to it)")
    render_cmd.add_argument("--group-readable", action="store_true",
                            help="mode 0640 instead of 0600: the compose runtime's Alertmanager reads it with the owner's group")
    render_cmd.add_argument("--container", action="store_true",
                            help="Alertmanager runs in a container (compose): warn about receivers on loopback, i.e. itself")
    check_cmd = sub.add_parser("check", help="render into a temporary directory and run amtool check-config")
    for cmd in (render_cmd, check_cmd):
        cmd.add_argument("--env", choices=("dev", "staging", "prod"), help="environment (default FEEDOPS_ENV, else dev)")
        cmd.add_argument("--defaults", action="store_true",
                         help="the settings model's defaults only (no env file, no environment): the committed copy")
    args = parser.parse_args(argv)
    try:
        feed = default_settings() if args.defaults else load_settings(args.env).feed
        rendered = render(feed)
    except (ConfigError, RenderError) as exc:
        sys.stderr.write(f"alertmanager: {exc}\n")
        return 2
    if args.command == "render":
        write(rendered, args.out, group_readable=args.group_readable)
        if args.container:
            for setting in _loopback_receivers(feed):
                sys.stderr.write(f"alertmanager: warning: {setting} is on loopback, which inside Alertmanager's container "
                                 f"is the container itself: set it to an address the container can reach\n")
        sys.stdout.write(f"wrote {args.out} and {args.out.parent / TEMPLATE_NAME} ({_summary(rendered)})\n")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alertmanager.yml"
        write(rendered, path)
        try:
            result = amtool_check(path)
        except FileNotFoundError as exc:
            sys.stderr.write(f"alertmanager: {exc}\n")
            return 3
    ok = result.returncode == 0
    sys.stdout.write(f"{'ok' if ok else 'INVALID'}: receivers {_summary(rendered)}\n")
    if not ok:  # amtool's reason, with the webhook URLs and registered secrets masked
        for url in (feed.alertmanager_webhook_url, feed.alertmanager_heartbeat_url):
            register_secret(url)
        sys.stdout.write(redact((result.stdout + result.stderr).replace(tmp, "<rendered>")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
