#!/usr/bin/env python3
"""check_feed_health.py: is the market-data feed healthy right now? The CLI is feedops.health.cli."""

from _package import run

if __name__ == "__main__":  # not when multiprocessing's spawn re-imports the main module
    run("feedops.health.cli")
