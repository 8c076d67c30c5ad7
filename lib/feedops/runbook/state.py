"""Runbook state that survives runs, under FEEDOPS_STATE_DIR.

Layout (all JSON, each written to a temporary file in the same directory, fsynced and
renamed over the old one, so a reader sees the old or the new content, never half)::

    active-profile.json       {"profile": "backup", "ts": ..., "reason": "failover"}
    deployed.json             {"image": ..., "tag": ..., "ts": ...}
    ledger.json               {"entries": [{"id", "ts", "kind", "tag", "profile", "snapshot", ...}]}
    snapshots/<id>.json       configuration snapshot, non-secret values only
    last-good.json            {"snapshot": id, "tag": ..., "profile": ..., "ts": ...}
    pin.json                  configuration applied on top of the settings (rollback, rotation)
    pin.previous.json         the pin before a rotation (restored when the rotation fails)
    release.env               the pin as an env file for docker compose (compose runtime)
    runs/<mode>.last.json     outcome of the last run per mode
    runs/premarket.last-success   {"ts", "env", "profile"} (read by check_feed_health.py)
    pids/<name>.pid, logs/<name>.log   the native runtime's processes
    runbook.lock              flock(1)ed by the running start_live_env.sh, naming its pid and mode
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_text

LEDGER_MAX_ENTRIES = 500


class StateError(Exception):
    """A state file is corrupt or unreadable; the message names the file and the fix."""


def atomic_write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temp file, fsync, rename)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def read_json(path: Path, *, required: bool = False, kind: type = dict) -> Any:
    """Read a JSON state file; None when it is missing and not required.

    Raises :class:`StateError` when it is unreadable, not JSON or not a ``kind``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise StateError(f"state file {path} is missing; run `start_live_env.sh premarket` to create it") from None
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"state file {path} is unreadable ({exc}); fix its permissions or move it away") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"state file {path} is corrupt (not JSON: {exc.msg} at line {exc.lineno}); "
                         f"it was not trusted: move it away and re-run") from None
    if not isinstance(data, kind):
        raise StateError(f"state file {path} is corrupt (expected a JSON {kind.__name__}); it was not trusted: "
                         f"move it away and re-run")
    return data


def _require_keys(path: Path, data: dict | None, keys: tuple[str, ...]) -> dict | None:
    if data is None:
        return None
    missing = [k for k in keys if k not in data]
    if missing:
        raise StateError(f"state file {path} is corrupt (missing {', '.join(missing)}); it was not trusted: "
                         f"move it away and re-run")
    return data


def _corrupt(path: Path, what: str) -> StateError:
    return StateError(f"state file {path} is corrupt ({what}); it was not trusted: move it away and re-run")


class StateStore:
    """Typed access to the files of one state directory.

    Every writer of a file that is read back (profile, deployed tag, ledger, last-good, runs)
    reads the old content first: a corrupt file raises :class:`StateError` instead of being
    overwritten (the operator sees it, exit STATE_CORRUPT). :meth:`check` reads them all.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    # ------------------------------------------------------------------ paths
    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    @property
    def pid_dir(self) -> Path:
        return self.path("pids")

    @property
    def log_dir(self) -> Path:
        return self.path("logs")

    # ------------------------------------------------------------------ profile / deployed tag
    def active_profile(self) -> str | None:
        p = self.path("active-profile.json")
        data = _require_keys(p, read_json(p), ("profile",))
        if data is None:
            return None
        if data["profile"] not in ("primary", "backup"):
            raise StateError(f"state file {p} is corrupt (profile {data['profile']!r} is neither primary nor backup); "
                             f"it was not trusted: move it away and re-run")
        return data["profile"]

    def set_active_profile(self, profile: str, reason: str) -> None:
        self.active_profile()  # a corrupt file is reported, not overwritten
        atomic_write_json(self.path("active-profile.json"), {"profile": profile, "ts": time.time(), "reason": reason})

    def deployed(self) -> dict | None:
        p = self.path("deployed.json")
        return _require_keys(p, read_json(p), ("image", "tag"))

    def set_deployed(self, image: str, tag: str) -> None:
        self.deployed()  # a corrupt file is reported, not overwritten
        atomic_write_json(self.path("deployed.json"), {"image": image, "tag": tag, "ts": time.time()})

    # ------------------------------------------------------------------ ledger and snapshots
    def ledger(self) -> list[dict]:
        p = self.path("ledger.json")
        data = _require_keys(p, read_json(p), ("entries",))
        if data is None:
            return []
        if not isinstance(data["entries"], list) or not all(isinstance(e, dict) for e in data["entries"]):
            raise StateError(f"state file {p} is corrupt (entries is not a list of objects); it was not trusted: "
                             f"move it away and re-run")
        return data["entries"]

    def append_ledger(self, entry: dict) -> dict:
        entries = self.ledger()
        entry = {"ts": time.time(), **entry}
        entries.append(entry)
        atomic_write_json(self.path("ledger.json"), {"entries": entries[-LEDGER_MAX_ENTRIES:]})
        return entry

    def write_snapshot(self, snapshot: dict) -> str:
        """Store a configuration snapshot (no secrets in it); return its id."""
        snap_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}-{time.monotonic_ns() % 100000:05d}"
        atomic_write_json(self.path("snapshots", f"{snap_id}.json"), {"id": snap_id, **snapshot})
        return snap_id

    def snapshot(self, snap_id: str) -> dict:
        p = self.path("snapshots", f"{snap_id}.json")
        data = _require_keys(p, read_json(p, required=True), ("id", "values"))
        if not isinstance(data["values"], dict):
            raise StateError(f"state file {p} is corrupt (values is not an object); it was not trusted: move it away and re-run")
        return data

    def last_good(self) -> dict | None:
        p = self.path("last-good.json")
        return _require_keys(p, read_json(p), ("snapshot", "tag", "profile"))

    def set_last_good(self, snap_id: str, tag: str, profile: str) -> None:
        self.last_good()  # a corrupt file is reported, not overwritten
        atomic_write_json(self.path("last-good.json"), {"snapshot": snap_id, "tag": tag, "profile": profile, "ts": time.time()})

    # ------------------------------------------------------------------ pin (configuration applied over settings)
    def pin(self) -> dict | None:
        p = self.path("pin.json")
        data = _require_keys(p, read_json(p), ("values", "reason"))
        if data is not None and not all(isinstance(v, str) for v in data["values"].values()):
            raise StateError(f"state file {p} is corrupt (values must be strings); it was not trusted: move it away and re-run")
        return data

    def pin_previous(self) -> tuple[bool, dict | None]:
        """(saved?, the pin before a rotation): pin.previous.json, written by ``rotate apply``."""
        p = self.path("pin.previous.json")
        data = _require_keys(p, read_json(p), ("pin",))
        if data is None:
            return False, None
        old = data["pin"]
        if old is not None and not (isinstance(old, dict) and isinstance(old.get("values"), dict) and "reason" in old):
            raise StateError(f"state file {p} is corrupt (pin without values/reason); it was not trusted: "
                             f"move it away and restore the secrets directory by hand with `rotate --secrets-dir`")
        return True, old

    def set_pin(self, values: dict[str, str], reason: str, **extra: Any) -> None:
        atomic_write_json(self.path("pin.json"), {"values": values, "reason": reason, "ts": time.time(), **extra})

    def clear_pin(self) -> bool:
        try:
            self.path("pin.json").unlink()
            return True
        except FileNotFoundError:
            return False

    # ------------------------------------------------------------------ runs
    def run_outcome(self, mode: str) -> dict | None:
        p = self.path("runs", f"{mode}.last.json")
        return _require_keys(p, read_json(p), ("mode", "exit_code", "ts"))

    def record_run(self, outcome: dict) -> None:
        self.run_outcome(outcome["mode"])  # a corrupt file is reported, not overwritten
        atomic_write_json(self.path("runs", f"{outcome['mode']}.last.json"), outcome)

    def premarket_success(self) -> dict | None:
        p = self.path("runs", "premarket.last-success")
        data = _require_keys(p, read_json(p), ("ts", "env", "profile"))
        if data is not None and not isinstance(data["ts"], (int, float)):
            raise _corrupt(p, "ts is not a number")
        return data

    def mark_premarket_success(self, env: str, profile: str, ts: float | None = None) -> None:
        self.premarket_success()  # a corrupt file is reported, not overwritten
        atomic_write_json(self.path("runs", "premarket.last-success"),
                          {"ts": ts if ts is not None else time.time(), "env": env, "profile": profile})

    # ------------------------------------------------------------------ native runtime's pid files
    def pid_record(self, name: str) -> dict | None:
        """The pid record of a native component; a corrupt pid file raises StateError."""
        p = self.pid_dir / f"{name}.pid"
        try:
            data = read_json(p)
        except StateError:
            data = {}
        if data is not None and not (isinstance(data.get("pid"), int) and data["pid"] > 0
                                     and isinstance(data.get("start_ticks"), int)):
            raise StateError(f"pid file {p} is corrupt; it was not trusted: `start_live_env.sh shutdown` stops the "
                             f"component by its command line and port; then remove the file and re-run")
        return data

    # ------------------------------------------------------------------ all of them
    def check(self) -> list[str]:
        """Read every state file the runbook trusts; one message (the file and the fix) per corrupt one."""
        readers: list[Any] = [self.active_profile, self.deployed, self.ledger, self.last_good, self.pin,
                              self.pin_previous, self.premarket_success]
        readers += [lambda m=mode: self.run_outcome(m) for mode in self.modes_with_runs()]
        if self.pid_dir.is_dir():
            readers += [lambda n=p.stem: self.pid_record(n) for p in sorted(self.pid_dir.glob("*.pid"))]
        supervisor = self.path("supervisor")
        if supervisor.is_dir():
            readers += [lambda p=p: read_json(p) for p in sorted(supervisor.glob("*.json"))]
        problems = []
        for reader in readers:
            try:
                reader()
            except StateError as exc:
                problems.append(str(exc))
        return problems

    def modes_with_runs(self) -> list[str]:
        d = self.path("runs")
        if not d.is_dir():
            return []
        return sorted(p.name[: -len(".last.json")] for p in d.glob("*.last.json"))
