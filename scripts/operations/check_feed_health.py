#!/usr/bin/env python3
"""check_feed_health.py: is the market-data feed healthy right now? The CLI is feedops.health.cli."""

from _package import run

run("feedops.health.cli")
