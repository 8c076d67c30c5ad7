#!/usr/bin/env python3
"""ctp_sim.py: run a ctp-sim front (docs/ops/ctp-sim.md); the CLI is feedops.sim.cli."""

from _package import run

if __name__ == "__main__":  # not when multiprocessing's spawn re-imports the main module
    run("feedops.sim.cli")
