"""The health check's runbook-state source: the last successful pre-market run
(``<state_dir>/runs/premarket.last-success``) and the workers the native runbook started
(``<state_dir>/pids/worker-<n>.pid``, with their supervisors' records)."""

from __future__ import annotations

from pathlib import Path

from .sources import ExpectedWorker, PremarketRun, SourceError

PREMARKET_FILE = ("runs", "premarket.last-success")


def read_premarket(state_dir: Path) -> PremarketRun | None:
    """The last successful pre-market run, or None when there is none yet.

    Raises :class:`SourceError` when the file exists but cannot be trusted.
    """
    from ..runbook.state import StateError, read_json

    path = state_dir.joinpath(*PREMARKET_FILE)
    try:
        data = read_json(path)
    except StateError as exc:
        raise SourceError("premarket", str(path), str(exc).split(";")[0].removeprefix(f"state file {path} "),
                          "move the file away; the next successful `make premarket` rewrites it") from None
    if data is None:
        return None
    ts = data.get("ts")
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        raise SourceError("premarket", str(path), "has no numeric 'ts'",
                          "move the file away; the next successful `make premarket` rewrites it")
    return PremarketRun(float(ts), data.get("env"), data.get("profile"))


def _alive(pid: int, start_ticks: int) -> bool:
    """``pid`` runs and is the process the pid file recorded (same kernel start time), not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[0] not in ("Z", "X") and int(fields[19]) == start_ticks


def _supervised_child(state_dir: Path, name: str) -> tuple[bool, str | None]:
    """Whether the supervisor's child (the worker itself) runs, from ``<state>/supervisor/<name>.json``
    (lib/feedops/runbook/supervisor.py): (True, None) when it runs or there is no record, else (False, why)."""
    from ..runbook.state import StateError, read_json

    try:
        record = read_json(state_dir / "supervisor" / f"{name}.json")
    except StateError:
        return True, None  # the keeper's own record is not ours to judge; the keeper runs
    if not record:
        return True, None
    child = record.get("child_pid")
    restarts = record.get("restarts")
    if isinstance(child, int) and not isinstance(child, bool):
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
            if stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X"):
                return True, None
        except OSError:
            pass
    return False, (f"its supervisor runs but the worker does not (last exit {record.get('last_exit')}, "
                   f"{restarts} restart(s) so far; it is being restarted)")


def read_expected_workers(state_dir: Path) -> list[ExpectedWorker]:
    """The workers that should be running: the runbook writes ``<state>/pids/worker-<n>.pid`` (the worker's
    supervisor, whose child the worker is) when it starts one and removes it when it stops one
    (lib/feedops/runbook/procs.py), so a pid file whose process is gone is a worker that died and is not
    restarted; a supervisor whose child is gone is a worker down until its restart."""
    from ..runbook.state import StateError, read_json

    found = []
    for path in sorted(state_dir.joinpath("pids").glob("worker-*.pid")):
        try:
            data = read_json(path)
        except StateError as exc:
            found.append(ExpectedWorker(path.stem, None, None, False, str(exc).split(";")[0]))
            continue
        if data is None:  # removed meanwhile: stopped
            continue
        pid, ticks = data.get("pid"), data.get("start_ticks")
        if not isinstance(pid, int) or not isinstance(ticks, int):
            found.append(ExpectedWorker(path.stem, None, None, False, f"pid file {path} is corrupt"))
            continue
        running, problem = _alive(pid, ticks), None
        if running:
            running, problem = _supervised_child(state_dir, path.stem)
        found.append(ExpectedWorker(path.stem, pid, data.get("address"), running, problem))
    return found
