# shellcheck shell=bash
# The two runtimes behind the same runbook steps:
#   native:  processes with pid files and log files under FEEDOPS_STATE_DIR (python helper)
#   compose: docker compose with the project's one docker-compose.yml, image by tag
# Every function dispatches on FEEDOPS_CFG[RUNTIME].

[[ -n "${__FEEDOPS_RUNTIME_SH:-}" ]] && return 0
readonly __FEEDOPS_RUNTIME_SH=1

# The `*)` branch of every dispatch: only native and compose exist (the Python `config` step
# resolves auto), so anything else is a bug. Stops the run loudly, naming the function.
feedops::runtime::unknown() {
  feedops::fail "${EXIT_USAGE}" "unknown runtime '${FEEDOPS_CFG[RUNTIME]:-}' in ${FUNCNAME[1]}: use --runtime native or compose"
}

#######################################
# docker compose with the project file, the environment's env file, its profiles
# and the image tag; the pin (rollback, rotation) is handed over as release.env
# (written by the helper's `config` step, see feedops::config::load).
# Globals: FEEDOPS_CFG
# Arguments: compose arguments
#######################################
feedops::compose() {
  command -v docker >/dev/null 2>&1 \
    || feedops::fail "${EXIT_DEPENDENCY_MISSING}" "the compose runtime needs the docker CLI with compose v2; install it or use --runtime native"
  local -a profiles=()
  local p
  for p in ${FEEDOPS_CFG[COMPOSE_PROFILES]}; do profiles+=(--profile "${p}"); done
  feedops::run env FEEDOPS_ENV="${FEEDOPS_CFG[ENV]}" FEEDOPS_IMAGE="${FEEDOPS_CFG[IMAGE]}" FEEDOPS_IMAGE_TAG="${FEEDOPS_CFG[IMAGE_TAG]}" \
    FEEDOPS_IMAGE_REF="${FEEDOPS_CFG[IMAGE_REF]}" \
    FEEDOPS_ACTIVE_PROFILE="${FEEDOPS_CFG[PROFILE]}" FEEDOPS_RELEASE_ENV_FILE="${FEEDOPS_CFG[RELEASE_ENV]}" \
    FEEDOPS_STATE_DIR="${FEEDOPS_CFG[STATE_DIR]}" FEEDOPS_GID="$(id -g)" \
    docker compose --project-directory "${FEEDOPS_ROOT}" --file "${FEEDOPS_ROOT}/docker-compose.yml" \
    --project-name "feedops-${FEEDOPS_CFG[ENV]}" "${profiles[@]}" "$@"
}

# Start what the workers need: native starts the ctp-sim fronts (channel sim) only;
# compose starts every service of the active profiles (Redis, monitoring, ctp-sim).
feedops::runtime::start_stack() {
  case ${FEEDOPS_CFG[RUNTIME]} in
    native) feedops::py::act start-stack --timeout "${FEEDOPS_TIMEOUT}" ;;
    compose) feedops::runtime::render_alertmanager || return "${EXIT_START_FAILED}"
             feedops::compose up --detach --wait --wait-timeout "${FEEDOPS_TIMEOUT%.*}" --scale worker=0 \
               || return "${EXIT_START_FAILED}" ;;
    *) feedops::runtime::unknown ;;
  esac
}

# compose, monitoring profile: render Alertmanager's configuration from the effective settings
# (it expands no variables) into <state>/alertmanager/, the directory its service mounts.
feedops::runtime::render_alertmanager() {
  [[ " ${FEEDOPS_CFG[COMPOSE_PROFILES]} " == *" monitoring "* ]] || return 0
  feedops::run env "${FEEDOPS_CHILD_ENV[@]}" "${FEEDOPS_PY}" -m feedops.monitoring.alertmanager render \
    --out "${FEEDOPS_CFG[STATE_DIR]}/alertmanager/alertmanager.yml" --env "${FEEDOPS_CFG[ENV]}" --group-readable --container
}

# Start the monitoring (native: Prometheus, Alertmanager, Pushgateway, redis-exporter when
# enabled and installed; compose starts it with the stack, under the monitoring profile).
feedops::runtime::start_monitoring() {
  case ${FEEDOPS_CFG[RUNTIME]} in
    native) feedops::py::act start-monitoring --timeout "${FEEDOPS_TIMEOUT}" ;;
    compose) return 0 ;;
    *) feedops::runtime::unknown ;;
  esac
}

# Start the worker(s) on the active profile. Arguments: [--recreate]
feedops::runtime::start_workers() {
  case ${FEEDOPS_CFG[RUNTIME]} in
    native) feedops::py::act start-workers ;;
    compose)
      local -a recreate=()
      [[ "${1:-}" == --recreate ]] && recreate=(--force-recreate)
      feedops::compose up --detach --no-deps "${recreate[@]}" worker || return "${EXIT_START_FAILED}" ;;
    *) feedops::runtime::unknown ;;
  esac
}

# Stop the worker(s): SIGTERM, they drain the queue and flush the sink.
feedops::runtime::stop_workers() {
  case ${FEEDOPS_CFG[RUNTIME]} in
    native) feedops::py::act stop --kind worker --timeout "${FEEDOPS_TIMEOUT}" ;;
    compose) feedops::compose stop --timeout "${FEEDOPS_TIMEOUT}" worker || return "${EXIT_SHUTDOWN_FAILED}" ;;
    *) feedops::runtime::unknown ;;
  esac
}

# Stop everything else; named volumes (Prometheus, Grafana data) are kept.
feedops::runtime::stop_stack() {
  case ${FEEDOPS_CFG[RUNTIME]} in
    native) feedops::py::act stop --kind all --timeout "${FEEDOPS_TIMEOUT}" ;;
    compose) feedops::compose down --timeout "${FEEDOPS_TIMEOUT}" || return "${EXIT_SHUTDOWN_FAILED}" ;;
    *) feedops::runtime::unknown ;;
  esac
}

# Controlled stop of everything: worker(s) first (drain, flush), then the stack.
feedops::runtime::shutdown() {
  case ${FEEDOPS_CFG[RUNTIME]} in
    native) feedops::runtime::stop_stack ;;  # the helper stops workers before the fronts
    compose) feedops::runtime::stop_workers && feedops::runtime::stop_stack ;;
    *) feedops::runtime::unknown ;;
  esac
}

# Kill the ctp-sim front of a profile (failover drill). Arguments: PROFILE
feedops::runtime::kill_front() {
  case ${FEEDOPS_CFG[RUNTIME]} in
    native) feedops::py::act stop --name "sim-$1" --kill --timeout 5 ;;
    compose) feedops::compose kill "ctp-sim-$1" || return "${EXIT_START_FAILED}" ;;
    *) feedops::runtime::unknown ;;
  esac
}

# Wait for the worker(s) to be ready; compose checks from inside the project network.
# Arguments: [--expect-profile P]
feedops::runtime::wait_ready() {
  case ${FEEDOPS_CFG[RUNTIME]} in
    native) feedops::py::act wait-ready --timeout "${FEEDOPS_TIMEOUT}" "$@" ;;
    compose) feedops::compose exec -T worker python -m feedops.runbook --runtime compose \
               wait-ready --timeout "${FEEDOPS_TIMEOUT}" "$@" ;;
    *) feedops::runtime::unknown ;;
  esac
}

#######################################
# check_feed_health.py against the running worker(s), in the runtime.
# Arguments: exec|run CHECKER_ARGS...  (compose: exec = inside the running worker container;
#   run = a one-off container on the project's network, which reports and pushes even when
#   the worker is down; native runs the venv's CLI either way)
#######################################
feedops::runtime::check_health() {
  local -a how=(exec -T)
  [[ $1 == run ]] && how=(run --rm --no-deps -T)
  shift
  case ${FEEDOPS_CFG[RUNTIME]} in
    native) feedops::cli check_feed_health.py --env "${FEEDOPS_CFG[ENV]}" "$@" ;;
    compose) feedops::compose "${how[@]}" worker python scripts/operations/check_feed_health.py \
               --env "${FEEDOPS_CFG[ENV]}" "$@" ;;
    *) feedops::runtime::unknown ;;
  esac
}

# The runbook's verification after a start: text summary on stdout, pre-market not judged.
feedops::runtime::health() {
  feedops::runtime::check_health exec --format text --no-premarket
}

# What runs (compose only; the native table is part of the helper's status).
feedops::runtime::status() {
  [[ ${FEEDOPS_CFG[RUNTIME]} == compose ]] || return 0
  feedops::compose ps || feedops::log::warning runbook.status.compose "docker compose ps failed (is the engine up?)"
}
