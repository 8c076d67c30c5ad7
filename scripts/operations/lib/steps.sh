# shellcheck shell=bash
# The runbook's steps, shared by every mode. Each step logs, honours --dry-run and
# ends the run with the documented exit code when it fails (the caller may pass the
# code its mode uses instead, e.g. FAILOVER_FAILED for a readiness timeout).

[[ -n "${__FEEDOPS_STEPS_SH:-}" ]] && return 0
readonly __FEEDOPS_STEPS_SH=1

readonly FEEDOPS_OPS_DIR="${FEEDOPS_ROOT}/scripts/operations"

# Fail with DEPENDENCY_MISSING unless the CLI scripts/operations/SCRIPT is present. Arguments: SCRIPT
feedops::step::require() {
  [[ -f "${FEEDOPS_OPS_DIR}/$1" ]] && return 0
  (( FEEDOPS_DRY_RUN )) && { feedops::log::warning runbook.dependency "${FEEDOPS_OPS_DIR}/$1 is missing"; return 0; }
  feedops::fail "${EXIT_DEPENDENCY_MISSING}" "${FEEDOPS_OPS_DIR}/$1 is missing; update the checkout"
}

#######################################
# validate_env.py with the effective configuration; warnings continue.
# Arguments: [VAR=VALUE ...]  (settings for this check only, e.g. a new secrets directory)
#######################################
feedops::step::validate() {
  feedops::step::require validate_env.py
  local rc=0
  feedops::act "validate the configuration" feedops::cli "$@" validate_env.py --env "${FEEDOPS_CFG[ENV]}" || rc=$?
  case ${rc} in
    "${CHECK_OK}") ;;
    "${CHECK_WARNING}") feedops::log::warning runbook.validate.warning "validation passed with warnings (see above)" ;;
    "${CHECK_UNKNOWN}") feedops::fail "${EXIT_VALIDATION_FAILED}" "validate_env.py could not run (exit ${rc}); nothing was started" ;;
    *) feedops::fail "${EXIT_VALIDATION_FAILED}" "validation failed (exit ${rc}); fix the settings it names; nothing was started" ;;
  esac
}

# Start the monitoring first (native), so that validate_env's outcome reaches its Pushgateway
# and a failed validation can alert. Never fails the run: the feed does not wait for its watch.
feedops::step::start_monitoring() {
  [[ ${FEEDOPS_CFG[RUNTIME]} == native ]] || return 0
  local rc=0
  feedops::act "start the monitoring (native)" feedops::runtime::start_monitoring || rc=$?
  (( rc == 0 )) || feedops::log::warning runbook.monitoring.failed "the monitoring did not start (exit ${rc}); continuing without it"
}

# Start the stack (sims, Redis, monitoring). Fails with START_FAILED.
feedops::step::start_stack() {
  [[ ${FEEDOPS_CFG[RUNTIME]} != native || -z ${FEEDOPS_CFG[SIM_PROFILES]} ]] || feedops::step::require ctp_sim.py
  local rc=0
  feedops::act "start the stack (${FEEDOPS_CFG[RUNTIME]})" feedops::runtime::start_stack || rc=$?
  (( rc == 0 )) || feedops::fail "${rc}" "the stack did not start"
}

# Start the worker(s). Arguments: [--recreate]
feedops::step::start_workers() {
  feedops::step::require full_feed_subscription.py
  local rc=0
  feedops::act "start the worker(s) on profile ${FEEDOPS_CFG[PROFILE]}" feedops::runtime::start_workers "$@" || rc=$?
  (( rc == 0 )) || feedops::fail "${EXIT_START_FAILED}" "the worker(s) did not start"
}

# Stop the worker(s); one that had to be killed is a warning (the restart goes on).
feedops::step::stop_workers() {
  local rc=0
  feedops::act "stop the worker(s) (drain and flush)" feedops::runtime::stop_workers || rc=$?
  (( rc == 0 )) && return 0
  feedops::log::warning runbook.stop.slow "the worker(s) did not stop cleanly (exit ${rc}); continuing"
}

#######################################
# Wait, with progress lines, until every worker is ready.
# Arguments: FAILURE_CODE (used for a timeout) [--expect-profile P]
#######################################
feedops::step::wait_ready() {
  local code=$1 rc=0
  shift
  feedops::act "wait for readiness (timeout ${FEEDOPS_TIMEOUT}s)" feedops::runtime::wait_ready "$@" || rc=$?
  (( rc == 0 )) && return 0
  (( rc == EXIT_START_FAILED )) || rc=${code}
  feedops::fail "${rc}" "the worker(s) did not become ready (see the progress lines above)"
}

#######################################
# check_feed_health.py on the running feed; prints its summary. Warnings continue.
# Arguments: FAILURE_CODE
#######################################
feedops::step::health() {
  feedops::step::require check_feed_health.py
  local code=$1 rc=0
  feedops::act "check the feed's health" feedops::runtime::health || rc=$?
  case ${rc} in
    "${CHECK_OK}") ;;
    "${CHECK_WARNING}") feedops::log::warning runbook.health.warning "the feed is up with warnings (see the summary)" ;;
    "${CHECK_CRITICAL}") feedops::fail "${code}" "the health check reported CRITICAL (exit ${rc})" ;;
    *) feedops::fail "${code}" "the health check reported UNKNOWN or could not run (exit ${rc})" ;;
  esac
}

# Recover the worker(s): start, wait for ready, check health. Arguments: FAILURE_CODE [--expect-profile P]
# Returns: the failed step's exit code (explicitly, for callers that run it where errexit is off)
feedops::step::recover() {
  local code=$1
  shift
  feedops::step::start_workers --recreate || return
  feedops::step::wait_ready "${code}" "$@" || return
  feedops::step::health "${code}"
}
