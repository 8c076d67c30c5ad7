"""Where setting values come from: the read and merge steps of :func:`feedops.settings.load_settings`.

Each layer is read into a plain mapping of variable -> string, with the problems found on the
way; :func:`merge` lays them over each other in the documented precedence (lowest first):
the environment file ``envs/<env>.env``, secret files (``FEEDOPS_SECRETS_DIR``), the process
environment, command-line overrides. Nothing here knows the model's types: the caller
passes the variables it knows (``known``) and which are secrets (``secrets``).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import clock, paths
from .envfile import EnvFileError, parse_env_file
from .settings_errors import ConfigError, Problem

DEFAULT_SECRETS_DIR = "/run/secrets"
#: FEEDOPS_* variables of the tooling that are not settings (no "unknown variable" warning for them).
TOOLING_ENV_VARS = frozenset({
    "FEEDOPS_HOME",  # repository/image root (feedops.paths)
    "FEEDOPS_LOG_COMPONENT",  # component name of scripts/operations/lib/log.sh
    "FEEDOPS_RELEASE_ENV_FILE",  # the runbook's release env file handed to docker compose
    "FEEDOPS_PYTHON",  # interpreter the bats tests use
    clock.ENV_VAR,  # the clock seam (feedops.clock): tests, drills and rehearsals move the date with it
})


@dataclass
class Layers:
    """Every layer as read, lowest precedence first, and what reading them found wrong."""

    env_name: str
    env_file: Path
    file_values: dict[str, str]
    secret_values: dict[str, str]
    secret_sources: dict[str, str]  # variable -> "secret file <path>"
    env_values: dict[str, str]
    overrides: dict[str, str]
    secrets_dirs: list[Path]
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def env_file_for(env: str, root: Path | None = None) -> Path:
    return (root or paths.ROOT) / "envs" / f"{env}.env"


def read_layers(env: str | None, environ: Mapping[str, str], overrides: Mapping[str, str], root: Path | None,
                env_file: Path | None, known: Collection[str], secrets: Collection[str],
                env_names: Collection[str]) -> Layers:
    """Read every layer. Raises :class:`ConfigError` at once when the environment or its file cannot be chosen."""
    overrides = dict(overrides)
    problems: list[Problem] = []
    warnings: list[Problem] = []
    env_name = env or overrides.get("FEEDOPS_ENV") or environ.get("FEEDOPS_ENV") or "dev"
    if env_name not in env_names:
        raise ConfigError([Problem("FEEDOPS_ENV", f"unknown environment {env_name!r}",
                                   f"use one of {', '.join(env_names)} (envs/<name>.env)", "--env" if env else "environment")])
    path = env_file or env_file_for(env_name, root)
    file_values = _read_env_file(path, env_name, env_file is not None, known, secrets, env_names, problems)
    env_values = _read_environment(environ, known, problems, warnings)
    secrets_spec_source = "command line" if "FEEDOPS_SECRETS_DIR" in overrides else \
        "environment" if "FEEDOPS_SECRETS_DIR" in env_values else str(path)
    secrets_spec = overrides.get("FEEDOPS_SECRETS_DIR", env_values.get("FEEDOPS_SECRETS_DIR", file_values.get("FEEDOPS_SECRETS_DIR")))
    secrets_dirs = _secrets_dirs(secrets_spec, problems, secrets_spec_source)
    secret_values, secret_sources = _read_secret_files(secrets_dirs, known, problems)
    for layer, label in ((env_values, "environment"), (overrides, "command line")):
        for var in sorted(set(secrets) & set(layer)):
            if layer[var] != layer[var].strip():  # the same rule as a secret file's (never the value in the message)
                problems.append(Problem(var, f"the value in the {label} has leading or trailing whitespace",
                                        f"set {var} without it (look for a quoted trailing space or a carriage "
                                        "return where it is exported), or put it in a secret file", label))
    return Layers(env_name, path, file_values, secret_values, secret_sources, env_values, overrides, secrets_dirs,
                  problems, warnings)


def merge(layers: Layers, known: Collection[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The layers laid over each other: (variable -> value, variable -> where the value came from)."""
    merged: dict[str, str] = {}
    sources: dict[str, str] = {}
    for layer, label in ((layers.file_values, f"env file {layers.env_file}"), (layers.secret_values, None),
                         (layers.env_values, "environment"), (layers.overrides, "command line")):
        for var, value in layer.items():
            if var not in known:
                continue
            merged[var] = value
            sources[var] = label or layers.secret_sources[var]
    return merged, sources


def _read_env_file(path: Path, env_name: str, explicit: bool, known: Collection[str], secrets: Collection[str],
                   env_names: Collection[str], problems: list[Problem]) -> dict[str, str]:
    """The env file's known, non-secret values, with FEEDOPS_ENV set to ``env_name``."""
    file_values: dict[str, str] = {}
    if path.exists():
        try:
            file_values = parse_env_file(path)
        except EnvFileError as exc:
            what, _, fix = exc.reason.partition("; ")
            raise ConfigError([Problem(f"{Path(exc.path).name}:{exc.line_no}", f"syntax error: {what}",
                                       f"{fix or 'edit the line'} (lines are NAME=value or # comments)", exc.path)]) from None
    elif explicit or env_name != "dev":
        raise ConfigError([Problem("FEEDOPS_ENV", f"environment file {path} does not exist",
                                   f"create it from .env.example or choose one of {', '.join(env_names)}", str(path))])
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
    return file_values


def _read_environment(environ: Mapping[str, str], known: Collection[str], problems: list[Problem],
                      warnings: list[Problem]) -> dict[str, str]:
    """The environment's known variables but FEEDOPS_ENV (already decided); unknown look-alikes warn."""
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
    env_values.pop("FEEDOPS_ENV", None)
    return env_values


def _read_secret_files(dirs: list[Path], known: Collection[str], problems: list[Problem]) -> tuple[dict[str, str], dict[str, str]]:
    """(variable -> value, variable -> "secret file <path>") from the files named like variables; later directories win."""
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for directory in dirs:
        for var in known:
            candidate = directory / var
            if candidate.is_file():
                value, problem = _read_secret_file(candidate, var)
                if problem:
                    problems.append(problem)
                elif value is not None:
                    values[var] = value
                    sources[var] = f"secret file {candidate}"
    return values, sources


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
