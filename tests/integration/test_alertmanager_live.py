"""A real Alertmanager (Debian prometheus-alertmanager) on loopback with the rendered
configuration: the Watchdog reaches the heartbeat receiver only, a critical alert reaches
the ops webhook and Slack with the runbook link and the fix command in the message, and
the inhibitions hold (critical over warning, a down worker over its own symptoms).

Local capture servers stand in for the webhook and Slack endpoints; nothing leaves
127.0.0.1. The only change to the rendered file is a shorter group_wait for the ops
route, so the test waits seconds, not 30 s.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from conftest import Server, _require, free_port, http_ok, wait_for
from feedops.monitoring import alertmanager as am
from feedops.settings import load_settings
from webhook_support import WebhookReceiver

pytestmark = pytest.mark.integration


def _alert(name: str, severity: str, **labels: str) -> dict:
    return {"labels": {"alertname": name, "severity": severity, "env": "test", **labels},
            "annotations": {"summary": f"{name} summary", "description": f"{name} description",
                            "runbook_url": f"docs/ops/alerts/{name}.md", "fix": "make restart"}}


def _post(url: str, alerts: list[dict]) -> None:
    req = urllib.request.Request(f"{url}/api/v2/alerts", data=json.dumps(alerts).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def _alerts(url: str) -> dict[tuple[str, str, str], dict]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts", timeout=5) as resp:
        data = json.load(resp)
    return {(a["labels"]["alertname"], a["labels"]["severity"], a["labels"].get("instance", "")): a for a in data}


@pytest.fixture
def alertmanager(tmp_path: Path):
    binary = _require("prometheus-alertmanager", "prometheus-alertmanager")
    capture = WebhookReceiver()
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    slack_url = tmp_path / "slack-url"
    slack_url.write_text(f"{capture.url}/slack\n")
    feed = load_settings("dev", environ={
        "FEEDOPS_SECRETS_DIR": str(secrets),
        "FEEDOPS_ALERTMANAGER_WEBHOOK_URL": f"{capture.url}/ops",
        "FEEDOPS_ALERTMANAGER_HEARTBEAT_URL": f"{capture.url}/heartbeat",
        "FEEDOPS_ALERTMANAGER_SLACK_API_URL_FILE": str(slack_url),
        "FEEDOPS_RUNBOOK_BASE_URL": "https://git.example.com/feedops/blob/main/",
    }).feed
    rendered = am.render(feed)
    assert "group_wait: 30s" in rendered.config
    rendered = am.Rendered(rendered.config.replace("group_wait: 30s", "group_wait: 1s"), rendered.template, rendered.integrations)
    config = tmp_path / "am" / "alertmanager.yml"
    am.write(rendered, config)
    port = free_port()
    srv = Server("alertmanager", [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
                                  f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                 port, tmp_path / "alertmanager.log")
    try:
        wait_for(lambda: http_ok(f"{srv.url}/-/ready"), timeout=30, what="alertmanager")
        yield srv, capture
    finally:
        srv.stop()
        capture.close()


def test_routing_inhibition_and_messages(alertmanager):
    srv, capture = alertmanager
    worker = {"job": "feedops-worker", "instance": "w1:9108"}
    other = {"job": "feedops-worker", "instance": "w2:9108"}
    _post(srv.url, [
        _alert("Watchdog", "none"),
        _alert("FeedWorkerDown", "critical", **worker),
        _alert("FeedCoverageLow", "warning", exchange="SHFE", **worker),  # inhibited: its worker is down
        _alert("FeedCoverageLow", "warning", exchange="SHFE", **other),  # not inhibited: w2 is up
        _alert("FeedStale", "warning", **other),  # inhibited by the critical FeedStale of w2
        _alert("FeedStale", "critical", **other),
    ])

    heartbeat = wait_for(lambda: capture.bodies("/heartbeat"), timeout=30, what="Watchdog at the heartbeat receiver")
    assert {a["labels"]["alertname"] for body in heartbeat for a in body["alerts"]} == {"Watchdog"}

    def ops_names() -> set[str]:
        return {a["labels"]["alertname"] + "/" + a["labels"]["severity"] + "/" + a["labels"].get("instance", "")
                for body in capture.bodies("/ops") for a in body["alerts"]}

    wait_for(lambda: {"FeedWorkerDown/critical/w1:9108", "FeedStale/critical/w2:9108",
                      "FeedCoverageLow/warning/w2:9108"} <= ops_names(), timeout=30, what="alerts at the ops webhook")
    slack = wait_for(lambda: [b for b in capture.bodies("/slack") if "FeedWorkerDown" in json.dumps(b)], timeout=30,
                     what="FeedWorkerDown at Slack")
    text = slack[0]["attachments"][0]["text"]
    assert "Runbook: https://git.example.com/feedops/blob/main/docs/ops/alerts/FeedWorkerDown.md" in text
    assert "Fix: make restart" in text
    assert slack[0]["attachments"][0]["title"] == "[FIRING:1] FeedWorkerDown (test)"

    state = _alerts(srv.url)
    assert state[("FeedCoverageLow", "warning", "w1:9108")]["status"]["inhibitedBy"]
    assert state[("FeedStale", "warning", "w2:9108")]["status"]["inhibitedBy"]
    assert not state[("FeedCoverageLow", "warning", "w2:9108")]["status"]["inhibitedBy"]
    assert not state[("FeedWorkerDown", "critical", "w1:9108")]["status"]["inhibitedBy"]
    # inhibited alerts were never notified, and the Watchdog never reached the ops channel
    assert "FeedCoverageLow/warning/w1:9108" not in ops_names()
    assert "FeedStale/warning/w2:9108" not in ops_names()
    assert not any(n.startswith("Watchdog/") for n in ops_names())
