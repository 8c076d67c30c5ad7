#!/usr/bin/env python3
"""ctp_sim.py: run a ctp-sim front (docs/ops/ctp-sim.md); the CLI is feedops.sim.cli."""

from _package import run

run("feedops.sim.cli")
