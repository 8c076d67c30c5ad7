"""The monitoring configuration in the repo is accepted by the real tools."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from feedops.monitoring import prometheus_config
from feedops.settings import ENV_NAMES, load_settings

ROOT = Path(__file__).resolve().parents[2]


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not path:
        pytest.skip(f"{name} not installed (apt-get install prometheus prometheus-alertmanager)")
    return path


@pytest.mark.parametrize("env", ENV_NAMES)
def test_committed_compose_rendering_is_what_the_renderer_writes(env):
    """Compose mounts monitoring/prometheus/compose/<env>.yml: it must be the rendering, never a hand edit."""
    committed = prometheus_config.compose_path(env).read_text()
    assert committed == prometheus_config.render(prometheus_config.compose_settings(env), "compose"), \
        "run: python -m feedops.monitoring.prometheus_config --write"


@pytest.mark.parametrize("runtime", prometheus_config.RUNTIMES)
@pytest.mark.parametrize("env", ENV_NAMES)
def test_rendered_prometheus_config_is_valid(tmp_path, env, runtime):
    settings = prometheus_config.compose_settings(env)
    # promtool resolves rule_files against the filesystem: point the glob at the repo's rules
    text = prometheus_config.render(settings, runtime, rules_glob=str(ROOT / "monitoring/prometheus/rules/*.yml"))
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(text)
    result = subprocess.run([_tool("promtool"), "check", "config", str(cfg)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_target_carries_env_and_the_pushgateway_keeps_pushed_labels():
    settings = load_settings("dev", environ={"FEEDOPS_SINK_URL": "redis://127.0.0.1:6390/0",
                                             "FEEDOPS_SECRETS_DIR": str(ROOT / "envs")})
    doc = prometheus_config.config(settings, "native")
    jobs = {job["job_name"]: job for job in doc["scrape_configs"]}
    assert sorted(jobs) == ["alertmanager", "ctp-sim", "feedops-worker", "prometheus", "pushgateway", "redis-exporter"]
    for job in jobs.values():
        assert [group["labels"]["env"] for group in job["static_configs"]] == ["dev"], job
    assert jobs["pushgateway"].get("honor_labels") is True
    assert [j.get("honor_labels", False) for name, j in jobs.items() if name != "pushgateway"] == [False] * 5
    assert jobs["ctp-sim"]["static_configs"][0]["targets"] == ["127.0.0.1:18001", "127.0.0.1:18002"]  # front + 1000
    assert jobs["redis-exporter"]["static_configs"][0]["targets"] == ["127.0.0.1:9121"]
    assert doc["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    assert doc["rule_files"] == [str(ROOT / "monitoring/prometheus/rules/*.yml")]


def test_native_rendering_follows_the_toggles_and_the_sink():
    """File sink: no exporter; Alertmanager and Pushgateway disabled: neither scraped nor alerted."""
    settings = load_settings("dev", environ={"FEEDOPS_ALERTMANAGER_ENABLED": "false", "FEEDOPS_PUSHGATEWAY_ENABLED": "false",
                                             "FEEDOPS_SECRETS_DIR": str(ROOT / "envs")})
    doc = prometheus_config.config(settings, "native")
    assert [job["job_name"] for job in doc["scrape_configs"]] == ["feedops-worker", "ctp-sim", "prometheus"]
    assert "alerting" not in doc


def test_compose_rendering_uses_service_names_and_the_sims_only_where_they_run():
    prod = prometheus_config.config(prometheus_config.compose_settings("prod"), "compose")
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in prod["scrape_configs"]}
    assert targets == {"feedops-worker": ["worker:9108"], "pushgateway": ["pushgateway:9091"],
                       "redis-exporter": ["redis-exporter:9121"], "alertmanager": ["alertmanager:9093"],
                       "prometheus": ["localhost:9090"]}
    assert prod["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    dev = prometheus_config.config(prometheus_config.compose_settings("dev"), "compose")
    sims = [job for job in dev["scrape_configs"] if job["job_name"] == "ctp-sim"]
    assert sims[0]["static_configs"][0]["targets"] == ["ctp-sim-primary:18001", "ctp-sim-backup:18002"]


def test_prometheus_config_rejects_garbage(tmp_path):
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("scrape_configs:\n  - job_name: x\n    scrape_interval: fast\n")
    result = subprocess.run([_tool("promtool"), "check", "config", str(cfg)], capture_output=True, text=True)
    assert result.returncode != 0


def test_alertmanager_config_is_valid():
    result = subprocess.run([_tool("amtool"), "check-config", str(ROOT / "monitoring/alertmanager/alertmanager.yml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_critical_alerts_route_to_ops_channel():
    result = subprocess.run([_tool("amtool"), "config", "routes", "test",
                             f"--config.file={ROOT / 'monitoring/alertmanager/alertmanager.yml'}", "severity=critical"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ops-channel"
