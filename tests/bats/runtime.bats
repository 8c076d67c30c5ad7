#!/usr/bin/env bats
# scripts/operations/lib/runtime.sh and steps.sh on their own (no servers): a runtime the
# dispatch does not know stops the run loudly, and a failed step is returned explicitly
# where errexit is off (the left of ||, as mode_rotate runs a restart).

bats_require_minimum_version 1.5.0

setup() {
  bats_load_library bats-support
  bats_load_library bats-assert
  ROOT="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
  export FEEDOPS_LOG_FORMAT=json
}

# Run bash with the runbook's libraries and FEEDOPS_CFG[RUNTIME]=$1, then the commands in $2.
with_runtime() {
  bash -c 'source "$1/scripts/operations/lib/init.sh"
    declare -A FEEDOPS_CFG=([RUNTIME]="$2" [ENV]=dev)
    FEEDOPS_DRY_RUN=1 FEEDOPS_TIMEOUT=5
    eval "$3"' bash "$ROOT" "$@"
}

@test "every runtime dispatch fails USAGE (64) on an unknown runtime, naming it and the function" {
  local fn
  for fn in start_stack start_monitoring start_workers stop_workers stop_stack shutdown "kill_front primary" \
            wait_ready "check_health exec"; do
    run -64 --separate-stderr with_runtime podman "feedops::runtime::${fn}"
    assert_output ""
    [[ $stderr == *"unknown runtime 'podman' in feedops::runtime::${fn%% *}"* ]] || fail "${fn}: ${stderr}"
  done
}

@test "a known runtime dispatches (dry-run prints the command)" {
  run -0 with_runtime native "feedops::runtime::stop_workers"
  assert_output --partial "dry-run:"
  assert_output --partial "stop --kind worker"
}

@test "recover returns the first failed step's code where errexit is off, and runs no later step" {
  # shellcheck disable=SC2016  # expanded by the child bash
  run -3 with_runtime native '
    feedops::step::start_workers() { echo start; return 3; }
    feedops::step::wait_ready() { echo wait; }
    feedops::step::health() { echo health; }
    rc=0
    ( feedops::step::recover 68 ) || rc=$?
    exit "${rc}"'
  assert_output "start"
}
