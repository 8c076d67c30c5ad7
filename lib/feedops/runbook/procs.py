"""The native runtime: components as processes with pid files and log files.

Each component runs in its own session (process group) under its supervisor
(:mod:`.supervisor`, which restarts it on failure), its output appended to
``<state>/logs/<name>.log``; its pid file ``<state>/pids/<name>.pid`` records the
supervisor's pid (the group leader: signals to the group reach both) and the kernel
start time, so a recycled pid is never mistaken for the component. The component's
own pid is in ``<state>/supervisor/<name>.json``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from ..endpoints import listen_of
from ..log import STACKS_SIGNAL, get_logger
from . import releases, supervisor
from .config import RunbookContext
from .state import atomic_write_json

log = get_logger("runbook")
SCRIPTS = paths.ROOT / "scripts" / "operations"


@dataclass
class Component:
    name: str  # sim-primary, sim-backup, worker-0 ...
    kind: str  # sim | worker
    argv: list[str]
    address: tuple[str, int]  # where it listens once started
    env: dict[str, str] = field(default_factory=dict)


def _code(ctx: RunbookContext, python: str) -> tuple[Path, list[str]]:
    """The scripts directory and the interpreter command of the feed's programs: the checkout's, or a
    rolled-back revision's tree (feedops.runbook.releases) with its ``lib`` first for the program only
    (``env VAR=...``): the supervisor keeping it runs the checkout's code."""
    scripts = releases.code_root(ctx) / "scripts" / "operations"
    env = releases.code_environ(ctx)
    return scripts, (["env", *(f"{k}={v}" for k, v in env.items())] if env else []) + [python]


def sim_components(ctx: RunbookContext, python: str) -> list[Component]:
    comps = []
    scripts, run = _code(ctx, python)
    for profile in ctx.sim_profiles():
        front = ctx.settings.profile(profile).md_fronts[0]
        argv = [*run, str(scripts / "ctp_sim.py"), "--env", ctx.env, "--profile", profile]
        comps.append(Component(f"sim-{profile}", "sim", argv, listen_of(front)))
    return comps


def worker_components(ctx: RunbookContext, python: str) -> list[Component]:
    urls = ctx.feed.worker_url_list
    comps = []
    scripts, run = _code(ctx, python)
    for index, url in enumerate(urls):
        host, port = listen_of(url)
        argv = [*run, str(scripts / "full_feed_subscription.py"), "--env", ctx.env, "--profile", ctx.profile,
                "--listen", f"{host}:{port}", "--shard", f"{index}/{len(urls)}", "--log-format", "json"]
        comps.append(Component(f"worker-{index}", "worker", argv, (host, port)))
    return comps


def _live_stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None when the process
    does not exist or has ended (a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else fields


def _start_ticks(pid: int) -> int | None:
    """Kernel start time of ``pid`` (None when it does not exist or is a zombie)."""
    fields = _live_stat(pid)
    return None if fields is None else int(fields[19])


def port_open(address: tuple[str, int], timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


class ProcessTable:
    """Pid files and log files of the native runtime in one state directory."""

    def __init__(self, ctx: RunbookContext):
        self.ctx = ctx
        self.pid_dir = ctx.state.pid_dir
        self.log_dir = ctx.state.log_dir

    def pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def record(self, name: str) -> dict | None:
        """The pid record; a corrupt pid file raises StateError."""
        return self.ctx.state.pid_record(name)

    def running_pid(self, name: str) -> int | None:
        data = self.record(name)
        if data and _start_ticks(data["pid"]) == data["start_ticks"]:
            return data["pid"]
        return None

    def names(self) -> list[str]:
        if not self.pid_dir.is_dir():
            return []
        return sorted(p.stem for p in self.pid_dir.glob("*.pid"))

    def start(self, comp: Component) -> tuple[int, bool]:
        """Start ``comp`` unless it runs; return (pid, started now)."""
        pid = self.running_pid(comp.name)
        if pid:
            log.info("runbook.component.already_running", f"{comp.name} already runs (pid {pid})", component_name=comp.name, pid=pid)
            return pid, False
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(comp.name), "ab") as out:
            proc = subprocess.Popen(supervisor.command(comp.name, comp.kind, comp.argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env={**self.ctx.child_environ(), **comp.env}, cwd=paths.ROOT, start_new_session=True)
        ticks = _start_ticks(proc.pid)
        atomic_write_json(self.pid_file(comp.name), {"pid": proc.pid, "start_ticks": ticks or 0, "kind": comp.kind,
                                                      "argv": comp.argv, "address": f"{comp.address[0]}:{comp.address[1]}",
                                                      "log": str(self.log_file(comp.name)), "ts": time.time()})
        log.info("runbook.component.started", f"started {comp.name} (pid {proc.pid})", component_name=comp.name,
                 pid=proc.pid, address=f"{comp.address[0]}:{comp.address[1]}")
        return proc.pid, True

    def wait_listening(self, comp: Component, deadline: float) -> str | None:
        """None once ``comp`` accepts connections; else why not (exited, or timed out)."""
        while True:
            if not self.running_pid(comp.name):
                return f"{comp.name} exited during start-up; log {self.log_file(comp.name)}: {tail(self.log_file(comp.name))}"
            if port_open(comp.address):
                return None
            if time.monotonic() >= deadline:
                return f"{comp.name} did not listen on {comp.address[0]}:{comp.address[1]} in time"
            time.sleep(0.1)

    def stop(self, name: str, timeout: float, sig: int = signal.SIGTERM) -> bool:
        """Stop ``name`` (its whole process group); True when it ended before the timeout."""
        pid = self.running_pid(name)
        graceful = True
        if pid:
            log.info("runbook.component.stopping", f"stopping {name} (pid {pid}, {signal.Signals(sig).name})",
                     component_name=name, pid=pid)
            _signal_group(pid, sig)
            graceful = self._wait_gone(name, time.monotonic() + timeout)
            if not graceful:
                stuck = group_states(pid)
                log.warning("runbook.component.kill", f"{name} did not stop within {timeout:g}s; sending SIGKILL "
                            f"(its processes: {stuck or 'none left'})", component_name=name, pid=pid, processes=stuck)
                self._dump_stacks(name, pid)
                _signal_group(pid, signal.SIGKILL)
                self._wait_gone(name, time.monotonic() + 5)
        self.pid_file(name).unlink(missing_ok=True)
        return graceful

    def log_size(self, name: str) -> int:
        try:
            return self.log_file(name).stat().st_size
        except OSError:
            return 0

    def lost_ticks_since(self, name: str, offset: int) -> dict | None:
        """The worker's ``worker.ticks.lost`` line (its last) written to its log after ``offset``, or None.

        A worker that stops having discarded ticks exits 18 (TICKS_LOST) with that ERROR
        line; the native runtime started it detached, so its log is where the runbook learns it.
        """
        try:
            with open(self.log_file(name), "rb") as fh:
                fh.seek(offset)
                text = fh.read().decode(errors="replace")
        except OSError:
            return None
        for line in reversed(text.splitlines()):
            if '"worker.ticks.lost"' in line:
                try:
                    entry = json.loads(line)
                    return entry if isinstance(entry.get("lost"), int) else None
                except ValueError:
                    return None
        return None

    def stop_unrecorded(self, name: str, address: tuple[str, int] | None, timeout: float) -> list[int]:
        """Stop ``name`` when its pid file cannot be trusted: the process groups of this state directory's
        processes whose command line names it (its supervisor) or that listen on its address. Returns the
        pids found (empty: nothing of it runs)."""
        pids = find_processes(self.ctx.state.root, name, address)
        groups = sorted({_group_of(pid) for pid in pids} - {None})
        if not pids:
            return []
        log.warning("runbook.component.stopping_unrecorded", f"stopping {name} found by command line and port "
                    f"(pids {', '.join(map(str, pids))}): its pid file cannot be trusted", component_name=name, pids=pids)
        for group in groups:
            _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(_start_ticks(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        if any(_start_ticks(pid) for pid in pids):
            log.warning("runbook.component.kill", f"{name} did not stop within {timeout:g}s; sending SIGKILL",
                        component_name=name, pids=pids)
            for group in groups:
                _signal_group(group, signal.SIGKILL)
            for pid in pids:
                _kill_quietly(pid)
        return pids

    def _dump_stacks(self, name: str, group: int) -> None:
        """Before the SIGKILL: the group's feedops processes write every thread's stack to the log
        (:data:`feedops.log.STACKS_SIGNAL`); waits until the log stops growing, at most 2 s."""
        _signal_group(group, STACKS_SIGNAL)
        sizes = [self.log_size(name)]
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and (len(sizes) < 3 or sizes[-1] != sizes[-3]):
            time.sleep(0.1)
            sizes.append(self.log_size(name))
        log.warning("runbook.component.stacks", f"{name}: its threads' stacks are in {self.log_file(name)} "
                    f"({sizes[-1] - sizes[0]} bytes)", component_name=name, log_file=str(self.log_file(name)))

    def _wait_gone(self, name: str, deadline: float) -> bool:
        while self.running_pid(name):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (TCP, IPv4 and IPv6), from /proc/net."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def group_states(group: int) -> str:
    """``pid state wchan`` of every live process of process group ``group`` (from /proc): whether a process
    that ignored the stop request was running (R), waiting (S, and on what) or stuck in the kernel (D)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _live_stat(entry.name)  # a zombie has ended: nothing to stop
        if fields is None or int(fields[2]) != group:
            continue
        try:
            wchan = (entry / "wchan").read_text().strip() or "-"
        except OSError:
            continue
        found.append(f"{entry.name} {fields[0]} {wchan}")
    return ", ".join(sorted(found))


def find_processes(state_root: Path, name: str, address: tuple[str, int] | None) -> list[int]:
    """Live pids of component ``name`` of the state directory ``state_root``, without its pid file: the
    supervisor whose command line is ``... feedops.runbook.supervisor --name NAME ...`` and any process
    listening on ``address``'s port, in both cases only processes whose environment has
    ``FEEDOPS_STATE_DIR=state_root`` (every component the native runtime starts has it), so that another
    environment's process on the same host is never touched."""
    marker = f"FEEDOPS_STATE_DIR={state_root}".encode()
    sockets = {f"socket:[{inode}]" for inode in _listening_inodes(address[1])} if address else set()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            named = b"feedops.runbook.supervisor" in argv and b"--name" in argv \
                and argv[argv.index(b"--name") + 1:argv.index(b"--name") + 2] == [name.encode()]
            listening = bool(sockets) and any(os.readlink(fd) in sockets for fd in (entry / "fd").iterdir())
        except (OSError, ValueError):
            continue
        if (named or listening) and _start_ticks(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)
