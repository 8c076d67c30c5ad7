"""The native runtime's supervisor: one small keeper process per component, restarting it on failure.

The runbook starts every native component (ctp-sim fronts, workers, the monitoring
stack) through ``python -m feedops.runbook.supervisor --name NAME --kind KIND -- ARGV``
(:meth:`feedops.runbook.procs.ProcessTable.start`). The keeper is the process-group
leader recorded in ``<state>/pids/<name>.pid``; the component runs as its child in the
same group, its output in the same log file. What it does (docs/ops/supervisor.md):

* the component exits 0 (workers: 0 or 18 TICKS_LOST), i.e. stopped on request, or the
  keeper itself is asked to stop (SIGTERM/SIGINT, forwarded to the component): no
  restart, the keeper exits;
* it exits with a code a restart cannot fix (worker 10 CONFIG, 11 LISTEN, 16 SINK;
  sim 2 USAGE, 11 LISTEN): no restart, ERROR line, the keeper exits with that code;
* otherwise (any other code, or killed by a signal, e.g. SIGKILL): started again after
  a backoff of 1 s, doubling per consecutive failure up to
  FEEDOPS_RESTART_BACKOFF_MAX_SECONDS; a run that lasted STABLE_SECONDS resets it;
* a worker that exits 13 (LOGIN) or 15 (STORM) FEEDOPS_FAILOVER_AFTER_FAILURES times in
  a row on the active profile makes the other profile active (state
  ``active-profile.json``, ledger entry ``kind: profile, reason: auto-failover``) when
  FEEDOPS_AUTO_FAILOVER is on, and is restarted on it; a worker whose profile is no
  longer the active one (a sibling shard failed over, or ``failover`` ran) follows it at
  its next restart.

Every restart is counted in ``<state>/supervisor/<name>.json`` (restarts, failovers,
the last exit, the child's pid) and pushed to the Pushgateway when it is enabled, each
time the component is started (``feedops_supervisor_restarts_total{component}``, job
``feedops_supervisor``).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .. import log as feedlog
from .. import metric_names as mn
from ..exitcodes import Consumer, Sim, Worker
from .state import StateStore, atomic_write_json, read_json

log = feedlog.get_logger("runbook")

#: Exit codes that mean "stopped on request": never restarted.
STOPPED = {"worker": frozenset({int(Worker.OK), int(Worker.TICKS_LOST)})}
STOPPED_DEFAULT = frozenset({0})
#: Exit codes a restart cannot fix: never restarted (the runbook reports them).
PERMANENT = {"worker": frozenset({int(Worker.CONFIG), int(Worker.LISTEN), int(Worker.SINK)}),
             "sim": frozenset({int(Sim.USAGE), int(Sim.LISTEN)}),
             "consumer": frozenset({int(Consumer.CONFIG), int(Consumer.LISTEN)})}
#: Worker exits that count towards an automatic failover.
FAILOVER_CODES = frozenset({int(Worker.LOGIN), int(Worker.STORM)})
BACKOFF_FIRST_SECONDS = 1.0
#: A run at least this long resets the backoff and the failover count.
STABLE_SECONDS = 60.0
OTHER_PROFILE = {"primary": "backup", "backup": "primary"}


def backoff(failures: int, cap: float) -> float:
    """Delay before the restart after ``failures`` consecutive failed runs (1, 2, 4 ... s, at most ``cap``)."""
    return min(cap, BACKOFF_FIRST_SECONDS * 2 ** max(0, failures - 1))


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def with_profile(argv: list[str], profile: str) -> list[str]:
    """``argv`` with the value of ``--profile`` replaced (added when absent)."""
    out = list(argv)
    if "--profile" in out[:-1]:
        out[out.index("--profile") + 1] = profile
    else:
        out += ["--profile", profile]
    return out


def record_path(state: StateStore, name: str) -> Path:
    return state.path("supervisor", f"{name}.json")


def read_record(state: StateStore, name: str) -> dict:
    """The keeper's record of ``name`` (restarts, failovers, last exit, child pid); empty counts when none."""
    data = read_json(record_path(state, name)) or {}
    return {"restarts": 0, "failovers": 0, **data}


class Keeper:
    """Run one component, restart it on failure (see the module docstring)."""

    def __init__(self, name: str, kind: str, argv: list[str], state: StateStore, *, auto_failover: bool = False,
                 failover_after: int = 3, backoff_max: float = 30.0, push_url: str | None = None, env: str = "",
                 profile: str | None = None):
        self.name, self.kind, self.argv, self.state = name, kind, argv, state
        self.auto_failover, self.failover_after, self.backoff_max = auto_failover, failover_after, backoff_max
        self.push_url, self.env = push_url, env
        self.profile = profile
        self.record = read_record(state, name)
        self.stopping = threading.Event()
        self.signalled = False
        self.child: subprocess.Popen | None = None

    # -------------------------------------------------------------- signals
    def on_signal(self, signum: int, _frame=None) -> None:
        """Stop on request: no restart; the component gets the signal too (the group's, or forwarded).
        A second signal can run this inside the first one's ``stopping.set()``, which holds the event's
        lock (not reentrant): only the first sets the event."""
        first, self.signalled = not self.signalled, True
        if first:
            self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            try:
                child.send_signal(signum)
            except ProcessLookupError:
                pass

    # -------------------------------------------------------------- state
    def _save(self, **changes) -> None:
        self.record.update(changes)
        atomic_write_json(record_path(self.state, self.name), self.record)

    def _push(self) -> None:
        if not self.push_url:
            return
        from prometheus_client import CollectorRegistry

        from ..push import push

        registry = CollectorRegistry()
        mn.SUPERVISOR_RESTARTS.create(registry).labels(component=self.name).inc(self.record["restarts"])
        mn.SUPERVISOR_FAILOVERS.create(registry).labels(component=self.name).inc(self.record["failovers"])
        reason = push(self.push_url, mn.PUSH_JOB_SUPERVISOR, registry,
                      grouping_key={"instance": socket.gethostname(), "env": self.env, "component": self.name})
        if reason:
            log.warning("runbook.push.failed", reason, component_name=self.name)

    def _active_profile(self) -> str | None:
        if self.kind != "worker" or self.profile is None:
            return None
        try:
            return self.state.active_profile() or self.profile
        except Exception:  # a corrupt file: keep the profile we have (status reports the file)
            return self.profile

    def _fail_over(self, code: int, count: int) -> None:
        """Make the other profile active (unless a sibling already did) and record it in the ledger."""
        assert self.profile is not None
        active = self._active_profile()
        if active != self.profile:
            return  # another keeper (shard) or the runbook switched already: follow it at the restart
        other = OTHER_PROFILE[self.profile]
        self.state.set_active_profile(other, "auto-failover")
        self.state.append_ledger({"kind": "profile", "reason": "auto-failover", "from": self.profile, "profile": other,
                                  "component": self.name, "exit_code": code, "failures": count})
        self._save(failovers=self.record["failovers"] + 1)
        log.error("runbook.supervisor.failover", f"{self.name} exited {code} ({Worker(code).name}) {count} times in a row "
                  f"on profile {self.profile}: failing over to {other} (FEEDOPS_AUTO_FAILOVER)", component_name=self.name,
                  exit_code=code, failures=count, profile=other)

    # -------------------------------------------------------------- run
    def run(self) -> int:
        failures = 0  # consecutive failed runs (backoff)
        same_failure = 0  # consecutive LOGIN/STORM exits on one profile (failover)
        stopped = STOPPED.get(self.kind, STOPPED_DEFAULT)
        permanent = PERMANENT.get(self.kind, frozenset())
        while True:
            argv = self.argv
            active = self._active_profile()
            if active is not None:
                if active != self.profile:
                    same_failure = 0
                self.profile = active
                argv = with_profile(argv, active)
            started = time.monotonic()
            self.child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=_child_env(self.profile))
            self._save(child_pid=self.child.pid, started_ts=time.time(), profile=self.profile)
            if self.stopping.is_set():  # a stop that came while starting: pass it on
                self.on_signal(signal.SIGTERM)
            self._push()  # once the component runs: a slow Pushgateway never delays a (re)start
            code = self.child.wait()
            ran = time.monotonic() - started
            exited_ts = time.time()
            self._save(last_exit=code, last_exit_ts=exited_ts, child_pid=None)
            if self.stopping.is_set() or code in stopped:
                log.info("runbook.supervisor.stopped", f"{self.name} stopped ({describe_exit(code)}): not restarted",
                         component_name=self.name, exit_code=code)
                return code if code >= 0 else 0
            if code in permanent:
                log.error("runbook.supervisor.gave_up", f"{self.name} exited {code}, which a restart cannot fix (see "
                          f"docs/ops/exit-codes.md): not restarted", component_name=self.name, exit_code=code)
                return code
            if ran >= STABLE_SECONDS:
                failures = same_failure = 0
            failures += 1
            same_failure = same_failure + 1 if self.kind == "worker" and code in FAILOVER_CODES else 0
            if self.auto_failover and same_failure >= self.failover_after and self.profile is not None:
                self._fail_over(code, same_failure)
                same_failure = 0
            delay = backoff(failures, self.backoff_max)
            self._save(restarts=self.record["restarts"] + 1, next_start_ts=exited_ts + delay)
            log.error("runbook.supervisor.restart", f"{self.name} {describe_exit(code)} after {ran:.1f} s; restart "
                      f"#{self.record['restarts']} in {delay:g} s", component_name=self.name, exit_code=code,
                      restarts=self.record["restarts"], delay_seconds=delay)
            if self.stopping.wait(delay):
                log.info("runbook.supervisor.stopped", f"{self.name}: stop requested during the backoff; not restarted",
                         component_name=self.name)
                return 0


def _child_env(profile: str | None) -> dict[str, str] | None:
    """The keeper's environment, with the worker's profile when it changed (the CLI's --profile wins anyway)."""
    if profile is None:
        return None
    return {**os.environ, "FEEDOPS_ACTIVE_PROFILE": profile}


def command(name: str, kind: str, argv: list[str], python: str | None = None) -> list[str]:
    """The argv that runs ``argv`` under a keeper (what ProcessTable.start executes)."""
    return [python or sys.executable, "-m", "feedops.runbook.supervisor", "--name", name, "--kind", kind, "--", *argv]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m feedops.runbook.supervisor", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--kind", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    child = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not child:
        p.error("no command to supervise")
    from ..settings import ConfigError
    from .config import RunbookContext
    from .state import StateError

    profile = _argv_profile(child) if args.kind == "worker" else None
    try:
        ctx = RunbookContext.load(None, "native")
    except (ConfigError, StateError) as exc:  # the component still runs, restarted with the default backoff
        feedlog.configure(fmt=os.environ.get("FEEDOPS_LOG_FORMAT", "text"))
        log.error("runbook.supervisor.degraded", f"cannot load the settings or the state ({exc.__class__.__name__}); "
                  f"{args.name} is supervised without failover and without pushes", component_name=args.name)
        keeper = Keeper(args.name, args.kind, child, StateStore(Path(os.environ.get("FEEDOPS_STATE_DIR", "var/state"))),
                        profile=profile)
    else:
        feedlog.configure(level=ctx.feed.log_level, fmt=ctx.feed.log_format)
        keeper = Keeper(args.name, args.kind, child, ctx.state, auto_failover=ctx.feed.auto_failover,
                        failover_after=ctx.feed.failover_after_failures, backoff_max=ctx.feed.restart_backoff_max_seconds,
                        push_url=ctx.pushgateway_url(), env=ctx.env, profile=profile)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, keeper.on_signal)
    feedlog.dump_stacks_on_signal()  # the runbook's last word before a SIGKILL (procs.ProcessTable.stop)
    return keeper.run()


def _argv_profile(argv: list[str]) -> str | None:
    return argv[argv.index("--profile") + 1] if "--profile" in argv[:-1] else None


if __name__ == "__main__":
    sys.exit(main())
