#!/usr/bin/env python3
"""full_feed_subscription.py: the full-feed worker (one per shard); the CLI is feedops.worker.cli."""

from _package import run

run("feedops.worker.cli")
