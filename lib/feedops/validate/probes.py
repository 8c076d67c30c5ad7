"""The checklist's network probes (``validate_env.py --probe``): fronts accept TCP, monitoring endpoints
answer their health URL, the tick sink answers. Registered after the configuration checks of
:mod:`.checks`; each probe bounds its wait with the context's ``probe_timeout``.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import paths
from ..addresses import FRONT_RE, mask_url
from ..settings import CtpProfile, Problem
from .checks import writable_dir_problem
from .registry import CheckResult, Context, check, verdict


def tcp_probe(host: str, port: int, timeout: float) -> str | None:
    """None when a TCP connection to host:port succeeds within ``timeout``, else the reason."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return None
    except socket.timeout:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


@check("probe.fronts_tcp", "Each front accepts a TCP connection (at least one md and one td front of the active profile)", probe=True)
def check_fronts_tcp(ctx: Context) -> CheckResult:
    s = ctx.settings
    targets: list[tuple[CtpProfile, str, str]] = []
    for profile in (s.active, s.backup if s.active is s.primary else s.primary):
        for name in ("md_fronts", "td_fronts"):
            targets.extend((profile, profile.env_var(name), url) for url in dict.fromkeys(getattr(profile, name)))
    if not targets:
        return CheckResult("probe.fronts_tcp", "skip", "no front configured")

    def probe(target: tuple[CtpProfile, str, str]) -> str | None:
        m = FRONT_RE.match(target[2])
        return tcp_probe(m.group("host"), int(m.group("port")), ctx.probe_timeout) if m else "malformed address"

    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        reasons = list(pool.map(probe, targets))
    problems: list[Problem] = []
    fail = False
    for var in dict.fromkeys(t[1] for t in targets):
        rows = [(t, r) for t, r in zip(targets, reasons) if t[1] == var]
        down = [(t, r) for t, r in rows if r]
        for (_, _, url), reason in down:
            problems.append(Problem(var, f"{url} does not accept TCP connections ({reason})",
                                    "check the address with the broker and the network path (firewall, VPN); "
                                    "in dev start ctp-sim (make sim)"))
        if rows and len(down) == len(rows) and rows[0][0][0] is s.active:
            fail = True
    up = reasons.count(None)
    return verdict("probe.fronts_tcp", problems, fail, f"{up} of {len(targets)} fronts accept TCP connections",
                    f"{up} of {len(targets)} fronts accept TCP connections" + ("; the active profile has no reachable front of a kind" if fail else ""))


MONITORING_ENDPOINTS = (
    ("prometheus", "/-/ready"),
    ("pushgateway", "/-/ready"),
    ("alertmanager", "/-/ready"),
    ("grafana", "/api/health"),
)


def http_probe(url: str, timeout: float) -> str | None:
    """None when GET ``url`` answers 2xx within ``timeout`` (no proxy), else the reason."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))


@check("probe.monitoring", "Each enabled monitoring endpoint (Prometheus, Pushgateway, Alertmanager, Grafana) answers its health URL", probe=True)
def check_monitoring(ctx: Context) -> CheckResult:
    f = ctx.settings.feed
    enabled = [(name, getattr(f, f"{name}_url").rstrip("/"), path) for name, path in MONITORING_ENDPOINTS if getattr(f, f"{name}_enabled")]
    if not enabled:
        return CheckResult("probe.monitoring", "skip", "no monitoring endpoint enabled")
    with ThreadPoolExecutor(max_workers=len(enabled)) as pool:
        reasons = list(pool.map(lambda e: http_probe(e[1] + e[2], ctx.probe_timeout), enabled))
    problems = [Problem(f"FEEDOPS_{name.upper()}_URL", f"{mask_url(base)}{path} did not answer ({reason})",
                        f"start {name} or correct FEEDOPS_{name.upper()}_URL (or set FEEDOPS_{name.upper()}_ENABLED=false)")
                for (name, base, path), reason in zip(enabled, reasons) if reason]
    return verdict("probe.monitoring", problems, False, f"{len(enabled)} monitoring endpoints answer: {', '.join(e[0] for e in enabled)}")


@check("probe.sink", "The tick sink is reachable: Redis answers PING, or the file sink directory is writable", probe=True)
def check_sink(ctx: Context) -> CheckResult:
    url = ctx.settings.feed.sink_url
    shown = mask_url(url)
    if url.startswith("file:"):
        path = Path(url[len("file:"):].removeprefix("//"))
        reason = writable_dir_problem(paths.resolve(path))
    else:
        reason = redis_ping(url, ctx.probe_timeout)
    problems = [Problem("FEEDOPS_SINK_URL", f"{shown}: {reason}", "start the sink or correct FEEDOPS_SINK_URL",
                        ctx.settings.sources.get("FEEDOPS_SINK_URL"))] if reason else []
    return verdict("probe.sink", problems, True, f"{shown} reachable")


def redis_ping(url: str, timeout: float) -> str | None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return f"Redis did not answer PING ({type(exc).__name__}: {mask_url(str(exc))})"
    return None
