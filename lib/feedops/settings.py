"""The settings model: the single source of every feedops setting.

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
secret value.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from . import clock, paths
from .envfile import EnvFileError, parse_env_file
from .log import register_secret

ENV_NAMES = ("dev", "staging", "prod")
PROFILE_NAMES = ("primary", "backup")
CHANNELS = ("ctp", "sim")
FRONT_RE = re.compile(r"^(?P<scheme>tcp|ssl)://(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>[0-9]+)$")
DEFAULT_SECRETS_DIR = "/run/secrets"
#: FEEDOPS_* variables of the tooling that are not settings (no "unknown variable" warning for them).
TOOLING_ENV_VARS = frozenset({
    "FEEDOPS_HOME",  # repository/image root (feedops.paths)
    "FEEDOPS_LOG_COMPONENT",  # component name of scripts/operations/lib/log.sh
    "FEEDOPS_RELEASE_ENV_FILE",  # the runbook's release env file handed to docker compose
    "FEEDOPS_PYTHON",  # interpreter the bats tests use
    clock.ENV_VAR,  # the clock seam (feedops.clock): tests, drills and rehearsals move the date with it
})
#: CTP's own limits (see shared CTP_FACTS.md): SFIT advises batches of at most 1000.
CTP_MAX_SUBSCRIBE_BATCH = 1000
CTP_MAX_QUERIES_IN_FLIGHT = 1
#: Longest value each credential field takes: the C structs are char[N+1] (BrokerID char[11],
#: AuthCode char[17], ...); a longer value makes the binding raise TypeError at login (observed).
CTP_FIELD_SIZES = {"broker_id": 10, "user_id": 15, "password": 40, "app_id": 32, "auth_code": 16, "user_product_info": 10}


# --------------------------------------------------------------------------- errors
@dataclass
class Problem:
    """One thing wrong with the configuration."""

    setting: str  # the variable (or option) at fault, e.g. FEEDOPS_SUBSCRIBE_BATCH_SIZE
    message: str  # what is wrong, never containing a secret value
    fix: str  # what to do about it
    source: str | None = None  # where the value came from (env file line, secret file, environment)

    def __str__(self) -> str:
        where = f" (from {self.source})" if self.source else ""
        return f"{self.setting}{where}: {self.message}; fix: {self.fix}"


class ConfigError(Exception):
    """The configuration cannot be loaded; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


# --------------------------------------------------------------------------- models
def _split_fronts(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def check_host(host: str) -> str | None:
    """None when ``host`` is an IP literal (IPv4, or IPv6 in brackets) or an RFC 1123 hostname, else the reason.

    A name of digits and dots only must be a valid IPv4 address (``256.256.256.256`` and ``999`` are
    neither), and a hostname's last label is not all digits."""
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
            return None
        except ValueError:
            return f"{host!r} is not an IPv6 address"
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
            return None
        except ValueError:
            return f"{host!r} is neither an IPv4 address (four numbers 0-255) nor a hostname"
    labels = host.split(".")
    if len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        return (f"{host!r} is not a valid hostname (RFC 1123: labels of 1-63 letters, digits and hyphens, "
                "no leading or trailing hyphen, the last not all digits)")
    return None


def check_port(text: str) -> str | None:
    """None when ``text`` is a TCP port 1-65535, else the reason."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        return f"port {text or '(none)'} is out of range 1-65535"
    return None


def check_front_url(url: str) -> str | None:
    """Return None when ``url`` is a well-formed front address, else the reason."""
    m = FRONT_RE.match(url)
    if not m:
        return f"{url!r} is not of the form tcp://host:port"
    reason = check_host(m.group("host")) or check_port(m.group("port"))
    return f"{reason} in {url!r}" if reason else None


SINK_FORMS = "file:<dir> (e.g. file:var/feed) or redis://host:port/db (db a whole number, e.g. redis://127.0.0.1:6379/0)"


def check_sink_url(url: str) -> str | None:
    """None when ``url`` is a usable FEEDOPS_SINK_URL, else the reason: THE check of sink URLs, used by the
    settings model (validate_env, every CLI) and by the worker when it opens the sink."""
    if url.startswith("file:"):
        if not url[len("file:"):].replace("//", "", 1):
            return "the file: sink needs a directory, e.g. file:var/feed"
        return None
    if not url.startswith("redis://"):
        return f"{public_target(url)!r} is neither file:<dir> nor redis://host:port/db"
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return f"the port of {public_target(url)!r} is out of range 1-65535"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if not parts.hostname:
        return f"{public_target(url)!r} names no host"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    reason = check_host(host) or (check_port("" if port is None else str(port)) if port is not None or netloc.endswith(":") else None)
    if reason:
        return f"{reason} in {public_target(url)!r}"
    db = parts.path[1:] if parts.path.startswith("/") else parts.path
    if db and not db.isdigit():
        return f"the database {db!r} of {public_target(url)!r} is not a whole number (redis://host:port/0)"
    if parts.query or parts.fragment:
        return f"{public_target(url)!r} has a query or fragment; use redis://host:port/db"
    return None


def public_target(url: str) -> str:
    """A sink URL without user info (a Redis password must never be shown or logged)."""
    parsed = urlsplit(url)
    if parsed.scheme == "redis" and (parsed.username or parsed.password):
        host = parsed.hostname or ""
        try:
            netloc = f"{host}:{parsed.port}" if parsed.port else host
        except ValueError:
            netloc = host
        return parsed._replace(netloc=netloc).geturl()
    return url


class _LayeredSettings(BaseSettings):
    """Base: values come only from the mapping :func:`load_settings` assembled."""

    model_config = SettingsConfigDict(extra="ignore", validate_default=True)
    _layer: ClassVar[dict[str, str]] = {}

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return (init_settings, _MappingSource(settings_cls))

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


class _MappingSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        key = self.settings_cls.env_var(field_name)  # type: ignore[attr-defined]
        return self.settings_cls._layer.get(key), field_name, False  # type: ignore[attr-defined]

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(info, name)
            if value is not None:
                data[key] = value
        return data


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
    _layer: ClassVar[dict[str, str]] = {}


class BackupProfile(CtpProfile):
    model_config = SettingsConfigDict(env_prefix="CTP_BACKUP_")
    _layer: ClassVar[dict[str, str]] = {}


class FeedSettings(_LayeredSettings):
    """Everything that is not a credential. Variables are FEEDOPS_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="FEEDOPS_")
    _layer: ClassVar[dict[str, str]] = {}

    # --- identity
    env: Literal["dev", "staging", "prod"] = Field("dev", description="environment name: dev, staging or prod")
    active_profile: Literal["primary", "backup"] = Field("primary", description="credential profile the worker uses: primary or backup")
    channel: Literal["ctp", "sim"] = Field("sim", description="ctp = real openctp-ctp API, sim = ctp-sim simulator")
    runtime: Literal["auto", "native", "compose"] = Field("auto", description="runbook runtime: native processes, docker compose, or auto-detect")
    calendar: Literal["exchange", "always-open"] = Field("exchange", description="trading calendar: exchange sessions and holidays, or always-open (dev/tests)")
    holidays_file: str | None = Field(None, description="holiday list file (YYYY-MM-DD per line); empty = the list shipped in lib/feedops/data")

    # --- CTP rate limits (see CTP_FACTS.md)
    subscribe_batch_size: int = Field(1000, ge=1, le=CTP_MAX_SUBSCRIBE_BATCH, description="instruments per SubscribeMarketData call (CTP limit 1000)")
    subscribe_batch_interval_seconds: float = Field(1.0, ge=0, le=60, description="pause between subscribe batches, seconds")
    query_rate_per_second: float = Field(1.0, gt=0, le=20, description="trader queries per second (fronts typically allow 1-2)")
    query_max_in_flight: int = Field(1, ge=1, le=100, description="trader queries in flight; CTP allows exactly 1")
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
    restart_backoff_max_seconds: float = Field(30.0, gt=0, le=3600, description="native supervisor: longest wait before restarting a failed component (1 s, doubling per failure)")
    auto_failover: bool = Field(False, description="native supervisor: fail over to the other profile after repeated login (13) or storm (15) exits of a worker (on in envs/prod.env)")
    failover_after_failures: int = Field(3, ge=1, le=100, description="native supervisor: consecutive login/storm exits on the active profile before an automatic failover")

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
    alertmanager_slack_api_url_file: str | None = Field(None, description="file holding the Slack incoming-webhook URL, read by Alertmanager (empty = no Slack)")
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
    runbook_base_url: str = Field("", description="prefix of runbook links in notifications, e.g. a repository browser URL ending in / (empty = repository-relative docs/ops/alerts/<AlertName>.md)")
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


def env_file_for(env: str, root: Path | None = None) -> Path:
    return (root or paths.ROOT) / "envs" / f"{env}.env"


def _read_secret_file(path: Path, var: str) -> tuple[str | None, Problem | None]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, Problem(var, f"secret file {path} is unreadable ({exc.strerror})", "fix its permissions (readable by the feedops user)", str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, Problem(var, f"secret file {path} is not UTF-8", "rewrite it as UTF-8 text", str(path))
    if text.endswith("\n") and not text.endswith("\r\n"):
        text = text[:-1]  # one final newline is the text-file convention
    if text != text.strip():
        return None, Problem(var, f"secret file {path} has leading or trailing whitespace",
                             f"rewrite it without it, e.g. printf '%s' \"$VALUE\" > {path}", str(path))
    return text, None


def shadowed_secrets(secrets_dir: str, environ: Mapping[str, str]) -> list[str]:
    """Secret variables with a file in ``secrets_dir`` (colon-separated) that ``environ`` also sets: the
    environment takes precedence over secret files, so those files would not be used (a rotation to
    that directory would keep the old values). Names only, never values."""
    dirs = [paths.resolve(part) for part in secrets_dir.split(":") if part]
    return sorted(var for var in secret_env_vars() if environ.get(var) and any((d / var).is_file() for d in dirs))


def _secrets_dirs(spec: str | None, problems: list[Problem], source: str) -> list[Path]:
    if spec is None or spec == "":
        default = Path(DEFAULT_SECRETS_DIR)
        return [default] if default.is_dir() and os.access(default, os.R_OK | os.X_OK) else []
    dirs = []
    for part in spec.split(":"):
        if not part:
            continue
        d = paths.resolve(part)
        if not d.exists():
            problems.append(Problem("FEEDOPS_SECRETS_DIR", f"secrets directory {d} does not exist",
                                    "create it (mode 0700) with one file per secret, or unset FEEDOPS_SECRETS_DIR", source))
        elif not d.is_dir():
            problems.append(Problem("FEEDOPS_SECRETS_DIR", f"{d} is not a directory", "point FEEDOPS_SECRETS_DIR at a directory", source))
        elif not os.access(d, os.R_OK | os.X_OK):
            problems.append(Problem("FEEDOPS_SECRETS_DIR", f"secrets directory {d} is not readable",
                                    "fix its permissions (readable by the feedops user)", source))
        else:
            dirs.append(d)
    return dirs


def _explain(error: dict[str, Any], var: str, secret: bool) -> tuple[str, str]:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    shown = "" if secret else f" (got {error.get('input')!r})"
    if kind in ("int_parsing", "int_from_float"):
        return f"must be a whole number{shown}", f"set {var} to an integer"
    if kind == "float_parsing":
        return f"must be a number{shown}", f"set {var} to a number such as 1.5"
    if kind == "bool_parsing":
        return f"must be true or false{shown}", f"set {var} to true or false"
    if kind in ("less_than_equal", "less_than"):
        limit = ctx.get("le", ctx.get("lt"))
        hint = " (CTP's limit)" if var.endswith("SUBSCRIBE_BATCH_SIZE") or var.endswith("QUERY_MAX_IN_FLIGHT") else ""
        return f"must be at most {limit}{hint}{shown}", f"set {var} to {limit} or less"
    if kind in ("greater_than_equal", "greater_than"):
        limit = ctx.get("ge", ctx.get("gt"))
        word = "at least" if "ge" in ctx else "greater than"
        return f"must be {word} {limit}{shown}", f"set {var} to a larger value"
    if kind in ("string_too_long", "too_long"):
        limit = ctx.get("max_length")
        actual = "" if secret else f" (got {len(str(error.get('input', '')))})"
        return f"must be at most {limit} characters, CTP's field size{actual}", f"shorten {var} to {limit} characters or fewer"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}{shown}", f"set {var} to one of {ctx.get('expected')}"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    for suffix, fix in _VALUE_FIXES.items():
        if var.endswith(suffix):
            return message, fix.format(var=var)
    return message, f"correct {var} (see .env.example)"


#: The fix for a value a validator rejected, by variable-name suffix.
_VALUE_FIXES = {
    "_FRONTS": "write {var} as tcp://host:port entries (host a hostname or an IP address, port 1-65535), comma-separated",
    "_WORKER_LISTEN": "set {var} to host:port, e.g. 127.0.0.1:9108",
    "_SHARD": "set {var} to i/N with 0 <= i < N, e.g. 0/1",
    "_SINK_URL": "set {var} to " + SINK_FORMS,
}


def load_settings(
    env: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    root: Path | None = None,
    env_file: Path | None = None,
) -> Settings:
    """Assemble and validate the configuration.

    ``env`` selects ``envs/<env>.env`` (default: FEEDOPS_ENV from ``environ``, else dev);
    ``overrides`` maps variable names to command-line values (highest precedence).
    Raises :class:`ConfigError` listing every problem found.
    """
    environ = dict(os.environ if environ is None else environ)
    overrides = dict(overrides or {})
    known = all_env_vars()
    secrets = secret_env_vars()
    problems: list[Problem] = []
    warnings: list[Problem] = []

    env_name = env or overrides.get("FEEDOPS_ENV") or environ.get("FEEDOPS_ENV") or "dev"
    if env_name not in ENV_NAMES:
        raise ConfigError([Problem("FEEDOPS_ENV", f"unknown environment {env_name!r}",
                                   f"use one of {', '.join(ENV_NAMES)} (envs/<name>.env)", "--env" if env else "environment")])
    path = env_file or env_file_for(env_name, root)
    file_values: dict[str, str] = {}
    if path.exists():
        try:
            file_values = parse_env_file(path)
        except EnvFileError as exc:
            what, _, fix = exc.reason.partition("; ")
            raise ConfigError([Problem(f"{Path(exc.path).name}:{exc.line_no}", f"syntax error: {what}",
                                       f"{fix or 'edit the line'} (lines are NAME=value or # comments)", exc.path)]) from None
    elif env_file is not None or env_name != "dev":
        raise ConfigError([Problem("FEEDOPS_ENV", f"environment file {path} does not exist",
                                   f"create it from .env.example or choose one of {', '.join(ENV_NAMES)}", str(path))])
    for var in file_values:
        if var not in known:
            problems.append(Problem(var, f"unknown variable in {path.name}", "remove it or fix its spelling (see .env.example)", str(path)))
        elif var in secrets and file_values[var]:
            problems.append(Problem(var, f"a secret must not be stored in {path.name}",
                                    "remove it from the file and provide it through the environment or a secrets directory", str(path)))
    file_values = {k: v for k, v in file_values.items() if k in known and k not in secrets}
    if file_values.get("FEEDOPS_ENV") not in (None, env_name):
        problems.append(Problem("FEEDOPS_ENV", f"{path.name} says FEEDOPS_ENV={file_values['FEEDOPS_ENV']} but {env_name} was selected",
                                "make the file's FEEDOPS_ENV match its name", str(path)))
    file_values["FEEDOPS_ENV"] = env_name

    for var in environ:
        if (var.startswith("FEEDOPS_") or var.startswith("CTP_PRIMARY_") or var.startswith("CTP_BACKUP_")) and var not in known \
                and var not in TOOLING_ENV_VARS:
            warnings.append(Problem(var, "unknown variable in the environment (ignored)", "fix its spelling or unset it", "environment"))

    if environ.get(clock.ENV_VAR, "").strip():
        try:
            clock.parse(environ[clock.ENV_VAR])
        except clock.ClockError as exc:
            problems.append(Problem(clock.ENV_VAR, exc.reason, exc.fix, "environment"))

    env_values = {k: v for k, v in environ.items() if k in known}
    env_values.pop("FEEDOPS_ENV", None)  # already decided above
    secrets_spec_source = "command line" if "FEEDOPS_SECRETS_DIR" in overrides else \
        "environment" if "FEEDOPS_SECRETS_DIR" in env_values else str(path)
    secrets_spec = overrides.get("FEEDOPS_SECRETS_DIR", env_values.get("FEEDOPS_SECRETS_DIR", file_values.get("FEEDOPS_SECRETS_DIR")))
    secrets_dirs = _secrets_dirs(secrets_spec, problems, secrets_spec_source)
    secret_values: dict[str, str] = {}
    secret_sources: dict[str, str] = {}
    for directory in secrets_dirs:  # later directories win
        for var in known:
            candidate = directory / var
            if candidate.is_file():
                value, problem = _read_secret_file(candidate, var)
                if problem:
                    problems.append(problem)
                elif value is not None:
                    secret_values[var] = value
                    secret_sources[var] = f"secret file {candidate}"

    for layer, label in ((env_values, "environment"), (overrides, "command line")):
        for var in sorted(secrets & set(layer)):
            if layer[var] != layer[var].strip():  # the same rule as a secret file's (never the value in the message)
                problems.append(Problem(var, f"the value in the {label} has leading or trailing whitespace",
                                        f"set {var} without it (look for a quoted trailing space or a carriage "
                                        "return where it is exported), or put it in a secret file", label))

    merged: dict[str, str] = {}
    sources: dict[str, str] = {}
    for layer, label in ((file_values, f"env file {path}"), (secret_values, None), (env_values, "environment"), (overrides, "command line")):
        for var, value in layer.items():
            if var not in known:
                continue
            merged[var] = value
            sources[var] = label or secret_sources[var]
    for var in secrets:
        if merged.get(var):
            register_secret(merged[var])

    built: dict[type, Any] = {}
    for model in MODELS:
        model._layer = {k: v for k, v in merged.items() if known[k][0] is model}
        try:
            built[model] = model()
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = err.get("loc") or ()
                if loc:
                    var = model.env_var(str(loc[0]))
                    message, fix = _explain(err, var, var in secrets)
                    problems.append(Problem(var, message, fix, sources.get(var)))
                else:  # model-level validator
                    message = str(err.get("msg", "")).removeprefix("Value error, ")
                    for part in message.split("; "):
                        var = part.split(" ", 1)[0]
                        problems.append(Problem(var, part, "adjust the thresholds so that warning comes before critical", sources.get(var)))
        finally:
            model._layer = {}
    if problems:
        raise ConfigError(problems)
    return Settings(feed=built[FeedSettings], primary=built[PrimaryProfile], backup=built[BackupProfile],
                    env_file=path if path.exists() else None, sources=sources, secrets_dirs=secrets_dirs, warnings=warnings)


def render_env_example() -> str:
    """The body of .env.example generated from the model (``python -m feedops.settings``)."""
    out = [
        "# feedops settings: every variable the settings model (lib/feedops/settings.py) knows.",
        "# Precedence, highest first: command-line flags > process environment >",
        "# secret files (FEEDOPS_SECRETS_DIR, one file per variable named like it) >",
        "# envs/<env>.env (non-secret values only) > the defaults shown here.",
        "# Secrets (passwords, auth codes) never go in env files: use the environment or a secrets dir.",
        "",
    ]
    for model in MODELS:
        title = {FeedSettings: "service", PrimaryProfile: "primary CTP profile", BackupProfile: "backup CTP profile"}[model]
        out.append(f"# ---- {title}")
        for var, name in model.env_vars().items():
            info = model.model_fields[name]
            out.append(f"# {info.description}")
            if _is_secret(info):
                out.append(f"# {var}=<secret>")
                continue
            default = info.get_default(call_default_factory=True)
            example = _example(model, name, default)
            out.append(f"{var}={example}")
        out.append("")
    return "\n".join(out)


_EXAMPLES = {
    "md_fronts": "tcp://md1.broker.example:41213,tcp://md2.broker.example:41213",
    "td_fronts": "tcp://td1.broker.example:41205",
    "broker_id": "9999",
    "user_id": "000000",
    "app_id": "simnow_client_test",
    "user_product_info": "feedops",
}


def _example(model: type, name: str, default: Any) -> str:
    if issubclass(model, CtpProfile):
        value = _EXAMPLES.get(name, "")
        if model is BackupProfile and "fronts" in name:
            value = value.replace(".broker.", ".backup-broker.")
        return value
    if default is None:
        return ""
    if isinstance(default, bool):
        return "true" if default else "false"
    return str(default)


if __name__ == "__main__":
    import sys

    sys.stdout.write(render_env_example())
