"""The one structured log format of feedops (Python side).

Every line is one JSON object with at least ``ts`` (RFC 3339, UTC, millisecond
precision, ``Z`` suffix), ``level`` (debug/info/warning/error/critical),
``component``, ``event`` (a dotted machine-readable name such as
``worker.login.failed``), ``msg`` (one human sentence), plus any extra fields.
``scripts/operations/lib/log.sh`` writes the same shape from bash; both are checked
against ``lib/feedops/schemas/log-line.schema.json``.

``--log-format text`` renders the same record for people:
``2026-11-27T04:47:36.123Z INFO  worker worker.login.ok logged in profile=primary``.

Secret values registered with :func:`register_secret` are replaced by ``***``
anywhere in a line, as a second line of defence behind ``SecretStr``.
Logs go to stderr; stdout is reserved for reports.
"""

from __future__ import annotations

import datetime as _dt
import faulthandler
import json
import signal
import sys
import threading
from typing import Any, TextIO

LEVELS = ("debug", "info", "warning", "error", "critical")
_LEVEL_RANK = {name: i for i, name in enumerate(LEVELS)}
REDACTED = "***"

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


#: The runbook sends it to a component that ignored SIGTERM, just before the SIGKILL: every feedops process
#: that called :func:`dump_stacks_on_signal` writes all its threads' Python stacks to stderr (its log).
STACKS_SIGNAL = signal.SIGUSR1


def dump_stacks_on_signal() -> None:
    """On :data:`STACKS_SIGNAL`, every thread's stack to stderr, from C: no Python code runs, so it works
    while the main thread is blocked, where a Python signal handler would never run."""
    faulthandler.register(STACKS_SIGNAL, file=sys.stderr, all_threads=True)


#: prctl(2)'s PR_SET_NAME: the calling thread's name as ps, top -H and /proc/<pid>/task/<tid>/comm show it.
_PR_SET_NAME = 15


def name_native_thread(name: str) -> None:
    """Give the calling thread ``name`` (at most 15 bytes) in the kernel too, where Python's thread name never
    goes: ``top -H`` and ``/proc/<pid>/task/*/comm`` then tell the pipeline from the sink writer's threads (the
    benchmark reads their CPU time so). Best effort: a platform without prctl keeps its name."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        pass


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is scrubbed from every log line."""
    if value and len(value) >= 3:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Replace every registered secret value in ``text`` by ``***``."""
    if not _secrets:
        return text
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def utc_timestamp(now: _dt.datetime | None = None) -> str:
    """RFC 3339 UTC timestamp with milliseconds and a ``Z`` suffix."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return str(value)  # SecretStr renders as '**********'


class Logger:
    """A small structured logger; thread-safe, one line per call."""

    def __init__(self, component: str, *, level: str = "info", fmt: str = "json", stream: TextIO | None = None):
        self.component = component
        self.set_level(level)
        self.set_format(fmt)
        self._stream = stream
        self._lock = threading.Lock()

    def set_level(self, level: str) -> None:
        level = level.lower()
        if level not in _LEVEL_RANK:
            raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
        self.level = level

    def set_format(self, fmt: str) -> None:
        if fmt not in ("json", "text"):
            raise ValueError(f"unknown log format {fmt!r}; use json or text")
        self.fmt = fmt

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def enabled(self, level: str) -> bool:
        return _LEVEL_RANK[level] >= _LEVEL_RANK[self.level]

    def format_record(self, level: str, event: str, msg: str, fields: dict[str, Any]) -> str:
        record: dict[str, Any] = {
            "ts": utc_timestamp(),
            "level": level,
            "component": self.component,
            "event": event,
            "msg": msg,
        }
        for key, value in fields.items():
            if key not in record:
                record[key] = _jsonable(value)
        if self.fmt == "json":
            line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        else:
            extras = " ".join(f"{k}={json.dumps(v, ensure_ascii=False) if not isinstance(v, str) or ' ' in v else v}"
                              for k, v in record.items() if k not in ("ts", "level", "component", "event", "msg"))
            line = f"{record['ts']} {level.upper():<8} {self.component} {event} {msg}" + (f" {extras}" if extras else "")
        return redact(line)

    def log(self, level: str, event: str, msg: str, **fields: Any) -> None:
        if not self.enabled(level):
            return
        line = self.format_record(level, event, msg, fields)
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (BrokenPipeError, ValueError):
                pass

    def debug(self, event: str, msg: str, **fields: Any) -> None:
        self.log("debug", event, msg, **fields)

    def info(self, event: str, msg: str, **fields: Any) -> None:
        self.log("info", event, msg, **fields)

    def warning(self, event: str, msg: str, **fields: Any) -> None:
        self.log("warning", event, msg, **fields)

    def error(self, event: str, msg: str, **fields: Any) -> None:
        self.log("error", event, msg, **fields)

    def critical(self, event: str, msg: str, **fields: Any) -> None:
        self.log("critical", event, msg, **fields)


_loggers: dict[str, Logger] = {}
_defaults = {"level": "info", "fmt": "json"}


def configure(level: str | None = None, fmt: str | None = None) -> None:
    """Set the level and format of every logger (existing and future)."""
    if level is not None:
        _defaults["level"] = level.lower()
    if fmt is not None:
        _defaults["fmt"] = fmt
    for logger in _loggers.values():
        logger.set_level(_defaults["level"])
        logger.set_format(_defaults["fmt"])


def get_logger(component: str) -> Logger:
    if component not in _loggers:
        _loggers[component] = Logger(component, level=_defaults["level"], fmt=_defaults["fmt"])
    return _loggers[component]
