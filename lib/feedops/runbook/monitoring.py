"""The monitoring stack on the native runtime: Prometheus, Alertmanager, Pushgateway and
prometheus-redis-exporter from Debian, as processes next to the feed.

``start-stack`` starts each component that is enabled (``FEEDOPS_<NAME>_ENABLED``; the
exporter with Prometheus when the sink is Redis), whose URL is on this host (loopback:
it listens there) and whose binary is installed. A missing binary is not an error: the
runbook logs the apt-get line that installs it and goes on, and the programs it starts
do not push to a Pushgateway that will not run
(:func:`feedops.runbook.binaries.unavailable_toggles`). Configs and data live under
``FEEDOPS_MONITORING_DIR``; the Prometheus config is rendered by
:mod:`feedops.monitoring.prometheus_config`.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..endpoints import is_loopback, listen_of
from ..fileio import atomic_write_text
from ..log import get_logger
from ..monitoring import alertmanager as alertmanager_config
from ..monitoring import prometheus_config, rules
from ..settings import Settings
from . import binaries
from .binaries import BINARIES
from .binaries import INSTALL_HINT as INSTALL_HINT  # the runbook names it where binaries are missing
from .config import RunbookContext
from .procs import Component

log = get_logger("runbook")

#: Prometheus drops the first notifications while it discovers Alertmanager and resends them after
#: this delay (its default, 1m, would leave a fresh start without alerts for over a minute).
RESEND_DELAY = "15s"


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


def plan(ctx: RunbookContext) -> Plan:
    """What start-stack starts for monitoring (native runtime)."""
    settings, feed = ctx.settings, ctx.feed
    root = feed.path("monitoring_dir")
    result = Plan()
    for name, url in binaries.wanted(settings):
        if not is_loopback(url):
            result.elsewhere.append(f"{name} at {url}")
            continue
        binary, package = BINARIES[name]
        path = binaries.find_binary(binary)
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


def urls(ctx: RunbookContext) -> list[tuple[str, str]]:
    """(component, URL) of the enabled monitoring endpoints, for `status`."""
    return binaries.wanted(ctx.settings)
