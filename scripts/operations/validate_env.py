#!/usr/bin/env python3
"""validate_env.py: the pre-market configuration checklist; the CLI is feedops.validate.cli."""

from _package import run

run("feedops.validate.cli")
