#!/usr/bin/env bats
# start_live_env.sh without servers: usage, --dry-run of every mode, the lock, and the
# exit codes that need no running feed (validation, state, rollback, shutdown, deps).

bats_require_minimum_version 1.5.0
load stubs/runbook_helpers

setup() {
  runbook_setup
}

teardown() {
  runbook_teardown
}

@test "--help prints the modes and exits 0" {
  run -0 "${RUNBOOK}" --help
  assert_output --partial "Usage: start_live_env.sh MODE"
  for mode in premarket restart shutdown failover rollback status drill rotate; do
    assert_output --partial "  ${mode}"
  done
}

@test "usage errors exit USAGE (64) with one line naming the argument" {
  run -64 "${RUNBOOK}"
  assert_output --partial "a MODE is required"
  run -64 "${RUNBOOK}" launch
  assert_output --partial "unknown mode 'launch'"
  run -64 "${RUNBOOK}" premarket --fast
  assert_output --partial "unknown option '--fast'"
  run -64 "${RUNBOOK}" failover
  assert_output --partial "failover needs --to primary or --to backup"
  run -64 "${RUNBOOK}" failover --to tertiary
  assert_output --partial "--to backup"
  run -64 "${RUNBOOK}" premarket --timeout soon
  assert_output --partial "--timeout must be a whole number"
  run -64 "${RUNBOOK}" premarket --env qa
  assert_output --partial "--env must be dev, staging or prod (got 'qa')"
  run -64 "${RUNBOOK}" premarket --runtime k8s
  assert_output --partial "--runtime must be auto, native or compose"
  run -64 "${RUNBOOK}" rotate
  assert_output --partial "rotate needs --secrets-dir DIR"
  run -64 "${RUNBOOK}" rollback --to 'bad tag!'
  assert_output --partial "rollback --to must be a release id, TAG, TAG@sha256:..., sha256:... or previous"
  run -64 "${RUNBOOK}" restart --to backup
  assert_output --partial "--to is only for failover and rollback"
  refute_output --partial "Traceback"
  [ "$(grep -c . <<< "${output}")" -eq 1 ]
}

@test "--dry-run of every mode prints the plan and changes nothing" {
  local mode
  for mode in premarket restart shutdown "failover --to backup" status drill "rotate --secrets-dir ${FEEDOPS_SECRETS_DIR}"; do
    # shellcheck disable=SC2086
    run -0 "${RUNBOOK}" ${mode} --dry-run --runtime native
    [[ "${mode}" == status ]] || assert_output --partial "plan: "
  done
  run -0 "${RUNBOOK}" premarket --dry-run --runtime native
  assert_output --partial "plan: validate the configuration"
  assert_output --partial "validate_env.py --env dev"
  assert_output --partial "start-stack --timeout 60"
  assert_output --partial "wait-ready --timeout 60"
  assert_output --partial "check_feed_health.py --env dev --format text"
  assert_output --partial "mark-good --mode premarket"
  [ ! -e "${FEEDOPS_STATE_DIR}/pids" ]
  [ ! -e "${FEEDOPS_STATE_DIR}/runs" ]
  [ ! -e "${FEEDOPS_STATE_DIR}/active-profile.json" ]
  [ ! -e "${FEEDOPS_STATE_DIR}/runbook.lock" ]
}

@test "rollback --dry-run names the release it would deploy, or that there is none" {
  run -71 "${RUNBOOK}" rollback --dry-run --runtime native
  assert_output --partial "no release recorded in the ledger"
  FEEDOPS_IMAGE_TAG=v1.4.1 "${RUNBOOK_PY}" -m feedops.runbook mark-good --mode premarket >/dev/null
  run -0 "${RUNBOOK}" rollback --dry-run --runtime native
  assert_output --regexp "rollback \(dry-run\): RELEASE=[0-9a-f]{12} TAG=v1.4.1 IMAGE_REF=ghcr.io/feedops/feedops:v1.4.1 REVISION=[0-9a-f]* PROFILE=primary SNAPSHOT="
  assert_output --partial "plan: start the worker(s) on profile primary"
  [ ! -e "${FEEDOPS_STATE_DIR}/pin.json" ]
  [ ! -e "${FEEDOPS_STATE_DIR}/runs/rollback.last.json" ]
}

@test "a run holding the flock makes a second run exit LOCK_HELD (65) naming the holder" {
  mkdir -p "${FEEDOPS_STATE_DIR}"
  local ready="${BATS_TEST_TMPDIR}/held"
  # hold the flock as a run does, with the holder line in the file
  # shellcheck disable=SC2016  # the inner sh expands them
  flock "${FEEDOPS_STATE_DIR}/runbook.lock" sh -c 'printf "pid=%s mode=premarket started=x\n" "$$" > "$1"; echo "$$" > "$2"; exec sleep 300' \
    sh "${FEEDOPS_STATE_DIR}/runbook.lock" "${ready}" &
  local flocker=$! i
  for (( i = 0; i < 300; i++ )); do [[ -s ${ready} ]] && break; sleep 0.1; done
  [ -s "${ready}" ]
  run "${RUNBOOK}" shutdown --runtime native
  kill "$(cat "${ready}")"  # by pid, before any assertion can fail
  wait "${flocker}" || true
  [ "${status}" -eq 65 ]
  assert_output --partial "another run holds the lock"
  assert_output --partial "mode=premarket"
}

@test "a second run exits LOCK_HELD (65) and names the holder" {
  mkdir -p "${FEEDOPS_STATE_DIR}"
  sleep 300 &
  local holder=$!
  printf 'pid=%s mode=premarket started=2026-11-27T00:00:00Z\n' "${holder}" > "${FEEDOPS_STATE_DIR}/runbook.lock"
  run -65 "${RUNBOOK}" shutdown --runtime native
  kill "${holder}"
  assert_output --partial "pid=${holder} mode=premarket"
  # the holder's lock is left alone
  run grep -c "pid=${holder}" "${FEEDOPS_STATE_DIR}/runbook.lock"
  assert_output 1
}

@test "a stale lock of a dead run is taken over; the lock is released at the end" {
  mkdir -p "${FEEDOPS_STATE_DIR}"
  printf 'pid=999999 mode=restart started=2026-11-27T00:00:00Z\n' > "${FEEDOPS_STATE_DIR}/runbook.lock"
  run -0 "${RUNBOOK}" shutdown --runtime native
  assert_output --partial "runbook.lock.stale"
  [ ! -e "${FEEDOPS_STATE_DIR}/runbook.lock" ]
}

@test "shutdown on nothing is safe, and status shows the runs" {
  run -0 "${RUNBOOK}" shutdown --runtime native
  run -0 "${RUNBOOK}" status --runtime native
  assert_output --partial "profile        primary"
  assert_output --partial "processes:"
  assert_output --regexp "shutdown +OK +exit 0"
  refute_output --partial "${SENTINEL}"
}

@test "invalid settings exit VALIDATION_FAILED (66) naming the setting; nothing starts" {
  FEEDOPS_SUBSCRIBE_BATCH_SIZE=5000 run -66 "${RUNBOOK}" premarket --runtime native
  assert_output --partial "FEEDOPS_SUBSCRIBE_BATCH_SIZE"
  assert_output --partial "fix: set FEEDOPS_SUBSCRIBE_BATCH_SIZE to 1000 or less"
  [ ! -e "${FEEDOPS_STATE_DIR}/pids" ]
}

@test "a corrupt state file exits STATE_CORRUPT (73) and is not trusted" {
  mkdir -p "${FEEDOPS_STATE_DIR}"
  echo '{"profile": "backup"' > "${FEEDOPS_STATE_DIR}/active-profile.json"
  run -73 "${RUNBOOK}" status --runtime native
  assert_output --partial "active-profile.json is corrupt"
  echo '{"profile": "tertiary"}' > "${FEEDOPS_STATE_DIR}/active-profile.json"
  run -73 "${RUNBOOK}" restart --runtime native
  assert_output --partial "neither primary nor backup"
}

@test "rollback without a recorded release exits ROLLBACK_FAILED (71)" {
  run -71 "${RUNBOOK}" rollback --runtime native --timeout 2
  assert_output --partial "no release recorded in the ledger"
  run cat "${FEEDOPS_STATE_DIR}/runs/rollback.last.json"
  assert_output --partial '"outcome": "ROLLBACK_FAILED"'
}

@test "native rollback: a missing snapshot (71), a corrupt one (73), --to a tag never recorded (71); nothing stops" {
  local tag
  for tag in v1.4.1 v1.5.0; do
    FEEDOPS_IMAGE_TAG=${tag} "${RUNBOOK_PY}" -m feedops.runbook mark-good --mode premarket >/dev/null
  done
  export FEEDOPS_IMAGE_TAG=v1.5.0
  local snap
  snap="$("${RUNBOOK_PY}" -c 'import json, sys; print(json.load(open(sys.argv[1]))["entries"][0]["snapshot"])' \
    "${FEEDOPS_STATE_DIR}/ledger.json")"
  echo '{"id": ' > "${FEEDOPS_STATE_DIR}/snapshots/${snap}.json"
  run -73 "${RUNBOOK}" rollback --runtime native --timeout 2
  assert_output --partial "${snap}.json is corrupt"
  rm "${FEEDOPS_STATE_DIR}/snapshots/${snap}.json"
  run -71 "${RUNBOOK}" rollback --runtime native --timeout 2
  assert_output --partial "configuration snapshot ${snap} of release"
  run -71 "${RUNBOOK}" rollback --to v1.3.9 --runtime native --timeout 2
  assert_output --partial "no recorded release matches 'v1.3.9'"
  refute_output --partial "runbook.component.stopping"
  refute_output --partial "stop the worker"
  [ ! -e "${FEEDOPS_STATE_DIR}/pin.json" ]
}

@test "a component that ignores SIGTERM makes shutdown exit SHUTDOWN_FAILED (72), killed anyway" {
  mkdir -p "${FEEDOPS_STATE_DIR}/pids"
  setsid bash -c 'trap "" TERM; while :; do sleep 0.1; done' </dev/null >/dev/null 2>&1 &
  local pid=$! ticks
  ticks="$(awk '{print $22}' "/proc/${pid}/stat")"
  printf '{"pid": %s, "start_ticks": %s, "kind": "worker", "address": "127.0.0.1:1"}\n' "${pid}" "${ticks}" \
    > "${FEEDOPS_STATE_DIR}/pids/worker-0.pid"
  run -72 "${RUNBOOK}" shutdown --runtime native --timeout 1
  assert_output --partial "did not stop within 1s"
  assert_output --partial "threads' stacks are in"
  run ! kill -0 "${pid}" 2>/dev/null
  [ ! -e "${FEEDOPS_STATE_DIR}/pids/worker-0.pid" ]
}

@test "a pid file of a recycled pid is not trusted: the process is left alone" {
  mkdir -p "${FEEDOPS_STATE_DIR}/pids"
  sleep 300 &
  local pid=$!
  printf '{"pid": %s, "start_ticks": 1, "kind": "worker"}\n' "${pid}" > "${FEEDOPS_STATE_DIR}/pids/worker-0.pid"
  run -0 "${RUNBOOK}" shutdown --runtime native
  kill -0 "${pid}"
  kill "${pid}"
}

@test "the compose runtime without docker exits DEPENDENCY_MISSING (74)" {
  local bin="${BATS_TEST_TMPDIR}/bin"
  mkdir -p "${bin}"
  ln -s "$(command -v date)" "${bin}/date"
  ln -s "$(command -v sed)" "${bin}/sed"
  ln -s "$(command -v grep)" "${bin}/grep"
  ln -s "$(command -v tr)" "${bin}/tr"
  ln -s "$(command -v cat)" "${bin}/cat"
  ln -s "$(command -v mkdir)" "${bin}/mkdir"
  ln -s "$(command -v rm)" "${bin}/rm"
  ln -s "$(command -v dirname)" "${bin}/dirname"
  ln -s "$(command -v flock)" "${bin}/flock"
  PATH="${bin}" run -74 /bin/bash "${RUNBOOK}" shutdown --runtime compose
  assert_output --partial "needs the docker CLI with compose v2"
}

@test "log lines are JSON in the shared shape and never carry a secret" {
  run -0 "${RUNBOOK}" shutdown --runtime native
  grep '^{' <<< "${output}" | "${RUNBOOK_PY}" -c 'import json, sys, jsonschema, pathlib
schema = json.loads(pathlib.Path(sys.argv[1]).read_text())
lines = [json.loads(line) for line in sys.stdin]
assert len(lines) >= 3, lines
for line in lines:
    jsonschema.validate(line, schema)' "${RUNBOOK_ROOT}/lib/feedops/schemas/log-line.schema.json"
  assert_output --partial '"event":"runbook.start"'
  refute_output --partial "${SENTINEL}"
  run grep -rF "${SENTINEL}" "${FEEDOPS_STATE_DIR}"
  assert_failure
}

@test "a front port already in use exits START_FAILED (67); nothing is left running" {
  [[ -f "${RUNBOOK_ROOT}/scripts/operations/ctp_sim.py" ]] || skip "ctp_sim.py is not there yet"
  local port=${CTP_PRIMARY_MD_FRONTS##*:}
  "${RUNBOOK_PY}" -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); print("bound", flush=True); time.sleep(60)' "${port}" \
    > "${BATS_TEST_TMPDIR}/squatter.out" &
  local squatter=$!
  local _
  for _ in {1..200}; do
    grep -q bound "${BATS_TEST_TMPDIR}/squatter.out" && break
    kill -0 "${squatter}" 2>/dev/null || break
    sleep 0.05
  done
  grep -q bound "${BATS_TEST_TMPDIR}/squatter.out" || { kill "${squatter}" 2>/dev/null; fail "the squatter did not bind ${port}"; }
  run -67 "${RUNBOOK}" premarket --runtime native --timeout 20
  kill "${squatter}"
  assert_output --partial "(sim-primary) is already in use by a process the runbook did not start"
  assert_output --partial "runbook.cleanup"
  run compgen -G "${FEEDOPS_STATE_DIR}/pids/*.pid"
  assert_failure
}
