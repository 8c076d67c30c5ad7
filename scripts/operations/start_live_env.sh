#!/usr/bin/env bash
# start_live_env.sh: the feedops runbook. Starts, restarts, stops, fails over and
# rolls back the market-data feed; thin orchestration over the Python tools
# (validate_env.py, full_feed_subscription.py, check_feed_health.py and the helpers
# in lib/feedops/runbook). Every step is a JSON log line on stderr (lib/log.sh);
# reports and progress go to stdout.
#
# Usage: start_live_env.sh MODE [--env dev|staging|prod] [--runtime auto|native|compose]
#                               [--timeout SECONDS] [--dry-run] [--scheduled] [MODE OPTIONS]
#   premarket [--unpin]          monitoring -> validate -> stack -> worker(s) -> ready -> health -> last-known-good
#   restart                      restart the worker(s) on the same profile and verify
#   shutdown                     workers drain and flush, then the stack stops (safe twice)
#   health [--format F]          one health check in the runtime (compose: a one-off container); it pushes
#                                its own verdict (no lock, not recorded as a run); F: nagios (default), text, json
#   failover --to primary|backup switch the credential profile, restart, verify, record
#   rollback [--to RELEASE]      the release before the running one (image + revision + config snapshot);
#                                RELEASE: previous (default), a release id, TAG, TAG@sha256:... or sha256:...
#   status                       what runs, profile, image tag, recorded releases, last runs (no lock)
#   drill                        failover drill on ctp-sim with the reference consumer attached: kill the
#                                active front, fail over, verify, fail back, verify; prints and pushes a JSON
#                                report (recovery time, ticks missed, duplicates, consumer lag)
#   rotate --secrets-dir DIR     credential rotation; the previous credentials come back on failure
#   --scheduled                  premarket, shutdown, drill started by a timer (deploy/): the calendar decides
#                                first: skip (exit 0, recorded SKIPPED) on a day without the session, refuse
#                                (76) after the session opened (premarket) or while one is open (shutdown, drill)
#
# Exit codes (lib/feedops/exitcodes.py, docs/ops/exit-codes.md):
#   0 OK                  the mode completed
#   64 USAGE              unknown mode or option, bad option value
#   65 LOCK_HELD          another run holds the lock (the message names its pid and mode)
#   66 VALIDATION_FAILED  validate_env.py (or loading the settings) failed, or rotate: a new secret is shadowed by the environment
#   67 START_FAILED       a component did not start (stack, sim or worker)
#   68 NOT_READY          the worker(s) did not become ready within the timeout
#   69 HEALTH_FAILED      check_feed_health.py reported CRITICAL or UNKNOWN
#   70 FAILOVER_FAILED    the other profile did not recover within the timeout (failover, drill)
#   71 ROLLBACK_FAILED    no usable previous release/snapshot, or it did not recover
#   72 SHUTDOWN_FAILED    a component did not stop within the timeout
#   73 STATE_CORRUPT      a state file is corrupt or unreadable; it was not trusted (shutdown still stops what runs)
#   74 DEPENDENCY_MISSING a required tool (python venv, docker compose, a CLI) is missing
#   75 ROTATION_FAILED    the new credentials did not recover; the previous ones were restored
#   76 SCHEDULE_REFUSED   --scheduled: the session already opened (premarket) or one is open (shutdown, drill)
#   77 DRILL_FAILED       drill: it recovered, but the reference consumer saw duplicates, out-of-order ticks,
#                         gaps outside the outages, or a recovery beyond the target
#   130 INTERRUPTED       stopped by SIGINT (Ctrl-C); what this run started was cleaned up
#   143 TERMINATED        stopped by SIGTERM; what this run started was cleaned up

# shellcheck source=scripts/operations/lib/init.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/init.sh"

readonly MODES="premarket restart shutdown failover rollback status drill rotate health"
FEEDOPS_MODE=""
FEEDOPS_TIMEOUT=60
OPT_ENV=""
OPT_RUNTIME=""
OPT_TO=""
OPT_SECRETS_DIR=""
OPT_UNPIN=0
OPT_SCHEDULED=0
OPT_FORMAT=""
RUN_DETAIL=""
RUN_SKIPPED=0
RUN_STARTED_AT=0
CLEANUP_ON_FAILURE=0
DRILL_ATTACHED=0
DRILL_PROFILES=""

usage() {
  sed -n '/^# Usage:/,/^# Exit codes/p' "${BASH_SOURCE[0]}" | sed -e 's/^# \{0,1\}//' -e '$d'
}

usage_error() {
  feedops::fail "${EXIT_USAGE}" "$1 (see --help)"
}

# Parse MODE and options into the OPT_* globals. Arguments: "$@" of the script
parse_args() {
  (( $# )) || usage_error "a MODE is required: one of ${MODES// /, }"
  case $1 in -h|--help|help) usage; exit "${EXIT_OK}" ;; esac
  [[ " ${MODES} " == *" $1 "* ]] || usage_error "unknown mode '$1': use one of ${MODES// /, }"
  FEEDOPS_MODE=$1
  shift
  while (( $# )); do
    case $1 in
      --env|--runtime|--timeout|--to|--secrets-dir|--format) (( $# >= 2 )) || usage_error "$1 needs a value"; set_option "$1" "$2"; shift 2 ;;
      --env=*|--runtime=*|--timeout=*|--to=*|--secrets-dir=*|--format=*) set_option "${1%%=*}" "${1#*=}"; shift ;;
      --dry-run) FEEDOPS_DRY_RUN=1; shift ;;
      --scheduled) OPT_SCHEDULED=1; shift ;;
      --unpin) OPT_UNPIN=1; shift ;;
      -h|--help) usage; exit "${EXIT_OK}" ;;
      *) usage_error "unknown option '$1'" ;;
    esac
  done
  check_mode_options
}

# Store one option after checking its value. Arguments: OPTION VALUE
set_option() {
  case $1 in
    --env) [[ $2 =~ ^(dev|staging|prod)$ ]] || usage_error "--env must be dev, staging or prod (got '$2')"; OPT_ENV=$2 ;;
    --runtime) [[ $2 =~ ^(auto|native|compose)$ ]] || usage_error "--runtime must be auto, native or compose (got '$2')"
               OPT_RUNTIME=$2 ;;
    --timeout) [[ $2 =~ ^[1-9][0-9]*$ ]] || usage_error "--timeout must be a whole number of seconds > 0 (got '$2')"
               FEEDOPS_TIMEOUT=$2 ;;
    --to) OPT_TO=$2 ;;
    --format) [[ $2 =~ ^(nagios|text|json)$ ]] || usage_error "--format must be nagios, text or json (got '$2')"; OPT_FORMAT=$2 ;;
    --secrets-dir) [[ -d $2 ]] || usage_error "--secrets-dir '$2' is not a directory; give the directory holding the new secrets"
                   OPT_SECRETS_DIR="$(cd "$2" && pwd -P)" ;;
  esac
}

# Options that only some modes take, and the ones they require.
check_mode_options() {
  case ${FEEDOPS_MODE} in
    failover) [[ ${OPT_TO} =~ ^(primary|backup)$ ]] || usage_error "failover needs --to primary or --to backup" ;;
    rollback) [[ -z ${OPT_TO} || ${OPT_TO} =~ ^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,200}$ ]] \
                || usage_error "rollback --to must be a release id, TAG, TAG@sha256:..., sha256:... or previous (got '${OPT_TO}')"
              OPT_TO=${OPT_TO:-previous} ;;
    rotate) [[ -n ${OPT_SECRETS_DIR} ]] || usage_error "rotate needs --secrets-dir DIR (the directory with the new secrets)" ;;
    *) [[ -z ${OPT_TO} ]] || usage_error "--to is only for failover and rollback" ;;
  esac
  [[ ${FEEDOPS_MODE} == rotate || -z ${OPT_SECRETS_DIR} ]] || usage_error "--secrets-dir is only for rotate"
  [[ ${FEEDOPS_MODE} == premarket || ${OPT_UNPIN} == 0 ]] || usage_error "--unpin is only for premarket"
  [[ ${FEEDOPS_MODE} == health || -z ${OPT_FORMAT} ]] || usage_error "--format is only for health"
  [[ ${OPT_SCHEDULED} == 0 || ${FEEDOPS_MODE} =~ ^(premarket|shutdown|drill)$ ]] \
    || usage_error "--scheduled is only for premarket, shutdown and drill (the modes the timers start)"
}

# EXIT trap: clean up a failed start, record the outcome (state + Pushgateway), release the lock.
on_exit() {
  local rc=$?
  trap - INT TERM
  if (( rc != 0 && CLEANUP_ON_FAILURE )); then
    feedops::log::warning runbook.cleanup "the run failed: stopping what it started" mode="${FEEDOPS_MODE}"
    feedops::runtime::stop_stack >/dev/null || true
  fi
  if (( rc != 0 && DRILL_ATTACHED )); then  # a drill that failed half-way: its report, and the consumer stops
    DRILL_ATTACHED=0
    feedops::py drill report --rc "${rc}" --profiles "${DRILL_PROFILES}" || true
  fi
  local duration=$(( $(date +%s) - RUN_STARTED_AT ))
  local -a skipped=()
  (( RUN_SKIPPED )) && skipped=(--skipped)
  feedops::py record --mode "${FEEDOPS_MODE}" --rc "${rc}" --duration "${duration}" --detail "${RUN_DETAIL}" "${skipped[@]}" || true
  if (( rc == 0 && RUN_SKIPPED )); then
    feedops::log::info runbook.done "${FEEDOPS_MODE} skipped (recorded as SKIPPED)" mode="${FEEDOPS_MODE}" duration_seconds="${duration}"
  elif (( rc == 0 )); then
    feedops::log::info runbook.done "${FEEDOPS_MODE} completed" mode="${FEEDOPS_MODE}" duration_seconds="${duration}"
  else
    feedops::log::error runbook.done "${FEEDOPS_MODE} failed with exit code ${rc}" mode="${FEEDOPS_MODE}" exit_code="${rc}"
  fi
  feedops::lock::release
  exit "${rc}"
}

# --scheduled: the calendar decides whether this run acts (feedops.schedule, docs/ops/scheduling.md).
# A skip exits 0 and is recorded as SKIPPED (its push keeps "missing run" alerts quiet); a refusal
# exits SCHEDULE_REFUSED. The reason becomes the run's recorded detail.
schedule_gate() {
  local out rc=0 action
  out="$(feedops::py schedule-gate --mode "${FEEDOPS_MODE}")" || rc=$?
  RUN_DETAIL="$(sed -n 's/^REASON=//p' <<< "${out}")"
  action="$(sed -n 's/^ACTION=//p' <<< "${out}")"
  (( FEEDOPS_DRY_RUN )) && printf 'plan: scheduled %s: %s (%s)\n' "${FEEDOPS_MODE}" "${action:-error}" "${RUN_DETAIL}"
  case ${rc} in
    "${EXIT_OK}") ;;
    "${EXIT_SCHEDULE_REFUSED}") feedops::fail "${rc}" "scheduled ${FEEDOPS_MODE} refused: ${RUN_DETAIL}" ;;
    *) feedops::fail "${rc}" "cannot decide whether the scheduled ${FEEDOPS_MODE} acts (see the lines above)" ;;
  esac
  if [[ ${action} == skip ]]; then
    RUN_SKIPPED=1
    feedops::log::info runbook.scheduled.skip "scheduled ${FEEDOPS_MODE} skipped: ${RUN_DETAIL}" mode="${FEEDOPS_MODE}"
    exit "${EXIT_OK}"
  fi
  feedops::log::info runbook.scheduled.run "scheduled ${FEEDOPS_MODE} acts: ${RUN_DETAIL}" mode="${FEEDOPS_MODE}"
}

# ------------------------------------------------------------------ modes
mode_premarket() {
  if [[ -n ${FEEDOPS_CFG[PINNED]} ]]; then
    if (( OPT_UNPIN )); then
      feedops::act "remove the configuration pin (${FEEDOPS_CFG[PINNED]})" feedops::py::act unpin
      (( FEEDOPS_DRY_RUN )) || feedops::config::load
    else
      feedops::log::warning runbook.pinned "configuration pinned by ${FEEDOPS_CFG[PINNED]}; add --unpin to start on the current settings"
    fi
  fi
  local fresh=0
  if (( ! FEEDOPS_DRY_RUN )) && nothing_running; then fresh=1; fi
  feedops::step::start_monitoring  # first: validate_env pushes its outcome there
  feedops::step::validate
  CLEANUP_ON_FAILURE=${fresh}
  feedops::step::start_stack
  feedops::step::start_workers
  feedops::step::wait_ready "${EXIT_NOT_READY}"
  feedops::step::health "${EXIT_HEALTH_FAILED}"
  CLEANUP_ON_FAILURE=0
  feedops::act "record last-known-good" feedops::py::act mark-good --mode premarket
}

# True when no component of this environment runs (a failed premarket may then clean up).
nothing_running() {
  case ${FEEDOPS_CFG[RUNTIME]} in
    native) [[ -z "$(compgen -G "${FEEDOPS_CFG[STATE_DIR]}/pids/*.pid" || true)" ]] ;;
    compose) [[ -z "$(feedops::compose ps --quiet 2>/dev/null || true)" ]] ;;
  esac
}

mode_restart() {
  restart_workers
}

# A corrupt pid file does not keep a component running: the helper finds it by command line and
# port. Any corrupt state file makes the run exit STATE_CORRUPT once everything is stopped.
mode_shutdown() {
  local rc=0
  feedops::act "stop the worker(s) (drain and flush), then the stack" feedops::runtime::shutdown || rc=$?
  (( rc != EXIT_STATE_CORRUPT )) \
    || feedops::fail "${rc}" "everything was stopped, but a pid file is corrupt (see above): remove it before the next run"
  (( rc == 0 )) || feedops::fail "${EXIT_SHUTDOWN_FAILED}" "a component did not stop within ${FEEDOPS_TIMEOUT}s (see above)"
  (( FEEDOPS_DRY_RUN )) && return 0
  feedops::py check-state >/dev/null \
    || feedops::fail "$?" "everything was stopped, but a state file is corrupt (see above): move it away before the next run"
}

# Switch to a profile, restart on it, verify. Arguments: PROFILE REASON [DRILL_PHASE [FRONT_TO_KILL]]
switch_profile() {
  feedops::step::validate "FEEDOPS_ACTIVE_PROFILE=$1"
  feedops::act "make $1 the active profile" feedops::py::act set-profile "$1" --reason "$2" \
    || feedops::fail "$?" "cannot record the active profile"
  FEEDOPS_CFG[PROFILE]=$1
  FEEDOPS_CHILD_ENV+=("FEEDOPS_ACTIVE_PROFILE=$1")  # the last assignment wins
  if [[ -n ${3:-} && ${FEEDOPS_CFG[RUNTIME]} == native ]]; then
    drill_switch "$@"
    return
  fi
  if [[ -n ${4:-} ]]; then
    feedops::act "drill: kill the $4 front" feedops::runtime::kill_front "$4" \
      || feedops::fail "${EXIT_FAILOVER_FAILED}" "cannot kill the $4 front"
  fi
  feedops::step::stop_workers
  feedops::step::recover "${EXIT_FAILOVER_FAILED}" --expect-profile "$1"
}

# A drill phase on the native runtime: the outage (marked on the reference consumer; the front
# killed; the worker(s) restarted on PROFILE) in one helper step, then verify, then wait until the
# consumer sees coverage back. Arguments: PROFILE REASON PHASE [FRONT_TO_KILL]
drill_switch() {
  local -a kill=()
  [[ -z ${4:-} ]] || kill=(--kill-front "$4")
  feedops::act "drill: ${3}: the outage starts${4:+ (kill the $4 front)}; restart the worker(s) on $1" \
    feedops::py::act drill outage "$3" "${kill[@]}" --timeout "${FEEDOPS_TIMEOUT}" \
    || feedops::fail "$?" "the ${3} switch to $1 failed"
  feedops::step::wait_ready "${EXIT_FAILOVER_FAILED}" --expect-profile "$1"
  feedops::step::health "${EXIT_FAILOVER_FAILED}"
  feedops::act "drill: ${3}: wait for the consumer to see coverage back" \
    feedops::py::act drill wait "$3" --timeout "${FEEDOPS_TIMEOUT}"
}

mode_failover() {
  switch_profile "${OPT_TO}" failover
}

# Roll back to a recorded release (feedops.runbook.releases): plan it, pull its image (compose), pin
# it, then restart on it. A missing release, snapshot, image or revision fails before anything stops.
mode_rollback() {
  local out rc=0 release
  out="$(feedops::py rollback-apply --to "${OPT_TO}" --plan)" || rc=$?
  (( rc == 0 )) || feedops::fail "${rc}" "cannot roll back to ${OPT_TO}"
  release="$(sed -n 's/^RELEASE=//p' <<< "${out}")"
  FEEDOPS_CFG[IMAGE_TAG]="$(sed -n 's/^TAG=//p' <<< "${out}")"
  FEEDOPS_CFG[IMAGE_REF]="$(sed -n 's/^IMAGE_REF=//p' <<< "${out}")"
  if [[ ${FEEDOPS_CFG[RUNTIME]} == compose ]]; then
    feedops::act "pull image ${FEEDOPS_CFG[IMAGE_REF]}" feedops::compose pull worker \
      || feedops::fail "${EXIT_ROLLBACK_FAILED}" "cannot pull ${FEEDOPS_CFG[IMAGE_REF]} (release ${release}); nothing was changed"
  fi
  if (( FEEDOPS_DRY_RUN )); then
    printf 'rollback (dry-run): %s\n' "${out//$'\n'/ }"
    FEEDOPS_CFG[PROFILE]="$(sed -n 's/^PROFILE=//p' <<< "${out}")"
  else
    out="$(feedops::py rollback-apply --to "${release}")" || rc=$?
    (( rc == 0 )) || feedops::fail "${rc}" "cannot roll back to release ${release}"
    printf 'rollback: %s\n' "${out//$'\n'/ }"
    feedops::config::load
  fi
  feedops::step::stop_workers
  feedops::step::recover "${EXIT_ROLLBACK_FAILED}" --expect-profile "${FEEDOPS_CFG[PROFILE]}"
}

mode_status() {
  local rc=0
  feedops::py status || rc=$?
  (( rc == 0 )) || feedops::fail "${rc}" "cannot read the state in ${FEEDOPS_CFG[STATE_DIR]}"
  feedops::runtime::status
}

# One health check through the runtime; check_feed_health.py pushes its own verdict. WARNING passes.
mode_health() {
  local rc=0
  feedops::act "check the feed's health (${FEEDOPS_CFG[RUNTIME]})" \
    feedops::runtime::check_health run --format "${OPT_FORMAT:-nagios}" || rc=$?
  case ${rc} in
    "${CHECK_OK}") ;;
    "${CHECK_WARNING}") feedops::log::warning runbook.health.warning "the feed is up with warnings (see the report)" ;;
    *) feedops::fail "${EXIT_HEALTH_FAILED}" "the health check reported CRITICAL or UNKNOWN, or could not run (exit ${rc})" ;;
  esac
}

mode_drill() {
  [[ ${FEEDOPS_CFG[CHANNEL]} == sim ]] \
    || usage_error "drill runs on the simulator only (FEEDOPS_CHANNEL=sim, e.g. --env dev); this environment uses ${FEEDOPS_CFG[CHANNEL]}"
  local home=${FEEDOPS_CFG[PROFILE]} other=backup rc=0
  [[ ${home} == backup ]] && other=primary
  DRILL_PROFILES="${home} -> ${other} -> ${home}"
  mode_premarket
  DRILL_ATTACHED=1  # from here on, on_exit reports (and detaches) a drill that fails
  feedops::act "drill: attach the reference consumer" feedops::py::act drill attach --timeout "${FEEDOPS_TIMEOUT}" \
    || feedops::fail "$?" "the reference consumer did not attach"
  switch_profile "${other}" drill failover "${home}"
  feedops::step::start_stack
  switch_profile "${home}" drill failback
  DRILL_ATTACHED=0
  feedops::act "drill: report (print, push, detach the consumer)" \
    feedops::py::act drill report --profiles "${DRILL_PROFILES}" || rc=$?
  (( rc == 0 )) || feedops::fail "${rc}" "the drill failed from the subscriber's side (see the report above)"
  printf 'drill: failover %s passed\n' "${DRILL_PROFILES}"
}

mode_rotate() {
  local rc=0
  feedops::py rotate check --secrets-dir "${OPT_SECRETS_DIR}" >/dev/null \
    || feedops::fail "$?" "rotation refused before anything changed (see above)"
  feedops::step::validate "FEEDOPS_SECRETS_DIR=${OPT_SECRETS_DIR}"
  feedops::act "switch to the new secrets directory" feedops::py::act rotate apply --secrets-dir "${OPT_SECRETS_DIR}" \
    || feedops::fail "$?" "cannot record the new secrets directory"
  (( FEEDOPS_DRY_RUN )) || feedops::config::load
  ( restart_workers ) || rc=$?
  (( rc == 0 )) && return 0
  feedops::log::error runbook.rotate.revert "the new credentials did not recover (exit ${rc}); restoring the previous ones"
  feedops::py rotate revert || feedops::fail "$?" "cannot restore the previous credentials"
  feedops::config::load
  ( restart_workers ) || feedops::fail "${EXIT_ROTATION_FAILED}" "the previous credentials did not recover either"
  feedops::fail "${EXIT_ROTATION_FAILED}" "rotation failed; the previous credentials were restored and recovered"
}

# Restart the worker(s) on the effective configuration and verify.
restart_workers() {
  feedops::step::stop_workers
  feedops::step::recover "${EXIT_NOT_READY}"
}

main() {
  parse_args "$@"
  [[ -x ${FEEDOPS_PY} ]] || feedops::fail "${EXIT_DEPENDENCY_MISSING}" "${FEEDOPS_PY} is missing; run 'make bootstrap'"
  FEEDOPS_HELPER_ARGS=()
  [[ -n ${OPT_ENV} ]] && FEEDOPS_HELPER_ARGS+=(--env "${OPT_ENV}")
  [[ -n ${OPT_RUNTIME} ]] && FEEDOPS_HELPER_ARGS+=(--runtime "${OPT_RUNTIME}")
  feedops::config::load
  FEEDOPS_HELPER_ARGS=(--env "${FEEDOPS_CFG[ENV]}" --runtime "${FEEDOPS_CFG[RUNTIME]}")
  feedops::log::info runbook.start "${FEEDOPS_MODE} on ${FEEDOPS_CFG[ENV]}" mode="${FEEDOPS_MODE}" \
    runtime="${FEEDOPS_CFG[RUNTIME]}" profile="${FEEDOPS_CFG[PROFILE]}" image_tag="${FEEDOPS_CFG[IMAGE_TAG]}" \
    dry_run="${FEEDOPS_DRY_RUN}"
  if [[ ! ${FEEDOPS_MODE} =~ ^(status|health)$ ]] && (( ! FEEDOPS_DRY_RUN )); then
    feedops::lock::acquire
    RUN_STARTED_AT=$(date +%s)
    trap on_exit EXIT  # records the outcome, cleans up a failed start, releases the lock last
    trap 'exit "${EXIT_INTERRUPTED}"' INT
    trap 'exit "${EXIT_TERMINATED}"' TERM
  fi
  (( OPT_SCHEDULED )) && schedule_gate
  "mode_${FEEDOPS_MODE}"
}

main "$@"
