#!/usr/bin/env python3
"""Benchmark the runbook on the dev profile (native runtime, two ctp-sim fronts).

Runs ``start_live_env.sh`` in a temporary state dir on free loopback ports (a dev stack
on the default ports is never touched) and prints the wall time of each mode:

* premarket (validate -> 2 sims -> worker -> ready -> health -> last-known-good):
  target <= 30 s for the dev profile (2,000 instruments);
* failover --to backup, restart, rollback, shutdown (for context).

    .venv/bin/python bench/bench_runbook.py [--instruments 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from feedops.paths import bootstrap_locpath
from feedops.polling import free_port

ROOT = Path(__file__).resolve().parents[1]
RUNBOOK = ROOT / "scripts" / "operations" / "start_live_env.sh"


def environment(tmp: Path, instruments: int) -> dict[str, str]:
    secrets = tmp / "secrets"
    secrets.mkdir(mode=0o700)
    for var in ("CTP_PRIMARY_PASSWORD", "CTP_PRIMARY_AUTH_CODE", "CTP_BACKUP_PASSWORD", "CTP_BACKUP_AUTH_CODE"):
        (secrets / var).write_text(f"bench-{var[4]}{var[-1]}")
    primary, backup, worker = (f"127.0.0.1:{free_port()}" for _ in range(3))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEEDOPS_", "CTP_PRIMARY_", "CTP_BACKUP_"))}
    env.update({"FEEDOPS_STATE_DIR": str(tmp / "state"), "FEEDOPS_SECRETS_DIR": str(secrets),
                "FEEDOPS_SINK_URL": f"file:{tmp / 'feed'}", "FEEDOPS_FLOW_DIR": str(tmp / "flow"),
                "FEEDOPS_CACHE_DIR": str(tmp / "cache"), "FEEDOPS_WORKER_LISTEN": worker,
                "FEEDOPS_WORKER_URLS": f"http://{worker}", "FEEDOPS_SIM_INSTRUMENTS": str(instruments),
                "CTP_PRIMARY_MD_FRONTS": f"tcp://{primary}", "CTP_PRIMARY_TD_FRONTS": f"tcp://{primary}",
                "CTP_BACKUP_MD_FRONTS": f"tcp://{backup}", "CTP_BACKUP_TD_FRONTS": f"tcp://{backup}",
                **({"LOCPATH": bootstrap_locpath()} if bootstrap_locpath() else {})})
    return env


def timed(env: dict[str, str], *args: str) -> tuple[float, int]:
    start = time.monotonic()
    proc = subprocess.run([str(RUNBOOK), *args, "--runtime", "native"], env=env, cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-2000:])
    return time.monotonic() - start, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instruments", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="feedops-bench-runbook-") as tmp:
        env = environment(Path(tmp), args.instruments)
        results = []
        try:
            for mode in (["premarket"], ["failover", "--to", "backup"], ["restart"], ["rollback"], ["shutdown"]):
                seconds, rc = timed(env, *mode)
                results.append((" ".join(mode), seconds, rc))
                if rc != 0:
                    break
        finally:
            timed(env, "shutdown")
    print(f"runbook on the dev profile, {args.instruments} instruments (native runtime, ctp-sim)")
    for mode, seconds, rc in results:
        target = "  (target <= 30 s)" if mode == "premarket" else ""
        print(f"  {mode:<22} {seconds:6.1f} s  exit {rc}{target}")
    return 0 if all(rc == 0 for _, _, rc in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
