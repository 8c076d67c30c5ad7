#!/usr/bin/env python3
"""validate_env.py: the pre-market configuration checklist; the CLI is feedops.validate.cli."""

from _package import run

if __name__ == "__main__":  # not when multiprocessing's spawn re-imports the main module
    run("feedops.validate.cli")
