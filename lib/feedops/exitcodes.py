"""The one exit-code table of feedops.

Every program's exit codes are defined here and nowhere else. The bash runbook
reads its codes from ``scripts/operations/lib/exitcodes.sh``, which is generated
from this module (``python -m feedops.exitcodes --shell``) and kept identical by a
test; ``docs/ops/exit-codes.md`` is checked against this table by a test too.

Families:

* ``Check``: the checkers (validate_env.py, check_feed_health.py and
  ``full_feed_subscription.py --probe``) use the Nagios convention.
* ``Worker``: the long-running full-feed worker (full_feed_subscription.py).
* ``Sim``: the ctp-sim front process.
* ``Runbook``: start_live_env.sh, one code per failure stage.
* ``Consumer``: the reference consumer (feedops-consumer, ``python -m feedops.consumer``).
"""

from __future__ import annotations

import enum
import sys


class Check(enum.IntEnum):
    """Nagios-style codes for every checker."""

    OK = 0  # all checks passed
    WARNING = 1  # warnings only; startup may continue
    CRITICAL = 2  # a check failed; startup must halt
    UNKNOWN = 3  # the checker could not run (bad arguments, unreadable input)


class Worker(enum.IntEnum):
    """Exit codes of the long-running worker."""

    OK = 0  # stopped on request (SIGTERM/SIGINT), queue drained, sink flushed, no tick discarded
    CONFIG = 10  # invalid settings or command-line arguments
    LISTEN = 11  # the health/metrics listen address is unusable (port in use)
    NO_FRONT = 12  # no front answered within the connect timeout
    LOGIN = 13  # login rejected (wrong credentials, authentication refused)
    INSTRUMENTS = 14  # the instrument list could not be obtained (query refused)
    STORM = 15  # disconnect storm: too many disconnects in the window
    SINK = 16  # the sink cannot be opened at all (malformed URL, e.g. ftp://x or a non-numeric Redis db; unwritable path)
    INTERNAL = 17  # unexpected internal error (a bug: the log has the details)
    TICKS_LOST = 18  # stopped on request, but ticks were discarded (queue full, sink buffer full, or left unflushed with the sink down); the count is in the ERROR line worker.ticks.lost


class Sim(enum.IntEnum):
    """Exit codes of the ctp-sim front process."""

    OK = 0  # stopped on request
    USAGE = 2  # bad argument (unknown fault, malformed address, bad seed, size out of range)
    LISTEN = 11  # the listen address is unusable (port in use)


class Runbook(enum.IntEnum):
    """Exit codes of scripts/operations/start_live_env.sh, one per failure stage."""

    OK = 0  # the mode completed
    USAGE = 64  # unknown mode or option, bad option value
    LOCK_HELD = 65  # another run holds the lock (the message names its pid and mode)
    VALIDATION_FAILED = 66  # validate_env.py reported a failed check, or rotate's secret is shadowed by the environment; nothing was started or changed
    START_FAILED = 67  # a component did not start (stack, sim or worker)
    NOT_READY = 68  # the worker(s) did not become ready within the timeout
    HEALTH_FAILED = 69  # check_feed_health.py reported CRITICAL or UNKNOWN
    FAILOVER_FAILED = 70  # the other profile did not recover within the timeout
    ROLLBACK_FAILED = 71  # no usable previous release/snapshot, or it did not recover
    SHUTDOWN_FAILED = 72  # a component did not stop within the timeout
    STATE_CORRUPT = 73  # a state file is corrupt or unreadable; it was not trusted: nothing was started or overwritten (shutdown still stops what runs)
    DEPENDENCY_MISSING = 74  # a required tool (python venv, docker compose, gcc for the line encoder) is missing
    ROTATION_FAILED = 75  # the new credentials did not recover; the previous ones were restored
    SCHEDULE_REFUSED = 76  # --scheduled run refused: its session already opened (premarket) or one is open (shutdown, drill)
    DRILL_FAILED = 77  # drill: failover and failback recovered, but the reference consumer saw duplicates or out-of-order ticks, gaps outside the outages, or a recovery beyond its target
    INTERRUPTED = 130  # stopped by SIGINT (Ctrl-C); what this run started was cleaned up
    TERMINATED = 143  # stopped by SIGTERM; what this run started was cleaned up


class Consumer(enum.IntEnum):
    """Exit codes of the reference consumer."""

    OK = 0  # stopped on request (SIGTERM/SIGINT) or --duration elapsed; the report was written
    FINDINGS = 1  # stopped, and what --fail-on names was seen (duplicates, out-of-order ticks, gaps); the report has them
    CONFIG = 10  # invalid settings or command-line arguments
    LISTEN = 11  # the --listen address is unusable (port in use)
    SOURCE = 12  # the source cannot be read at start (Redis unreachable, malformed URL, no sink directory)
    INTERNAL = 17  # unexpected internal error (a bug: the log has the details)


FAMILIES: dict[str, type[enum.IntEnum]] = {
    "check": Check,
    "worker": Worker,
    "sim": Sim,
    "runbook": Runbook,
    "consumer": Consumer,
}


def describe(family: type[enum.IntEnum]) -> list[tuple[str, int, str]]:
    """Return (name, code, meaning) rows for a family, meaning from the source comments."""
    import inspect

    source = inspect.getsource(family)
    meanings: dict[str, str] = {}
    for line in source.splitlines():
        stripped = line.strip()
        if "=" in stripped and "#" in stripped:
            name = stripped.split("=", 1)[0].strip()
            meanings[name] = stripped.split("#", 1)[1].strip()
    return [(m.name, int(m.value), meanings.get(m.name, "")) for m in family]


def render_shell() -> str:
    """The bash include with the runbook's codes (and the checker codes it interprets)."""
    lines = [
        "# shellcheck shell=bash disable=SC2034",
        "# Generated from lib/feedops/exitcodes.py by `python -m feedops.exitcodes --shell`.",
        "# Do not edit: tests/unit/test_exitcodes.py keeps this file identical to the generator.",
    ]
    for prefix, family in (("EXIT", Runbook), ("CHECK", Check)):
        for name, code, meaning in describe(family):
            lines.append(f"readonly {prefix}_{name}={code}  # {meaning}")
    return "\n".join(lines) + "\n"


def render_markdown_table(family: type[enum.IntEnum]) -> str:
    rows = ["| code | name | meaning |", "|---|---|---|"]
    for name, code, meaning in describe(family):
        rows.append(f"| {code} | `{name}` | {meaning} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--shell"]:
        sys.stdout.write(render_shell())
        return 0
    if args == ["--markdown"]:
        for key, family in FAMILIES.items():
            sys.stdout.write(f"\n### {key}\n\n" + render_markdown_table(family))
        return 0
    sys.stderr.write("usage: python -m feedops.exitcodes --shell|--markdown\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
