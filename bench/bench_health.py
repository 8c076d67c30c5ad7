#!/usr/bin/env python3
"""Benchmark check_feed_health.py on 20,000 instruments (worker source).

A real HTTP server in this process serves a worker ``/status?instruments=1`` document
with 20,000 instruments (built to lib/feedops/schemas/worker-status.schema.json by
tests/health_support.py). Prints medians of:

* cold: wall time of one ``check_feed_health.py`` process (start, imports, fetch,
  coverage, report) -- target <= 1 s;
* after imports: one check inside a warm process (fetch, parse, coverage against
  the calendar, checks, report, rendering) -- target <= 0.3 s;
* coverage only: feedops.coverage.compute on the 20,000-row table -- target < 50 ms;
* import of the CLI's modules in a fresh process (for context).

Child processes cache bytecode under a temporary PYTHONPYCACHEPREFIX (as an installed
package would), even when PYTHONDONTWRITEBYTECODE is set in the calling shell.

    .venv/bin/python bench/bench_health.py [--instruments 20000] [--runs 7]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
sys.path.insert(0, str(ROOT / "tests"))
SCRIPT = ROOT / "scripts" / "operations" / "check_feed_health.py"

from health_support import FakeWorker, status_doc, universe  # noqa: E402


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.0f} ms (min {min(samples) * 1000:.0f}, max {max(samples) * 1000:.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instruments", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    state = tempfile.mkdtemp(prefix="bench-health-")
    env = {**os.environ, "FEEDOPS_SECRETS_DIR": state, "FEEDOPS_STATE_DIR": state, "FEEDOPS_PUSHGATEWAY_ENABLED": "false",
           "PYTHONPYCACHEPREFIX": os.path.join(state, "pycache")}  # bytecode cached as in production, outside the repo
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.update({k: env[k] for k in ("FEEDOPS_SECRETS_DIR", "FEEDOPS_STATE_DIR", "FEEDOPS_PUSHGATEWAY_ENABLED")})
    now = time.time()
    rows = universe(args.instruments, now, stale_every=50)
    worker = FakeWorker().serve(status_doc(rows, now=now, validate=False))
    argv = ["--worker", worker.url, "--no-redis", "--no-push", "--format", "json"]
    try:
        subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, env=env)  # writes the bytecode cache
        cold = []
        for _ in range(args.runs):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, env=env)
            cold.append(time.perf_counter() - start)
            if proc.returncode not in (0, 1):
                print(proc.stdout.decode()[-500:], proc.stderr.decode()[-500:])
                return 1

        imports = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import feedops.settings, feedops.health.run, feedops.health.report"],
                           check=True, env=env)
            imports.append(time.perf_counter() - start)

        import importlib.util

        spec = importlib.util.spec_from_file_location("check_feed_health", SCRIPT)
        cli = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cli)
        warm = []
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            cli.main(argv)  # first call loads the lazily imported modules
            for _ in range(args.runs):
                start = time.perf_counter()
                cli.main(argv)
                warm.append(time.perf_counter() - start)

        from feedops import coverage
        from feedops.calendar import HOLIDAYS_FILE, TradingCalendar, load_holidays

        cal = TradingCalendar("exchange", load_holidays(HOLIDAYS_FILE))
        at = dt.datetime(2026, 11, 24, 21, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
        columns = [list(c) for c in zip(*rows)]
        cov_times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            coverage.compute(*columns, calendar=cal, at=at, window_seconds=60)
            cov_times.append(time.perf_counter() - start)
    finally:
        worker.close()

    print(f"check_feed_health, {args.instruments} instruments, worker source, {args.runs} runs")
    print(f"  cold process, median wall:    {median_ms(cold)}   target <= 1000 ms")
    print(f"  after imports (warm), median: {median_ms(warm)}   target <= 300 ms")
    print(f"  coverage.compute, median:     {median_ms(cov_times)}   target < 50 ms")
    print(f"  imports alone (fresh process): {median_ms(imports)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
