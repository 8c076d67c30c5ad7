"""feedops.runbook.monitoring: what premarket starts for monitoring on the native runtime, and
what it does when a binary is not installed (says how to get it, goes on, no push to nowhere)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from feedops.exitcodes import Runbook
from feedops.runbook import binaries, cli, monitoring
from feedops.runbook.config import RunbookContext

SENTINEL = "monSntl77"


@pytest.fixture
def environ(tmp_path, monkeypatch) -> dict[str, str]:
    for key in [k for k in os.environ if k.startswith(("FEEDOPS_", "CTP_PRIMARY_", "CTP_BACKUP_"))]:
        monkeypatch.delenv(key)
    values = {"FEEDOPS_STATE_DIR": str(tmp_path / "state"), "FEEDOPS_MONITORING_DIR": str(tmp_path / "monitoring"),
              "FEEDOPS_SECRETS_DIR": str(tmp_path), "FEEDOPS_RUNTIME": "native",
              # fronts off this host: start-stack plans no ctp-sim, only the monitoring
              "CTP_PRIMARY_MD_FRONTS": "tcp://md.example:41213", "CTP_BACKUP_MD_FRONTS": "tcp://md2.example:41213"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def installed(monkeypatch, *names: str) -> None:
    """Only these Debian binaries exist."""
    monkeypatch.setattr(binaries, "find_binary", lambda binary: f"/usr/bin/{binary}" if binary in names else None)


def test_dev_plans_prometheus_alertmanager_pushgateway_on_loopback(environ, monkeypatch):
    installed(monkeypatch, *(b for b, _ in monitoring.BINARIES.values()))
    plan = monitoring.plan(RunbookContext.load("dev"))
    assert plan.missing == [] and plan.elsewhere == []
    comps = {c.name: c for c in plan.components}
    assert sorted(comps) == ["alertmanager", "prometheus", "pushgateway"]  # file sink: no redis-exporter
    root = environ["FEEDOPS_MONITORING_DIR"]
    assert comps["prometheus"].argv[:5] == ["/usr/bin/prometheus", f"--config.file={root}/prometheus.yml",
                                            f"--storage.tsdb.path={root}/prometheus", "--web.listen-address=127.0.0.1:9090",
                                            "--web.enable-lifecycle"]
    assert "--cluster.listen-address=" in comps["alertmanager"].argv  # no gossip port on 0.0.0.0
    assert comps["pushgateway"].address == ("127.0.0.1", 9091) and comps["alertmanager"].address == ("127.0.0.1", 9093)
    assert {c.kind for c in comps.values()} == {"monitoring"}


def test_redis_sink_adds_the_exporter_with_the_password_kept_off_the_command_line(environ, monkeypatch):
    installed(monkeypatch, *(b for b, _ in monitoring.BINARIES.values()))
    monkeypatch.setenv("FEEDOPS_SINK_URL", f"redis://feed:{SENTINEL}@127.0.0.1:6390/2")
    monkeypatch.setenv("FEEDOPS_REDIS_STREAM_PREFIX", "md:test")
    exporter = next(c for c in monitoring.plan(RunbookContext.load("dev")).components if c.name == "redis-exporter")
    assert exporter.argv[1:4] == ["-redis.addr=redis://127.0.0.1:6390/2", "-web.listen-address=127.0.0.1:9121",
                                  "-check-streams=md:test:*"]
    assert SENTINEL not in " ".join(exporter.argv)
    assert exporter.env == {"REDIS_PASSWORD": SENTINEL, "REDIS_USER": "feed"}


def test_toggles_and_remote_urls_are_honoured(environ, monkeypatch):
    installed(monkeypatch, *(b for b, _ in monitoring.BINARIES.values()))
    monkeypatch.setenv("FEEDOPS_ALERTMANAGER_ENABLED", "false")
    monkeypatch.setenv("FEEDOPS_PUSHGATEWAY_URL", "http://pushgateway.example:9091")
    plan = monitoring.plan(RunbookContext.load("dev"))
    assert [c.name for c in plan.components] == ["prometheus"]
    assert plan.elsewhere == ["pushgateway at http://pushgateway.example:9091"]


def test_missing_binaries_are_named_with_the_install_line_and_nothing_pushes(environ, monkeypatch, capsys):
    installed(monkeypatch, "prometheus")
    ctx = RunbookContext.load("dev")
    plan = monitoring.plan(ctx)
    assert [c.name for c in plan.components] == ["prometheus"]
    assert plan.missing == ["prometheus-alertmanager", "prometheus-pushgateway"]
    overrides = ctx.child_overrides()
    assert overrides["FEEDOPS_ALERTMANAGER_ENABLED"] == "false" and overrides["FEEDOPS_PUSHGATEWAY_ENABLED"] == "false"
    assert "FEEDOPS_PROMETHEUS_ENABLED" not in overrides
    assert ctx.pushgateway_url() is None and ctx.shell_values()["PUSHGATEWAY_ENABLED"] == "false"

    installed(monkeypatch)  # nothing installed: start-stack still succeeds and says how to get them
    assert cli.main(["--env", "dev", "start-monitoring", "--timeout", "5"]) == Runbook.OK
    out = capsys.readouterr()
    assert f"not started: prometheus, prometheus-alertmanager, prometheus-pushgateway (not installed: " \
           f"{monitoring.INSTALL_HINT})" in out.out
    assert "apt-get install" in out.err  # the warning log line carries it too
    assert not (os.path.isdir(f"{environ['FEEDOPS_STATE_DIR']}/pids") and os.listdir(f"{environ['FEEDOPS_STATE_DIR']}/pids"))


def test_compose_runtime_never_turns_toggles_off(environ, monkeypatch):
    installed(monkeypatch)
    ctx = RunbookContext.load("prod", "compose")
    assert ctx.monitoring_unavailable() == [] and ctx.pushgateway_url() == "http://pushgateway:9091"


def test_alertmanager_gets_its_configuration_rendered_from_the_settings(environ, monkeypatch, tmp_path):
    monkeypatch.setenv("FEEDOPS_ALERTMANAGER_WEBHOOK_URL", f"http://127.0.0.1:9999/{SENTINEL}")
    installed(monkeypatch, "prometheus-alertmanager")
    ctx = RunbookContext.load("dev")
    monitoring.write_configs(ctx, monitoring.plan(ctx).components)
    written = tmp_path / "monitoring"
    assert sorted(p.name for p in written.iterdir()) == ["alertmanager", "alertmanager.yml", "feedops.tmpl"]
    config = (written / "alertmanager.yml").read_text()
    assert f"http://127.0.0.1:9999/{SENTINEL}" in config and "heartbeat" in config  # the renderer's, not a copy
    assert (written / "alertmanager.yml").stat().st_mode & 0o777 == 0o600  # a receiver URL may be a secret
    assert "feedops.text" in (written / "feedops.tmpl").read_text()
    amtool = shutil.which("amtool") or "/usr/bin/amtool"
    if os.path.exists(amtool):
        done = subprocess.run([amtool, "check-config", str(written / "alertmanager.yml")], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_loads_the_rules_rendered_with_this_environments_thresholds(environ, monkeypatch, tmp_path):
    installed(monkeypatch, "prometheus")
    monkeypatch.setenv("FEEDOPS_LATENCY_P99_WARN_SECONDS", "1.25")
    ctx = RunbookContext.load("dev")
    monitoring.write_configs(ctx, monitoring.plan(ctx).components)
    written = tmp_path / "monitoring"
    assert f"{written}/rules/*.yml" in (written / "prometheus.yml").read_text()
    rules = (written / "rules" / "feedops.yml").read_text()
    assert "> 1.25" in rules and "alert: FeedTickLatencyHigh" in rules
