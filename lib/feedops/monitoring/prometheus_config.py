"""The Prometheus configuration, rendered per runtime from one description.

One function, :func:`render`, writes the scrape, rule and alerting configuration for
an environment's settings:

* ``native`` (dev, CI, hosts without Docker): loopback ``host:port`` targets taken from
  the settings (worker URLs, the ctp-sim control ports, the Pushgateway, Alertmanager and
  prometheus-redis-exporter URLs), rule files from the checkout's
  ``monitoring/prometheus/rules/*.yml``; the runbook writes it under
  ``FEEDOPS_MONITORING_DIR`` at start.
* ``compose``: docker compose service names, rule files mounted at
  ``/etc/prometheus/rules``; committed as ``monitoring/prometheus/compose/<env>.yml``
  (what compose mounts), and a test fails when rendering changes them.

Every target carries an ``env`` label (alerts and dashboards select and group by it);
the Pushgateway job uses ``honor_labels`` so that the pushed ``job``/``instance``/``env``
labels are kept. ``python -m feedops.monitoring.prometheus_config --write`` regenerates
the committed files.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import paths
from ..endpoints import listen_of, local_sim_profiles
from ..settings import ENV_NAMES, PROFILE_NAMES, Settings, load_settings

RUNTIMES = ("native", "compose")
RULES_DIR = paths.ROOT / "monitoring" / "prometheus" / "rules"
COMPOSE_DIR = paths.ROOT / "monitoring" / "prometheus" / "compose"
COMPOSE_RULES_GLOB = "/etc/prometheus/rules/*.yml"

# Job names: alerts and dashboards select on them.
JOB_WORKER = "feedops-worker"
JOB_SIM = "ctp-sim"
JOB_PUSHGATEWAY = "pushgateway"
JOB_REDIS_EXPORTER = "redis-exporter"
JOB_ALERTMANAGER = "alertmanager"
JOB_PROMETHEUS = "prometheus"

#: Container ports of the compose services (docker-compose.yml).
COMPOSE_ADDRESSES = {
    JOB_PUSHGATEWAY: "pushgateway:9091",
    JOB_REDIS_EXPORTER: "redis-exporter:9121",
    JOB_ALERTMANAGER: "alertmanager:9093",
    JOB_PROMETHEUS: "localhost:9090",
}
COMPOSE_WORKER = "worker:9108"
COMPOSE_SIMS = {"primary": "ctp-sim-primary:18001", "backup": "ctp-sim-backup:18002"}


@dataclass(frozen=True)
class Intervals:
    """Scrape and evaluation intervals (tests shorten them)."""

    scrape: str = "15s"
    evaluation: str = "15s"
    worker_scrape: str = "5s"


@dataclass
class Job:
    name: str
    targets: list[str]
    honor_labels: bool = False  # keep the labels of scraped series (Pushgateway: job, instance, env)


def host_port(url: str) -> str:
    """``host:port`` of a base URL or a tcp:// front address."""
    host, port = listen_of(url)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def redis_sink(settings: Settings) -> bool:
    return settings.feed.sink_url.startswith("redis://")


def jobs(settings: Settings, runtime: str) -> list[Job]:
    """The scrape jobs of ``runtime`` for these settings."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, not {runtime!r}")
    feed = settings.feed
    sims = local_sim_profiles(settings) if runtime == "native" else (list(PROFILE_NAMES) if feed.channel == "sim" else [])
    if runtime == "native":
        workers = [host_port(url) for url in feed.worker_url_list]
        from ..sim.cli import CONTROL_PORT_OFFSET  # ctp-sim serves /metrics on its control port

        sim_targets = []
        for name in sims:
            host, _, port = host_port(settings.profile(name).md_fronts[0]).rpartition(":")
            sim_targets.append(f"{host}:{int(port) + CONTROL_PORT_OFFSET}")
        address = {JOB_PUSHGATEWAY: host_port(feed.pushgateway_url), JOB_REDIS_EXPORTER: host_port(feed.redis_exporter_url),
                   JOB_ALERTMANAGER: host_port(feed.alertmanager_url), JOB_PROMETHEUS: host_port(feed.prometheus_url)}
        with_exporter = redis_sink(settings)
    else:
        workers = [COMPOSE_WORKER]
        sim_targets = [COMPOSE_SIMS[name] for name in sims]
        address = COMPOSE_ADDRESSES
        with_exporter = True  # compose always runs Redis
    result = [Job(JOB_WORKER, workers)]
    if sim_targets:
        result.append(Job(JOB_SIM, sim_targets))
    if feed.pushgateway_enabled:
        result.append(Job(JOB_PUSHGATEWAY, [address[JOB_PUSHGATEWAY]], honor_labels=True))
    if with_exporter:
        result.append(Job(JOB_REDIS_EXPORTER, [address[JOB_REDIS_EXPORTER]]))
    if feed.alertmanager_enabled:
        result.append(Job(JOB_ALERTMANAGER, [address[JOB_ALERTMANAGER]]))
    result.append(Job(JOB_PROMETHEUS, [address[JOB_PROMETHEUS]]))
    return result


def config(settings: Settings, runtime: str, *, rules_glob: str | None = None,
           intervals: Intervals = Intervals()) -> dict:
    """The configuration as a data structure (see :func:`render`)."""
    env = settings.feed.env
    if rules_glob is None:
        rules_glob = str(RULES_DIR / "*.yml") if runtime == "native" else COMPOSE_RULES_GLOB
    doc: dict = {
        "global": {"scrape_interval": intervals.scrape, "evaluation_interval": intervals.evaluation,
                   "external_labels": {"service": "feedops", "env": env}},
        "rule_files": [rules_glob],
    }
    if settings.feed.alertmanager_enabled:
        am = COMPOSE_ADDRESSES[JOB_ALERTMANAGER] if runtime == "compose" else host_port(settings.feed.alertmanager_url)
        doc["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [am]}]}]}
    scrape = []
    for job in jobs(settings, runtime):
        entry: dict = {"job_name": job.name}
        if job.name == JOB_WORKER:
            entry["scrape_interval"] = intervals.worker_scrape
        if job.honor_labels:
            entry["honor_labels"] = True
        entry["static_configs"] = [{"targets": job.targets, "labels": {"env": env}}]
        scrape.append(entry)
    doc["scrape_configs"] = scrape
    return doc


def render(settings: Settings, runtime: str, *, rules_glob: str | None = None, intervals: Intervals = Intervals()) -> str:
    """prometheus.yml for ``runtime`` (YAML text, with a header naming its source)."""
    header = ("# Generated by lib/feedops/monitoring/prometheus_config.py from the settings of "
              f"envs/{settings.feed.env}.env ({runtime} runtime).\n"
              "# Do not edit: `python -m feedops.monitoring.prometheus_config --write` regenerates it.\n")
    body = yaml.safe_dump(config(settings, runtime, rules_glob=rules_glob, intervals=intervals),
                          sort_keys=False, default_flow_style=False, width=120)
    return header + body


def compose_settings(env: str) -> Settings:
    """An environment's settings from its env file alone (no process environment, no secrets)."""
    # the env files of staging/prod name /run/secrets; rendering needs no secret, so point
    # the secrets directory at one that holds none (envs/) instead of requiring it here
    return load_settings(env, environ={"FEEDOPS_SECRETS_DIR": str(paths.ENVS_DIR)})


def compose_path(env: str) -> Path:
    return COMPOSE_DIR / f"{env}.yml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feedops.monitoring.prometheus_config", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="regenerate monitoring/prometheus/compose/<env>.yml")
    parser.add_argument("--env", choices=ENV_NAMES, help="print one environment's rendering")
    parser.add_argument("--runtime", choices=RUNTIMES, default="compose")
    args = parser.parse_args(argv)
    if args.write:
        COMPOSE_DIR.mkdir(parents=True, exist_ok=True)
        for env in ENV_NAMES:
            compose_path(env).write_text(render(compose_settings(env), "compose"), encoding="utf-8")
            print(f"wrote {compose_path(env).relative_to(paths.ROOT)}")
        return 0
    settings = compose_settings(args.env) if args.runtime == "compose" else load_settings(args.env)
    sys.stdout.write(render(settings, args.runtime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
