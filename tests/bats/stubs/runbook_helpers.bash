# shellcheck shell=bash
# Shared setup for tests/bats/start_live_env*.bats: a private state dir, dev secrets
# with a sentinel value, free loopback ports, the stub docker on PATH.

# shellcheck disable=SC2034  # RUNBOOK and SENTINEL are used by the .bats files
RUNBOOK_ROOT="$(cd "${BATS_TEST_DIRNAME}/../.." && pwd -P)"
RUNBOOK="${RUNBOOK_ROOT}/scripts/operations/start_live_env.sh"
RUNBOOK_PY="${RUNBOOK_ROOT}/.venv/bin/python"
SENTINEL="s3ntinel9f2c"  # short: CTP auth codes are at most 16 characters

bats_load_library bats-support
bats_load_library bats-assert

free_port() {
  "${RUNBOOK_PY}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Isolated environment: nothing touches var/ of the checkout or a running dev stack.
runbook_setup() {
  export FEEDOPS_STATE_DIR="${BATS_TEST_TMPDIR}/state"
  export FEEDOPS_SECRETS_DIR="${BATS_TEST_TMPDIR}/secrets"
  mkdir -p "${FEEDOPS_SECRETS_DIR}"
  local var
  for var in CTP_PRIMARY_PASSWORD CTP_PRIMARY_AUTH_CODE CTP_BACKUP_PASSWORD CTP_BACKUP_AUTH_CODE; do
    printf '%s%s' "${SENTINEL}" "${var:4:1}${var: -1}" > "${FEEDOPS_SECRETS_DIR}/${var}"
  done
  chmod 700 "${FEEDOPS_SECRETS_DIR}"
  local p1 p2 w
  p1="$(free_port)"; p2="$(free_port)"; w="$(free_port)"
  export CTP_PRIMARY_MD_FRONTS="tcp://127.0.0.1:${p1}" CTP_PRIMARY_TD_FRONTS="tcp://127.0.0.1:${p1}"
  export CTP_BACKUP_MD_FRONTS="tcp://127.0.0.1:${p2}" CTP_BACKUP_TD_FRONTS="tcp://127.0.0.1:${p2}"
  export FEEDOPS_WORKER_LISTEN="127.0.0.1:${w}" FEEDOPS_WORKER_URLS="http://127.0.0.1:${w}"
  export FEEDOPS_SINK_URL="file:${BATS_TEST_TMPDIR}/feed" FEEDOPS_FLOW_DIR="${BATS_TEST_TMPDIR}/flow"
  export FEEDOPS_CACHE_DIR="${BATS_TEST_TMPDIR}/cache"
  export FEEDOPS_LOG_FORMAT=json
  # staging/prod env files enable Pushgateway at a compose service name: never reach for it;
  # dev enables the native monitoring stack on fixed ports: not in these tests
  export FEEDOPS_PUSHGATEWAY_ENABLED=false FEEDOPS_PROMETHEUS_ENABLED=false FEEDOPS_ALERTMANAGER_ENABLED=false
  export DOCKER_STUB_LOG="${BATS_TEST_TMPDIR}/docker.calls"
  : > "${DOCKER_STUB_LOG}"
  export PATH="${RUNBOOK_ROOT}/tests/bats/stubs:${PATH}"
}

# Stop every native component a test left behind (by pid file, never by name).
runbook_teardown() {
  [[ -d "${FEEDOPS_STATE_DIR:-}/pids" ]] || return 0
  "${RUNBOOK_PY}" -m feedops.runbook --runtime native stop --kind all --timeout 5 >/dev/null 2>&1 || true
}
