"""The runbook's view of the configuration: settings + state, snapshots, child environment.

The effective configuration is the settings model (``feedops.settings``) loaded with
the *pin* (a configuration snapshot re-applied by a rollback, or a rotated secrets
directory) laid over the environment. Every program the runbook starts receives the
same effective environment, so validate_env.py, the worker and check_feed_health.py
all judge the configuration that actually runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from .. import paths
from ..endpoints import local_sim_profiles
from ..settings import MODELS, Settings, _is_secret, load_settings
from .binaries import unavailable_toggles
from .state import StateError, StateStore

#: Variables that describe where/how the runbook runs, not the feed's configuration:
#: they are never part of a snapshot (the profile and image tag are recorded apart).
NOT_SNAPSHOTTED = frozenset({"FEEDOPS_ENV", "FEEDOPS_STATE_DIR", "FEEDOPS_RUNTIME", "FEEDOPS_ACTIVE_PROFILE",
                             "FEEDOPS_IMAGE", "FEEDOPS_IMAGE_TAG"})


def _env_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def snapshot_values(settings: Settings) -> dict[str, str]:
    """Every non-secret setting as the string an env file would hold (no secrets, ever)."""
    built = {MODELS[0]: settings.feed, MODELS[1]: settings.primary, MODELS[2]: settings.backup}
    values: dict[str, str] = {}
    for model, instance in built.items():
        for var, name in model.env_vars().items():
            if var in NOT_SNAPSHOTTED or _is_secret(model.model_fields[name]):
                continue
            text = _env_string(getattr(instance, name))
            if text is not None:
                values[var] = text
    return values


def detect_runtime(requested: str) -> str:
    """auto -> compose when a docker engine answers and compose v2 is installed, else native."""
    if requested != "auto":
        return requested
    docker = shutil.which("docker")
    if not docker:
        return "native"
    try:
        for argv in ([docker, "compose", "version"], [docker, "info", "--format", "{{.ServerVersion}}"]):
            if subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=5).returncode != 0:
                return "native"
    except (OSError, subprocess.TimeoutExpired):
        return "native"
    return "compose"


@dataclass
class RunbookContext:
    """Settings + state for one runbook step."""

    env: str
    settings: Settings
    state: StateStore
    pin: dict | None
    profile: str
    runtime: str

    #: corrupt state files a lenient load went past (shutdown still stops what runs)
    state_problems: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, env: str | None, runtime: str | None = None, environ: dict[str, str] | None = None, *,
             lenient: bool = False) -> "RunbookContext":
        """Load settings with the pin applied. Raises ConfigError or StateError; ``lenient``: a corrupt
        pin or active-profile file is left out (listed in ``state_problems``) instead."""
        base = dict(os.environ if environ is None else environ)
        first = load_settings(env, environ=base)
        state = StateStore(first.feed.path("state_dir"))
        problems: list[str] = []

        def read(reader):
            try:
                return reader()
            except StateError as exc:
                if not lenient:
                    raise
                problems.append(str(exc))
                return None

        pin = read(state.pin)
        if pin:
            settings = load_settings(env, environ={**base, **pin["values"]})
        else:
            settings = first
        profile = read(state.active_profile) or settings.feed.active_profile
        chosen = runtime if runtime and runtime != "auto" else settings.feed.runtime
        return cls(env=settings.feed.env, settings=settings, state=state, pin=pin, profile=profile,
                   runtime=detect_runtime(chosen), state_problems=problems)

    @property
    def feed(self):
        return self.settings.feed

    def image_tag(self) -> str:
        """The tag to run: the one a rollback pinned, else the settings' FEEDOPS_IMAGE_TAG."""
        if self.pin and self.pin.get("tag"):
            return str(self.pin["tag"])
        return self.feed.image_tag

    def image_ref(self) -> str:
        """The reference docker compose runs: IMAGE:TAG, IMAGE:TAG@sha256:... or IMAGE@sha256:... (feedops.release)."""
        from ..release import image_ref

        try:
            return image_ref(self.feed.image, self.image_tag())
        except ValueError:  # a pin recorded before the forms were checked: compose names the problem
            return f"{self.feed.image}:{self.image_tag()}"

    def child_overrides(self) -> dict[str, str]:
        """What every program the runbook starts receives on top of the environment
        (the pin, the active profile, the state dir): bash passes the same to the CLIs."""
        env = dict(self.pin["values"]) if self.pin else {}
        env.update({"FEEDOPS_ENV": self.env, "FEEDOPS_ACTIVE_PROFILE": self.profile,
                    "FEEDOPS_STATE_DIR": str(self.state.root), "FEEDOPS_IMAGE_TAG": self.image_tag()})
        env.update({var: "false" for var in self.monitoring_unavailable()})
        return env

    def monitoring_unavailable(self) -> list[str]:
        """FEEDOPS_*_ENABLED toggles that are on but cannot be honoured here (native runtime,
        binary not installed): programs the runbook starts see them as false."""
        return unavailable_toggles(self.runtime, self.settings)

    def pushgateway_url(self) -> str | None:
        """Where run outcomes are pushed: the Pushgateway when it is enabled and can run, else None."""
        if not self.feed.pushgateway_enabled or "FEEDOPS_PUSHGATEWAY_ENABLED" in self.monitoring_unavailable():
            return None
        return self.feed.pushgateway_url

    def child_environ(self) -> dict[str, str]:
        """The environment of a component the native runtime starts."""
        env = {**os.environ, **self.child_overrides()}
        locpath = paths.bootstrap_locpath()
        if locpath:  # else glibc uses the system's locales
            env.setdefault("LOCPATH", locpath)
        return env

    def compose_profiles(self) -> list[str]:
        profiles = []
        if self.feed.channel == "sim":
            profiles.append("sim")
        if any((self.feed.prometheus_enabled, self.feed.pushgateway_enabled, self.feed.alertmanager_enabled,
                self.feed.grafana_enabled)):
            profiles.append("monitoring")
        return profiles

    def sim_profiles(self) -> list[str]:
        """Profiles whose market-data front is a local ctp-sim the runbook starts (channel=sim)."""
        return local_sim_profiles(self.settings)

    def shell_values(self) -> dict[str, str]:
        """The few values bash needs (KEY=value lines, no secrets)."""
        env_file = self.settings.env_file
        return {
            "ENV": self.env,
            "ENV_FILE": str(env_file) if env_file else "",
            "STATE_DIR": str(self.state.root),
            "RELEASE_ENV": str(self.state.path("release.env")),
            "RUNTIME": self.runtime,
            "CHANNEL": self.feed.channel,
            "CALENDAR": self.feed.calendar,
            "PROFILE": self.profile,
            "IMAGE": self.feed.image,
            "IMAGE_TAG": self.image_tag(),
            "IMAGE_REF": self.image_ref(),
            "WORKER_URLS": " ".join(self.feed.worker_url_list),
            "SIM_PROFILES": " ".join(self.sim_profiles()),
            "COMPOSE_PROFILES": " ".join(self.compose_profiles()),
            "PUSHGATEWAY_ENABLED": "true" if self.pushgateway_url() else "false",
            "PINNED": self.pin["reason"] if self.pin else "",
            "LOG_FORMAT": self.feed.log_format,
            "PYTHON": sys.executable,
        }
