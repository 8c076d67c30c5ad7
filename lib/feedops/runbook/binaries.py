"""Which monitoring components the settings enable, and whether their Debian binaries are here.

Below both :mod:`feedops.runbook.config` (a toggle whose binary is missing reaches the
programs the runbook starts as false) and :mod:`feedops.runbook.monitoring` (what
start-stack starts): it imports neither.
"""

from __future__ import annotations

import os
import shutil

from ..endpoints import is_loopback
from ..monitoring.prometheus_config import redis_sink
from ..settings import Settings

#: component name -> (Debian binary, Debian package)
BINARIES = {
    "prometheus": ("prometheus", "prometheus"),
    "alertmanager": ("prometheus-alertmanager", "prometheus-alertmanager"),
    "pushgateway": ("prometheus-pushgateway", "prometheus-pushgateway"),
    "redis-exporter": ("prometheus-redis-exporter", "prometheus-redis-exporter"),
}
INSTALL_HINT = "sudo apt-get install -y " + " ".join(package for _, package in BINARIES.values())


def find_binary(name: str) -> str | None:
    """The Debian binary ``name`` on PATH or in /usr/bin (None when not installed)."""
    return shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)


def wanted(settings: Settings) -> list[tuple[str, str]]:
    """(component, its URL) for every component the settings enable."""
    feed = settings.feed
    result = []
    if feed.prometheus_enabled:
        result.append(("prometheus", feed.prometheus_url))
    if feed.alertmanager_enabled:
        result.append(("alertmanager", feed.alertmanager_url))
    if feed.pushgateway_enabled:
        result.append(("pushgateway", feed.pushgateway_url))
    if feed.prometheus_enabled and redis_sink(settings):
        result.append(("redis-exporter", feed.redis_exporter_url))
    return result


def unavailable_toggles(runtime: str, settings: Settings) -> list[str]:
    """FEEDOPS_*_ENABLED variables to hand to programs as false on this host: the component
    is enabled and would be started here, but its binary is not installed."""
    if runtime != "native":
        return []
    off = []
    for name, url in wanted(settings):
        if name != "redis-exporter" and is_loopback(url) and not find_binary(BINARIES[name][0]):
            off.append(f"FEEDOPS_{name.upper()}_ENABLED")
    return off
