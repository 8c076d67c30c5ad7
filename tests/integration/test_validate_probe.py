"""validate_env.py --probe and the Pushgateway push, against real servers on loopback.

Fronts are real listening TCP sockets, the sink is the real redis-server fixture,
monitoring and the push use the real Pushgateway fixture. Closed ports come from
free_port() with nothing listening.
"""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port
from feedops.exitcodes import Check
from validate_support import SENTINEL_AUTH_CODE, SENTINEL_PASSWORD, assert_clean_output, check, dev_environ, run_validate, validate_report

pytestmark = pytest.mark.integration


@pytest.fixture
def fronts():
    """Two real TCP listeners: the primary and the backup front."""
    listeners = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        listeners.append(s)
    yield [f"tcp://127.0.0.1:{s.getsockname()[1]}" for s in listeners]
    for s in listeners:
        s.close()


def closed_front() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def front_env(primary: str, backup: str) -> dict[str, str]:
    return {"CTP_PRIMARY_MD_FRONTS": primary, "CTP_PRIMARY_TD_FRONTS": primary,
            "CTP_BACKUP_MD_FRONTS": backup, "CTP_BACKUP_TD_FRONTS": backup}


def pushed(pushgateway_url: str) -> dict[tuple[str, str], float]:
    """(metric name, check label or '') -> value for everything validate_env pushed."""
    with urllib.request.urlopen(f"{pushgateway_url}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("job") == "feedops_validate_env" and sample.name.startswith("feedops_"):
                assert sample.labels.get("checker") == "validate_env" and sample.labels.get("instance")
                values[(sample.name, sample.labels.get("check", ""))] = sample.value
    return values, text


def test_probe_everything_reachable_and_pushed(tmp_path, fronts, redis_server, pushgateway):
    env = dev_environ(tmp_path, **front_env(*fronts), FEEDOPS_SINK_URL=redis_server.url,
                      FEEDOPS_PUSHGATEWAY_ENABLED="true", FEEDOPS_PUSHGATEWAY_URL=pushgateway.url,
                      CTP_PRIMARY_PASSWORD=SENTINEL_PASSWORD, CTP_PRIMARY_AUTH_CODE=SENTINEL_AUTH_CODE)
    proc = run_validate(["--probe", "--json"], env)
    assert proc.returncode == Check.OK, proc.stdout + proc.stderr
    report = validate_report(proc.stdout)
    assert {c["id"]: c["status"] for c in report["checks"] if c["id"].startswith("probe.")} == {
        "probe.fronts_tcp": "pass", "probe.monitoring": "pass", "probe.sink": "pass"}
    assert report["push"] == {"enabled": True, "url": pushgateway.url, "error": None}
    values, text = pushed(pushgateway.url)
    assert values[("feedops_check_status", "")] == 0
    assert values[("feedops_check_check_status", "probe.sink")] == 0
    assert values[("feedops_check_last_success_timestamp_seconds", "")] > 0
    assert values[("feedops_check_duration_seconds", "")] >= 0
    assert SENTINEL_PASSWORD not in text and SENTINEL_AUTH_CODE not in text
    assert_clean_output(proc, SENTINEL_PASSWORD, SENTINEL_AUTH_CODE)


def test_probe_failures_name_the_settings_and_are_pushed(tmp_path, fronts, pushgateway):
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    env = dev_environ(tmp_path, **front_env(closed_front(), closed_front()), FEEDOPS_SINK_URL=dead_redis,
                      FEEDOPS_PROMETHEUS_ENABLED="true", FEEDOPS_PROMETHEUS_URL=f"http://127.0.0.1:{free_port()}",
                      FEEDOPS_PUSHGATEWAY_ENABLED="true", FEEDOPS_PUSHGATEWAY_URL=pushgateway.url)
    before, _ = pushed(pushgateway.url)
    proc = run_validate(["--probe", "--json", "--probe-timeout", "1"], env)
    assert proc.returncode == Check.CRITICAL
    report = validate_report(proc.stdout)
    fronts_check = check(report, "probe.fronts_tcp")
    assert fronts_check["status"] == "fail"
    assert {p["setting"] for p in fronts_check["problems"]} == {
        "CTP_PRIMARY_MD_FRONTS", "CTP_PRIMARY_TD_FRONTS", "CTP_BACKUP_MD_FRONTS", "CTP_BACKUP_TD_FRONTS"}
    monitoring = check(report, "probe.monitoring")
    assert monitoring["status"] == "warn" and monitoring["problems"][0]["setting"] == "FEEDOPS_PROMETHEUS_URL"
    sink = check(report, "probe.sink")
    assert sink["status"] == "fail" and sink["problems"][0]["setting"] == "FEEDOPS_SINK_URL"
    values, _ = pushed(pushgateway.url)
    assert values[("feedops_check_status", "")] == 2
    assert values[("feedops_check_check_status", "probe.fronts_tcp")] == 2
    assert values[("feedops_check_check_status", "probe.monitoring")] == 1
    # a failed run leaves the last-success time of an earlier good run untouched (own group)
    key = ("feedops_check_last_success_timestamp_seconds", "")
    assert values.get(key) == before.get(key)
    assert_clean_output(proc)


def test_unreachable_backup_only_warns(tmp_path, fronts):
    env = dev_environ(tmp_path, **front_env(fronts[0], closed_front()))
    proc = run_validate(["--probe", "--json"], env)
    assert proc.returncode == Check.WARNING, proc.stdout
    result = check(validate_report(proc.stdout), "probe.fronts_tcp")
    assert result["status"] == "warn" and {p["setting"] for p in result["problems"]} == {"CTP_BACKUP_MD_FRONTS", "CTP_BACKUP_TD_FRONTS"}


def test_one_live_front_of_several_is_enough(tmp_path, fronts):
    both = f"{closed_front()},{fronts[0]}"
    env = dev_environ(tmp_path, **front_env(both, fronts[1]))
    report = validate_report(run_validate(["--probe", "--json"], env).stdout)
    result = check(report, "probe.fronts_tcp")
    assert result["status"] == "warn" and "4 of 6" in result["summary"]  # md and td lists


def test_file_sink_probe(tmp_path, fronts):
    env = dev_environ(tmp_path, **front_env(*fronts), FEEDOPS_SINK_URL=f"file:{tmp_path / 'feed'}")
    assert check(validate_report(run_validate(["--probe", "--json"], env).stdout), "probe.sink")["status"] == "pass"
    env["FEEDOPS_SINK_URL"] = "file:/proc/feedops-feed"
    proc = run_validate(["--probe", "--json"], env)
    assert proc.returncode == Check.CRITICAL
    assert "not writable" in check(validate_report(proc.stdout), "probe.sink")["problems"][0]["message"]


def test_misconfiguration_is_pushed_even_when_settings_do_not_load(tmp_path, pushgateway):
    env = dev_environ(tmp_path, FEEDOPS_SUBSCRIBE_BATCH_SIZE="lots", FEEDOPS_PUSHGATEWAY_ENABLED="true",
                      FEEDOPS_PUSHGATEWAY_URL=pushgateway.url)
    proc = run_validate(["--json"], env)
    assert proc.returncode == Check.CRITICAL
    assert validate_report(proc.stdout)["push"]["error"] is None
    values, _ = pushed(pushgateway.url)
    assert values[("feedops_check_status", "")] == 2
    assert values[("feedops_check_check_status", "ratelimits.ctp_limits")] == 2
    assert ("feedops_check_check_status", "profile.required") not in values  # skipped, not pushed


def test_push_failure_is_reported_and_does_not_change_the_verdict(tmp_path):
    env = dev_environ(tmp_path, FEEDOPS_PUSHGATEWAY_ENABLED="true", FEEDOPS_PUSHGATEWAY_URL=f"http://127.0.0.1:{free_port()}")
    proc = run_validate(["--json"], env)
    assert proc.returncode == Check.OK
    push = validate_report(proc.stdout)["push"]
    assert push["enabled"] is True and "failed" in push["error"]
    assert "validate.push.failed" in proc.stderr
    table = run_validate([], env)
    assert table.returncode == Check.OK and "push: http://127.0.0.1" in table.stdout
    assert run_validate(["--no-push", "--json"], env).returncode == Check.OK
