#!/usr/bin/env python3
"""Benchmark validate_env.py: how long the pre-market checklist takes.

Prints medians of:

* cold: wall time of one ``validate_env.py --json`` process on the dev profile
  (start, imports, settings, checks, report) -- the runbook pays this once per run;
* cold with --probe: the same plus TCP probes of four fronts (two listening sockets
  in this process, loopback) and the file sink;
* in process: ``run_checklist`` after imports (settings load + every check).

Secrets come from a temporary directory; nothing is pushed.

    .venv/bin/python bench/bench_validate_env.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from feedops.devsecrets import ensure_dev_secrets  # noqa: E402
from feedops.validate import run_checklist  # noqa: E402

SCRIPT = ROOT / "scripts" / "operations" / "validate_env.py"


def median_seconds(func, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        secrets = Path(tmp) / "secrets"
        ensure_dev_secrets(secrets)
        listeners = []
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(64)
            listeners.append(s)
        primary, backup = (f"tcp://127.0.0.1:{s.getsockname()[1]}" for s in listeners)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FEEDOPS_", "CTP_PRIMARY_", "CTP_BACKUP_"))}
        env.update(FEEDOPS_SECRETS_DIR=str(secrets), FEEDOPS_FLOW_DIR=str(Path(tmp) / "flow"),
                   FEEDOPS_SINK_URL=f"file:{tmp}/feed",
                   CTP_PRIMARY_MD_FRONTS=primary, CTP_PRIMARY_TD_FRONTS=primary,
                   CTP_BACKUP_MD_FRONTS=backup, CTP_BACKUP_TD_FRONTS=backup)
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure as installed: bytecode cached
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")

        def cli(*extra: str) -> None:
            done = subprocess.run([sys.executable, str(SCRIPT), "--json", "--no-push", *extra], env=env, capture_output=True)
            if done.returncode != 0:
                raise SystemExit(f"validate_env.py exited {done.returncode}: {done.stderr.decode()[-500:]}")

        cli()  # warm the bytecode cache
        cold = median_seconds(cli, args.runs)
        probe = median_seconds(lambda: cli("--probe"), args.runs)
        in_process = median_seconds(lambda: run_checklist(None, environ=env), args.runs)
        for s in listeners:
            s.close()
    print(f"validate_env cold (process, --json):         {cold * 1000:8.1f} ms (median of {args.runs})")
    print(f"validate_env cold with --probe (4 fronts):   {probe * 1000:8.1f} ms")
    print(f"run_checklist in process (after imports):    {in_process * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
