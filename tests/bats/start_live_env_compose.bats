#!/usr/bin/env bats
# start_live_env.sh on the compose runtime with a stub `docker` on PATH that records
# every call (tests/bats/stubs/docker): the right env file, profiles, image tag and
# active profile reach docker compose, and each mode's failure has its exit code.
# A fake worker (python -m http.server over a directory with readyz and status files)
# stands in for the container's published port.

bats_require_minimum_version 1.5.0
load stubs/runbook_helpers

setup() {
  runbook_setup
  export FEEDOPS_RUNTIME=compose
}

teardown() {
  if [[ -n "${FAKE_WORKER_PID:-}" ]]; then kill "${FAKE_WORKER_PID}" 2>/dev/null || true; fi
}

# Serve DIR/readyz and DIR/status on the worker port; /status is not a worker status.
start_fake_worker() {
  local dir="${BATS_TEST_TMPDIR}/www" port=${FEEDOPS_WORKER_LISTEN##*:}
  mkdir -p "${dir}"
  echo ok > "${dir}/readyz"
  echo 'not a worker status' > "${dir}/status"
  "${RUNBOOK_PY}" -m http.server --bind 127.0.0.1 --directory "${dir}" "${port}" >/dev/null 2>&1 &
  FAKE_WORKER_PID=$!
  local i
  for i in $(seq 100); do
    "${RUNBOOK_PY}" -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
      "${FEEDOPS_WORKER_URLS}/readyz" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# Seed a last-known-good release with image tag TAG through the runbook helper.
seed_last_good() {
  FEEDOPS_IMAGE_TAG=$1 "${RUNBOOK_PY}" -m feedops.runbook mark-good --mode premarket >/dev/null
}

calls() { cat "${DOCKER_STUB_LOG}"; }

@test "premarket: compose gets the env, profiles and tag; a failed health check exits HEALTH_FAILED (69)" {
  start_fake_worker
  FEEDOPS_IMAGE_TAG=v1.4.2 run -69 "${RUNBOOK}" premarket --timeout 5
  assert_output --partial "the health check reported"
  run calls
  assert_line --partial "compose --project-directory ${RUNBOOK_ROOT} --file ${RUNBOOK_ROOT}/docker-compose.yml --project-name feedops-dev --profile sim up --detach --wait --wait-timeout 5 --scale worker=0 | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.4.2 FEEDOPS_ACTIVE_PROFILE=primary"
  assert_line --partial "--profile sim up --detach --no-deps worker | FEEDOPS_ENV=dev"
  # nothing ran before (ps --quiet empty): the failed start is cleaned up
  assert_line --partial "down --timeout 5"
  [ ! -e "${FEEDOPS_STATE_DIR}/last-good.json" ]
}

@test "premarket: no worker answering exits NOT_READY (68) with progress lines" {
  run -68 "${RUNBOOK}" premarket --timeout 2
  assert_output --partial "waiting: 0/1 ready"
  assert_output --partial "did not become ready"
}

@test "premarket: the stack failing to start exits START_FAILED (67)" {
  DOCKER_STUB_FAIL=up run -67 "${RUNBOOK}" premarket --timeout 2
  assert_output --partial "the stack did not start"
}

@test "premarket on a running stack does not tear it down on failure" {
  DOCKER_STUB_PS=0123abcd run -68 "${RUNBOOK}" premarket --timeout 1
  run calls
  refute_line --partial " down "
}

@test "--env staging: its env file and no sim profile" {
  run -0 "${RUNBOOK}" shutdown --env staging --timeout 3
  run calls
  assert_line --partial "stop --timeout 3 worker | FEEDOPS_ENV=staging"
  assert_line --partial "down --timeout 3 | FEEDOPS_ENV=staging"
  refute_output --partial "--profile sim"
  assert_line --partial "--project-name feedops-staging --profile monitoring down"
}

@test "shutdown stops the worker first, then the stack; twice is fine" {
  run -0 "${RUNBOOK}" shutdown
  run -0 "${RUNBOOK}" shutdown
  run calls
  [ "${lines[0]%% |*}" != "${lines[1]%% |*}" ]
  assert_line --index 0 --partial "stop --timeout 60 worker"
  assert_line --index 1 --partial "down --timeout 60"
  DOCKER_STUB_FAIL=down run -72 "${RUNBOOK}" shutdown
}

@test "restart recreates the worker on the same profile; not ready exits NOT_READY (68)" {
  run -68 "${RUNBOOK}" restart --timeout 1
  run calls
  assert_line --partial "stop --timeout 1 worker"
  assert_line --partial "up --detach --no-deps --force-recreate worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=latest FEEDOPS_ACTIVE_PROFILE=primary"
}

@test "failover --to backup: the worker is recreated on backup; not ready exits FAILOVER_FAILED (70)" {
  run -70 "${RUNBOOK}" failover --to backup --timeout 1
  run calls
  assert_line --partial "--force-recreate worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=latest FEEDOPS_ACTIVE_PROFILE=backup"
  run -0 "${RUNBOOK}" status
  assert_output --partial "profile        backup"
  assert_output --regexp "failover +FAILOVER_FAILED +exit 70"
}

@test "rollback redeploys the last-known-good image tag with its config snapshot" {
  seed_last_good v1.4.1
  start_fake_worker
  # today's release is v1.5.0 with a bad setting in the environment
  FEEDOPS_IMAGE_TAG=v1.5.0 FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS=9 run -71 "${RUNBOOK}" rollback --timeout 1
  run calls
  assert_line --partial "pull worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.4.1"
  assert_line --partial "--force-recreate worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.4.1"
  assert_line --partial "release_env=${FEEDOPS_STATE_DIR}/release.env"
  # the snapshot (not the bad environment) is what compose hands to the containers
  run grep -c '^FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS=0.2$' "${FEEDOPS_STATE_DIR}/release.env"
  assert_output 1
  run grep -E 'PASSWORD|AUTH_CODE' "${FEEDOPS_STATE_DIR}/release.env"
  assert_failure
}

@test "rollback --to TAG deploys that tag; a failed pull exits ROLLBACK_FAILED (71)" {
  seed_last_good v1.4.1
  DOCKER_STUB_FAIL=pull run -71 "${RUNBOOK}" rollback --to v1.3.9 --timeout 1
  assert_output --partial "cannot pull ghcr.io/feedops/feedops:v1.3.9"
  run calls
  assert_line --partial "pull worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.3.9"
}

@test "status lists the compose services" {
  run -0 "${RUNBOOK}" status
  assert_output --partial "runtime compose"
  run calls
  assert_line --partial "--project-name feedops-dev --profile sim ps |"
}

@test "drill kills the active front's sim service; not ready exits NOT_READY (68) before it" {
  run -68 "${RUNBOOK}" drill --timeout 1
  run -64 "${RUNBOOK}" drill --env staging
  assert_output --partial "drill runs on the simulator only"
}

@test "rotate: new secrets that do not recover exit ROTATION_FAILED (75); the old ones are restored" {
  local fresh="${BATS_TEST_TMPDIR}/rotated"
  cp -r "${FEEDOPS_SECRETS_DIR}" "${fresh}"
  run -75 "${RUNBOOK}" rotate --secrets-dir "${fresh}" --timeout 1
  assert_output --partial "restoring the previous ones"
  run calls
  [ "$(grep -c -- '--force-recreate worker' <<< "${output}")" -eq 2 ]
  run -0 "${RUNBOOK}" status
  assert_output --partial "pinned config  none"
}

@test "rotate: a secrets dir that fails validation exits VALIDATION_FAILED (66); nothing changes" {
  local empty="${BATS_TEST_TMPDIR}/empty"
  mkdir -p "${empty}"
  run -66 "${RUNBOOK}" rotate --secrets-dir "${empty}" --timeout 1
  run calls
  refute_output --partial "force-recreate"
}
