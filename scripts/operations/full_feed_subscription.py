#!/usr/bin/env python3
"""full_feed_subscription.py: the full-feed worker (one per shard); the CLI is feedops.worker.cli."""

from _package import run

if __name__ == "__main__":  # not when multiprocessing's spawn re-imports the main module
    run("feedops.worker.cli")
