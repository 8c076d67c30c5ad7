"""The settings model: the single source of every feedops setting.

A little over 400 lines on purpose: the fields of the two models are the declarations of every
setting, kept together; reading and merging live in settings_sources, the messages in
settings_errors, the .env.example renderer in envexample.

Two kinds of variables:

* ``FEEDOPS_*``: everything about the service (:class:`FeedSettings`);
* ``CTP_PRIMARY_*`` and ``CTP_BACKUP_*``: the two CTP credential profiles
  (:class:`CtpProfile`, loaded twice with different prefixes).

Precedence, highest first (documented in ``.env.example`` and docs/ops):

1. command-line overrides (e.g. ``--batch-size``) passed by a CLI;
2. the process environment;
3. secret files: one file per variable, named exactly like the variable
   (``CTP_PRIMARY_PASSWORD``), in the directories of ``FEEDOPS_SECRETS_DIR``
   (colon-separated; a later directory wins; default ``/run/secrets`` when it exists;
   a Vault Agent rendered directory works the same way);
4. the environment file ``envs/<env>.env`` (non-secret values only);
5. the defaults below (the embedded dev profile).

:func:`load_settings` never raises anything but :class:`ConfigError`, whose
problems each name the variable, what is wrong and the fix, and never contain a
secret value. It reads the layers (:mod:`feedops.settings_sources`), merges them and
builds the models here; problems are :mod:`feedops.settings_errors`, address checks
:mod:`feedops.addresses`, the ``.env.example`` renderer :mod:`feedops.envexample`.

This module stays whole at about 400 lines: most of it is the declarative table of every
variable (:class:`FeedSettings` alone is some 170 lines of fields), which is one job.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import paths
from .addresses import check_front_url, check_sink_url
from .log import register_secret
from .settings_errors import ConfigError, Problem, explain
from .settings_sources import merge, read_layers

ENV_NAMES = ("dev", "staging", "prod")
PROFILE_NAMES = ("primary", "backup")
CHANNELS = ("ctp", "sim")
#: CTP's own limits (docs/ops/ctp-reference.md): SFIT advises batches of at most 1000.
CTP_MAX_SUBSCRIBE_BATCH = 1000
#: Longest value each credential field takes: the C structs are char[N+1] (BrokerID char[11],
#: AuthCode char[17], ...); a longer value makes the binding raise TypeError at login (observed).
CTP_FIELD_SIZES = {"broker_id": 10, "user_id": 15, "password": 40, "app_id": 32, "auth_code": 16, "user_product_info": 10}


# --------------------------------------------------------------------------- models
def _split_fronts(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class _LayeredSettings(BaseSettings):
    """Base: values come only from the keyword arguments :func:`load_settings` passes (field name -> value),
    never from the process environment or a dotenv file on their own."""

    model_config = SettingsConfigDict(extra="ignore", validate_default=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return (init_settings,)

    @classmethod
    def env_var(cls, field_name: str) -> str:
        return f"{cls.model_config.get('env_prefix', '')}{field_name}".upper()

    @classmethod
    def env_vars(cls) -> dict[str, str]:
        return {cls.env_var(name): name for name in cls.model_fields}

    @classmethod
    def secret_env_vars(cls) -> set[str]:
        return {cls.env_var(n) for n, f in cls.model_fields.items() if _is_secret(f)}


def _is_secret(info: FieldInfo) -> bool:
    return "SecretStr" in repr(info.annotation)


class CtpProfile(_LayeredSettings):
    """One CTP account and its fronts. Loaded as CTP_PRIMARY_* and CTP_BACKUP_*."""

    md_fronts: list[str] = Field(default_factory=list, description="market-data fronts, comma-separated tcp://host:port")
    td_fronts: list[str] = Field(default_factory=list, description="trader fronts (instrument query), comma-separated tcp://host:port")
    broker_id: str | None = Field(default=None, max_length=CTP_FIELD_SIZES["broker_id"],
                                  description="broker id (BrokerID) given by the futures company, at most 10 characters")
    user_id: str | None = Field(default=None, max_length=CTP_FIELD_SIZES["user_id"],
                                description="investor/user id (UserID), at most 15 characters")
    password: SecretStr | None = Field(default=None, max_length=CTP_FIELD_SIZES["password"],
                                       description="login password, at most 40 characters (secret: environment or secrets dir only)")
    app_id: str | None = Field(default=None, max_length=CTP_FIELD_SIZES["app_id"],
                               description="AppID registered for terminal authentication, at most 32 characters")
    auth_code: SecretStr | None = Field(default=None, max_length=CTP_FIELD_SIZES["auth_code"],
                                        description="AuthCode for ReqAuthenticate, at most 16 characters (secret: environment or secrets dir only)")
    user_product_info: str | None = Field(default=None, max_length=CTP_FIELD_SIZES["user_product_info"],
                                          description="UserProductInfo sent at login (optional), at most 10 characters")

    REQUIRED: ClassVar[tuple[str, ...]] = ("md_fronts", "td_fronts", "broker_id", "user_id", "password", "app_id", "auth_code")

    @field_validator("md_fronts", "td_fronts", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _split_fronts(value)

    @field_validator("md_fronts", "td_fronts")
    @classmethod
    def _fronts_well_formed(cls, value: list[str]) -> list[str]:
        for url in value:
            reason = check_front_url(url)
            if reason:
                raise ValueError(reason)
        return value

    @field_validator("broker_id", "user_id", "app_id", "user_product_info", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("password", "auth_code", mode="before")
    @classmethod
    def _empty_secret_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value == "" else value

    def missing(self) -> list[str]:
        """Env var names of required fields that are unset."""
        return [self.env_var(n) for n in self.REQUIRED if getattr(self, n) in (None, [], "")]

    def is_complete(self) -> bool:
        return not self.missing()

    def secret_value(self, name: Literal["password", "auth_code"]) -> str:
        secret = getattr(self, name)
        return secret.get_secret_value() if secret is not None else ""


class PrimaryProfile(CtpProfile):
    model_config = SettingsConfigDict(env_prefix="CTP_PRIMARY_")


class BackupProfile(CtpProfile):
    model_config = SettingsConfigDict(env_prefix="CTP_BACKUP_")


class FeedSettings(_LayeredSettings):
    """Everything that is not a credential. Variables are FEEDOPS_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="FEEDOPS_")

    # --- identity
    env: Literal["dev", "staging", "prod"] = Field("dev", description="environment name: dev, staging or prod")
    active_profile: Literal["primary", "backup"] = Field("primary", description="credential profile the worker uses: primary or backup")
    channel: Literal["ctp", "sim"] = Field("sim", description="ctp = real openctp-ctp API, sim = ctp-sim simulator")
    runtime: Literal["auto", "native", "compose"] = Field("auto", description="runbook runtime: native processes, docker compose, or auto-detect")
    calendar: Literal["exchange", "always-open"] = Field("exchange", description="trading calendar: exchange sessions and holidays, or always-open (dev/tests)")
    holidays_file: str | None = Field(None, description="holiday list file (YYYY-MM-DD per line); empty = the list shipped in lib/feedops/data")

    # --- CTP rate limits (docs/ops/ctp-reference.md)
    subscribe_batch_size: int = Field(1000, ge=1, le=CTP_MAX_SUBSCRIBE_BATCH, description="instruments per SubscribeMarketData call (CTP limit 1000)")
    subscribe_batch_interval_seconds: float = Field(1.0, ge=0, le=60, description="pause between subscribe batches, seconds")
    query_rate_per_second: float = Field(1.0, gt=0, le=20, description="trader queries per second (fronts typically allow 1-2)")
    max_retries: int = Field(5, ge=0, le=100, description="retries for refused queries and unacknowledged subscriptions")
    retry_backoff_seconds: float = Field(1.0, gt=0, le=300, description="first retry delay, doubled per retry")
    retry_backoff_max_seconds: float = Field(30.0, gt=0, le=3600, description="upper bound of the retry delay")

    # --- worker
    worker_listen: str = Field("127.0.0.1:9108", description="host:port of the worker's /metrics /livez /readyz /status")
    worker_urls: str = Field("http://127.0.0.1:9108", description="worker base URLs the health check reads, comma-separated (one per shard)")
    shard: str = Field("0/1", description="this worker's shard as i/N (0 <= i < N)")
    sink_url: str = Field("file:var/feed", description="tick sink: file:<dir> (JSON lines per trading day) or redis://host:port/db")
    redis_stream_prefix: str = Field("feedops:md", description="Redis stream name prefix; one stream per exchange: <prefix>:<EXCHANGE>")
    redis_stream_maxlen: int = Field(1_000_000, ge=1000, description="approximate MAXLEN per Redis stream")
    sink_buffer_max: int = Field(200_000, ge=1000, description="ticks buffered while the sink is down; beyond that they are dropped and counted")
    queue_max: int = Field(50_000, ge=1000, description="bound of the callback-to-pipeline queue; overflow is dropped and counted")
    connect_timeout_seconds: float = Field(15.0, gt=0, le=600, description="watchdog: no front connected this long after Init")
    no_tick_timeout_seconds: float = Field(30.0, gt=0, le=3600, description="watchdog: no tick this long while a session is open")
    disconnect_storm_count: int = Field(5, ge=2, le=1000, description="disconnects within the storm window that count as a storm")
    disconnect_storm_window_seconds: float = Field(60.0, gt=0, le=3600, description="window for the disconnect-storm watchdog, seconds")
    flow_dir: str = Field("var/flow", description="CTP flow directory (created before the API; relative paths are under the repo root)")
    cache_dir: str = Field("var/cache", description="instrument-list cache per trading day")
    state_dir: str = Field("var/state", description="runbook state: locks, pid files, ledger, last-known-good snapshots")
    restart_backoff_max_seconds: float = Field(30.0, gt=0, le=3600, description="native supervisor: longest wait before restarting a failed "
                                               "component (1 s, doubling per failure)")
    auto_failover: bool = Field(False, description="native supervisor: fail over to the other profile after repeated login (13) or storm (15) "
                                "exits of a worker (on in envs/prod.env)")
    failover_after_failures: int = Field(3, ge=1, le=100, description="native supervisor: consecutive login/storm exits on the active profile "
                                         "before an automatic failover")

    # --- health thresholds
    coverage_warn_ratio: float = Field(0.98, ge=0, le=1, description="coverage below this is WARNING")
    coverage_crit_ratio: float = Field(0.90, ge=0, le=1, description="coverage below this is CRITICAL")
    staleness_window_seconds: float = Field(60.0, gt=0, description="an open instrument counts as covered if it ticked within this window")
    staleness_warn_seconds: float = Field(30.0, gt=0, description="feed staleness (age of the newest tick) above this is WARNING")
    staleness_crit_seconds: float = Field(120.0, gt=0, description="feed staleness above this is CRITICAL")
    latency_p99_warn_seconds: float = Field(0.5, gt=0, description="p99 exchange-to-publish latency above this is WARNING")
    latency_p99_crit_seconds: float = Field(2.0, gt=0, description="p99 latency above this is CRITICAL")
    throughput_warn_ratio: float = Field(0.2, ge=0, le=1, description="ticks/s below this share of the expected rate is WARNING")
    consumer_lag_warn: int = Field(10_000, ge=0, description="Redis consumer-group lag (entries) above this is WARNING")
    consumer_lag_crit: int = Field(100_000, ge=0, description="Redis consumer-group lag above this is CRITICAL")
    rate_limit_incidents_warn: int = Field(1, ge=0, description="flow-control refusals in the window at or above this are WARNING")
    premarket_max_age_seconds: float = Field(13 * 3600, gt=0, description="last successful pre-market run older than this is WARNING")

    # --- monitoring
    prometheus_enabled: bool = Field(False, description="Prometheus is part of this environment")
    prometheus_url: str = Field("http://127.0.0.1:9090", description="Prometheus base URL")
    pushgateway_enabled: bool = Field(False, description="push checker and runbook outcomes to Pushgateway")
    pushgateway_url: str = Field("http://127.0.0.1:9091", description="Pushgateway base URL")
    alertmanager_enabled: bool = Field(False, description="Alertmanager is part of this environment")
    alertmanager_url: str = Field("http://127.0.0.1:9093", description="Alertmanager base URL")
    grafana_enabled: bool = Field(False, description="Grafana is part of this environment")
    grafana_url: str = Field("http://127.0.0.1:3000", description="Grafana base URL")
    # Alertmanager receivers (python -m feedops.monitoring.alertmanager render); empty = not configured
    alertmanager_webhook_url: str = Field("http://127.0.0.1:9095/alerts",
                                          description="ops-channel webhook Alertmanager posts alerts to (empty = none)")
    alertmanager_heartbeat_url: str = Field("http://127.0.0.1:9095/heartbeat",
                                            description="heartbeat webhook that receives the always-firing Watchdog alert")
    alertmanager_slack_api_url_file: str | None = Field(None, description="file holding the Slack incoming-webhook URL, read by Alertmanager "
                                                                          "(empty = no Slack)")
    alertmanager_slack_channel: str = Field("#feedops-ops", description="Slack channel of the ops receiver")
    alertmanager_wecom_corp_id: str | None = Field(None, description="WeCom (WeChat Work) corp id of the ops receiver (empty = no WeCom)")
    alertmanager_wecom_agent_id: str | None = Field(None, description="WeCom application agent id")
    alertmanager_wecom_to_party: str | None = Field(None, description="WeCom department id(s) the alerts go to")
    alertmanager_wecom_api_secret: SecretStr | None = Field(None, description="WeCom application secret (secret: environment or secrets dir only)")
    alertmanager_email_to: str | None = Field(None, description="ops e-mail address (empty = no e-mail)")
    alertmanager_email_from: str = Field("feedops-alertmanager@localhost", description="sender address of alert e-mails")
    alertmanager_email_smarthost: str = Field("127.0.0.1:25", description="SMTP host:port for alert e-mails")
    alertmanager_email_auth_username: str | None = Field(None, description="SMTP user (empty = no authentication)")
    alertmanager_email_auth_password_file: str | None = Field(None, description="file holding the SMTP password, read by Alertmanager")
    runbook_base_url: str = Field("", description="prefix of runbook links in notifications, e.g. a repository browser URL ending in / "
                                                  "(empty = repository-relative docs/ops/alerts/<AlertName>.md)")
    redis_exporter_url: str = Field("http://127.0.0.1:9121", description="prometheus-redis-exporter base URL (Redis stream and "
                                    "consumer-group metrics; the native runtime starts it when Prometheus is enabled and the sink is Redis)")
    monitoring_dir: str = Field("var/monitoring", description="native runtime: rendered Prometheus/Alertmanager configs and their data")

    # --- delivery
    image: str = Field("ghcr.io/feedops/feedops", description="container image repository on GHCR")
    image_tag: str = Field("latest", description="image the compose runtime deploys: TAG@sha256:<digest> or sha256:<digest> "
                           "(pinned; staging and prod require it) or TAG (floating, dev only); docs/ops/releases.md")

    # --- simulator (channel=sim)
    sim_instruments: int = Field(2000, ge=1, le=30_000, description="ctp-sim universe size")
    sim_seed: int = Field(20261127, description="ctp-sim universe seed")

    # --- logging and secrets
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field("info", description="log level")
    log_format: Literal["json", "text"] = Field("json", description="log format: json lines or text for people")
    secrets_dir: str | None = Field(None, description="secret files directories, colon-separated, later wins (default /run/secrets when it exists)")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("worker_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not host:port with a port in 1-65535")
        return value

    @field_validator("image_tag")
    @classmethod
    def _image_tag(cls, value: str) -> str:
        from .release import parse_image_tag

        parse_image_tag(value)  # ValueError names the accepted forms
        return value.strip()

    @field_validator("shard")
    @classmethod
    def _shard(cls, value: str) -> str:
        parse_shard(value)
        return value

    @field_validator("sink_url")
    @classmethod
    def _sink(cls, value: str) -> str:
        reason = check_sink_url(value)
        if reason:
            raise ValueError(reason)
        return value

    @model_validator(mode="after")
    def _ordering(self) -> "FeedSettings":
        problems = []
        if self.coverage_crit_ratio > self.coverage_warn_ratio:
            problems.append("FEEDOPS_COVERAGE_CRIT_RATIO must not exceed FEEDOPS_COVERAGE_WARN_RATIO")
        if self.staleness_warn_seconds > self.staleness_crit_seconds:
            problems.append("FEEDOPS_STALENESS_WARN_SECONDS must not exceed FEEDOPS_STALENESS_CRIT_SECONDS")
        if self.latency_p99_warn_seconds > self.latency_p99_crit_seconds:
            problems.append("FEEDOPS_LATENCY_P99_WARN_SECONDS must not exceed FEEDOPS_LATENCY_P99_CRIT_SECONDS")
        if self.consumer_lag_warn > self.consumer_lag_crit:
            problems.append("FEEDOPS_CONSUMER_LAG_WARN must not exceed FEEDOPS_CONSUMER_LAG_CRIT")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # conveniences
    def path(self, name: str) -> Path:
        return paths.resolve(getattr(self, name))

    @property
    def worker_url_list(self) -> list[str]:
        return [u.strip().rstrip("/") for u in self.worker_urls.split(",") if u.strip()]


def parse_shard(value: str) -> tuple[int, int]:
    """Parse ``i/N``; raise ValueError with the fix when it is not 0 <= i < N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value or "")
    if not m:
        raise ValueError(f"{value!r} is not of the form i/N, e.g. 0/1 or 1/4")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"{value!r}: the shard index must satisfy 0 <= i < N (e.g. 2/3 is the last of three)")
    return index, count


# --------------------------------------------------------------------------- loading
@dataclass
class Settings:
    """The loaded configuration: service settings plus both credential profiles."""

    feed: FeedSettings
    primary: PrimaryProfile
    backup: BackupProfile
    env_file: Path | None
    sources: dict[str, str] = field(default_factory=dict)  # variable -> where its value came from
    secrets_dirs: list[Path] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def profile(self, name: str | None = None) -> CtpProfile:
        name = name or self.feed.active_profile
        return self.primary if name == "primary" else self.backup

    @property
    def active(self) -> CtpProfile:
        return self.profile()


MODELS: tuple[type[_LayeredSettings], ...] = (FeedSettings, PrimaryProfile, BackupProfile)


def all_env_vars() -> dict[str, tuple[type[_LayeredSettings], str]]:
    """Every variable the model knows: name -> (model class, field name)."""
    result: dict[str, tuple[type[_LayeredSettings], str]] = {}
    for model in MODELS:
        for var, name in model.env_vars().items():
            result[var] = (model, name)
    return result


def secret_env_vars() -> set[str]:
    return set().union(*(m.secret_env_vars() for m in MODELS))


def shadowed_secrets(secrets_dir: str, environ: Mapping[str, str]) -> list[str]:
    """Secret variables with a file in ``secrets_dir`` (colon-separated) that ``environ`` also sets: the
    environment takes precedence over secret files, so those files would not be used (a rotation to
    that directory would keep the old values). Names only, never values."""
    dirs = [paths.resolve(part) for part in secrets_dir.split(":") if part]
    return sorted(var for var in secret_env_vars() if environ.get(var) and any((d / var).is_file() for d in dirs))


def _build(merged: Mapping[str, str], sources: Mapping[str, str], known: Mapping[str, tuple[type[_LayeredSettings], str]],
           secrets: set[str], problems: list[Problem]) -> dict[type, Any]:
    """The build step: each model from its share of the merged values; a rejected value becomes a problem."""
    built: dict[type, Any] = {}
    for model in MODELS:
        values = {name: merged[var] for var, (owner, name) in known.items() if owner is model and var in merged}
        try:
            built[model] = model(**values)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = err.get("loc") or ()
                if loc:
                    var = model.env_var(str(loc[0]))
                    message, fix = explain(err, var, var in secrets)
                    problems.append(Problem(var, message, fix, sources.get(var)))
                else:  # model-level validator
                    message = str(err.get("msg", "")).removeprefix("Value error, ")
                    for part in message.split("; "):
                        var = part.split(" ", 1)[0]
                        problems.append(Problem(var, part, "adjust the thresholds so that warning comes before critical", sources.get(var)))
    return built


def load_settings(
    env: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    root: Path | None = None,
    env_file: Path | None = None,
) -> Settings:
    """Assemble and validate the configuration: read the layers, merge them, build the models.

    ``env`` selects ``envs/<env>.env`` (default: FEEDOPS_ENV from ``environ``, else dev);
    ``overrides`` maps variable names to command-line values (highest precedence).
    Raises :class:`ConfigError` listing every problem found.
    """
    known = all_env_vars()
    secrets = secret_env_vars()
    layers = read_layers(env, dict(os.environ if environ is None else environ), dict(overrides or {}), root, env_file,
                         known, secrets, ENV_NAMES)
    merged, sources = merge(layers, known)
    for var in secrets:
        if merged.get(var):
            register_secret(merged[var])
    problems = layers.problems
    built = _build(merged, sources, known, secrets, problems)
    if problems:
        raise ConfigError(problems)
    path = layers.env_file
    return Settings(feed=built[FeedSettings], primary=built[PrimaryProfile], backup=built[BackupProfile],
                    env_file=path if path.exists() else None, sources=sources, secrets_dirs=layers.secrets_dirs,
                    warnings=layers.warnings)
