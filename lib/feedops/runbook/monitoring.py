"""The monitoring stack on the native runtime: Prometheus, Alertmanager, Pushgateway and
prometheus-redis-exporter from Debian, as processes next to the feed.

``start-stack`` starts each component that is enabled (``FEEDOPS_<NAME>_ENABLED``; the
exporter with Prometheus when the sink is Redis), whose URL is on this host (loopback:
it listens there) and whose binary is installed. A missing binary is not an error: the
runbook logs the apt-get line that installs it and goes on, and the programs it starts
do not push to a Pushgateway that will not run (:func:`unavailable_toggles`). Configs and
data live under ``FEEDOPS_MONITORING_DIR``; the Prometheus config is rendered by
:mod:`feedops.monitoring.prometheus_config`.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..fileio import atomic_write_text
from ..log import get_logger
from ..monitoring import alertmanager as alertmanager_config
from ..monitoring import prometheus_config, rules
from ..settings import Settings
from .config import RunbookContext, is_loopback, listen_of
from .procs import Component

log = get_logger("runbook")

#: component name -> (Debian binary, Debian package)
BINARIES = {
    "prometheus": ("prometheus", "prometheus"),
    "alertmanager": ("prometheus-alertmanager", "prometheus-alertmanager"),
    "pushgateway": ("prometheus-pushgateway", "prometheus-pushgateway"),
    "redis-exporter": ("prometheus-redis-exporter", "prometheus-redis-exporter"),
}
INSTALL_HINT = "sudo apt-get install -y " + " ".join(package for _, package in BINARIES.values())
#: Prometheus drops the first notifications while it discovers Alertmanager and resends them after
#: this delay (its default, 1m, would leave a fresh start without alerts for over a minute).
RESEND_DELAY = "15s"


def find_binary(name: str) -> str | None:
    """The Debian binary ``name`` on PATH or in /usr/bin (None when not installed)."""
    return shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)


# ------------------------------------------------------------------ argument lists (the live test uses them too)
def prometheus_argv(binary: str, config: Path, data_dir: Path, listen: str, *extra: str) -> list[str]:
    return [binary, f"--config.file={config}", f"--storage.tsdb.path={data_dir}", f"--web.listen-address={listen}",
            "--web.enable-lifecycle", *extra]


def alertmanager_argv(binary: str, config: Path, data_dir: Path, listen: str, *extra: str) -> list[str]:
    # an empty cluster address turns gossip off: it would otherwise listen on 0.0.0.0:9094
    return [binary, f"--config.file={config}", f"--storage.path={data_dir}", f"--web.listen-address={listen}",
            "--cluster.listen-address=", *extra]


def pushgateway_argv(binary: str, listen: str, persistence_file: Path | None = None) -> list[str]:
    argv = [binary, f"--web.listen-address={listen}"]
    if persistence_file is not None:  # pushed groups survive a restart
        argv.append(f"--persistence.file={persistence_file}")
    return argv


def redis_exporter_argv(binary: str, redis_url: str, listen: str, stream_prefix: str) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment: the Redis password (if any) goes in REDIS_PASSWORD, never on
    the command line; the streams checked are the worker's (``<prefix>:<EXCHANGE>``)."""
    parts = urlsplit(redis_url)
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
    db = parts.path.lstrip("/")
    address = f"redis://{host}:{parts.port or 6379}" + (f"/{db}" if db else "")
    env = {"REDIS_PASSWORD": parts.password} if parts.password else {}
    if parts.username:
        env["REDIS_USER"] = parts.username
    argv = [binary, f"-redis.addr={address}", f"-web.listen-address={listen}", f"-check-streams={stream_prefix}:*",
            "-set-client-name=false"]
    return argv, env


def alertmanager_files(settings: Settings) -> dict[str, str]:
    """File name -> text of what Alertmanager reads on the native runtime: its configuration
    rendered from the settings (:mod:`feedops.monitoring.alertmanager`: receivers, routes,
    inhibitions) and the notification template it names, written beside it."""
    rendered = alertmanager_config.render(settings.feed)
    return {"alertmanager.yml": rendered.config, alertmanager_config.TEMPLATE_NAME: rendered.template}


def rule_files(settings: Settings) -> dict[str, str]:
    """File name -> text of the rule files Prometheus loads on the native runtime: the repo's
    rules rendered with this environment's thresholds (:mod:`feedops.monitoring.rules`)."""
    return {Path(rel).name: text for rel, text in rules.rule_files(rules.thresholds(settings.feed)).items()}


# ------------------------------------------------------------------ the plan
@dataclass
class Plan:
    components: list[Component] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # enabled here, binary not installed (Debian packages)
    elsewhere: list[str] = field(default_factory=list)  # enabled, URL not on this host: not ours to start


def _wanted(settings: Settings) -> list[tuple[str, str]]:
    """(component, its URL) for every component the settings enable."""
    feed = settings.feed
    wanted = []
    if feed.prometheus_enabled:
        wanted.append(("prometheus", feed.prometheus_url))
    if feed.alertmanager_enabled:
        wanted.append(("alertmanager", feed.alertmanager_url))
    if feed.pushgateway_enabled:
        wanted.append(("pushgateway", feed.pushgateway_url))
    if feed.prometheus_enabled and prometheus_config.redis_sink(settings):
        wanted.append(("redis-exporter", feed.redis_exporter_url))
    return wanted


def plan(ctx: RunbookContext) -> Plan:
    """What start-stack starts for monitoring (native runtime)."""
    settings, feed = ctx.settings, ctx.feed
    root = feed.path("monitoring_dir")
    result = Plan()
    for name, url in _wanted(settings):
        if not is_loopback(url):
            result.elsewhere.append(f"{name} at {url}")
            continue
        binary, package = BINARIES[name]
        path = find_binary(binary)
        if not path:
            result.missing.append(package)
            continue
        host, port = listen_of(url)
        listen = f"{host}:{port}"
        env: dict[str, str] = {}
        if name == "prometheus":
            argv = prometheus_argv(path, root / "prometheus.yml", root / "prometheus", listen,
                                   "--storage.tsdb.retention.time=15d", f"--rules.alert.resend-delay={RESEND_DELAY}")
        elif name == "alertmanager":
            argv = alertmanager_argv(path, root / "alertmanager.yml", root / "alertmanager", listen)
        elif name == "pushgateway":
            argv = pushgateway_argv(path, listen, root / "pushgateway.db")
        else:
            argv, env = redis_exporter_argv(path, feed.sink_url, listen, feed.redis_stream_prefix)
        result.components.append(Component(name, "monitoring", argv, (host, port), env))
    return result


def write_configs(ctx: RunbookContext, components: list[Component]) -> None:
    """Render the configs the components read into FEEDOPS_MONITORING_DIR (atomically)."""
    root = ctx.feed.path("monitoring_dir")
    names = {c.name for c in components}
    files = {}
    if "prometheus" in names:
        files["prometheus.yml"] = prometheus_config.render(ctx.settings, "native", rules_glob=str(root / "rules" / "*.yml"))
        files.update({f"rules/{name}": text for name, text in rule_files(ctx.settings).items()})
        (root / "prometheus").mkdir(parents=True, exist_ok=True)
        (root / "rules").mkdir(parents=True, exist_ok=True)
    if "alertmanager" in names:
        files.update(alertmanager_files(ctx.settings))
        (root / "alertmanager").mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        atomic_write_text(root / name, text, 0o600)  # the Alertmanager config may hold a receiver's URL or secret


#: Components that re-read their config on POST /-/reload.
RELOADABLE = ("prometheus", "alertmanager")


def reload(comp: Component, timeout: float = 5.0) -> str | None:
    """POST /-/reload to a running component; None on success, else the reason."""
    host, port = comp.address
    request = urllib.request.Request(f"http://{host}:{port}/-/reload", method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}: {exc.read().decode(errors='replace').strip()[:200]}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def unavailable_toggles(ctx: RunbookContext) -> list[str]:
    """FEEDOPS_*_ENABLED variables to hand to programs as false on this host: the component
    is enabled and would be started here, but its binary is not installed."""
    if ctx.runtime != "native":
        return []
    off = []
    for name, url in _wanted(ctx.settings):
        if name != "redis-exporter" and is_loopback(url) and not find_binary(BINARIES[name][0]):
            off.append(f"FEEDOPS_{name.upper()}_ENABLED")
    return off


def urls(ctx: RunbookContext) -> list[tuple[str, str]]:
    """(component, URL) of the enabled monitoring endpoints, for `status`."""
    return _wanted(ctx.settings)
