# shellcheck shell=bash
# Utilities of the runbook: failing with an exit code, the lock,
# the Python helper (python -m feedops.runbook) and dry-run aware actions.

[[ -n "${__FEEDOPS_UTIL_SH:-}" ]] && return 0
readonly __FEEDOPS_UTIL_SH=1

# Settings the runbook needs, filled by feedops::config::load (KEY -> value).
declare -gA FEEDOPS_CFG=()
# Extra helper arguments for every python -m feedops.runbook call (--env, --runtime).
declare -ga FEEDOPS_HELPER_ARGS=()
# VAR=value settings every program the runbook runs gets (pin, profile, state dir).
declare -ga FEEDOPS_CHILD_ENV=()
# 1 while --dry-run is in effect: actions are printed, not run.
FEEDOPS_DRY_RUN="${FEEDOPS_DRY_RUN:-0}"

#######################################
# Log an error and exit with a runbook exit code.
# Arguments: CODE MESSAGE [key=value ...]
#######################################
feedops::fail() {
  local code=$1 msg=$2
  shift 2
  feedops::log::error runbook.failed "${msg}" exit_code="${code}" "$@"
  exit "${code}"
}

#######################################
# Run the Python helper (python -m feedops.runbook) with --env/--runtime.
# Arguments: SUBCOMMAND [ARGS...]
# Returns: the helper's exit code (feedops.exitcodes.Runbook)
#######################################
feedops::py() {
  "${FEEDOPS_PY}" -m feedops.runbook "${FEEDOPS_HELPER_ARGS[@]}" "$@"
}

#######################################
# Load the values the runbook needs into FEEDOPS_CFG and FEEDOPS_CHILD_ENV
# (the helper reads the settings: no env-file parsing in bash).
# Exits with the helper's code (VALIDATION_FAILED, STATE_CORRUPT) when it cannot.
#######################################
feedops::config::load() {
  local out rc=0 key value
  local -a write=()
  (( FEEDOPS_DRY_RUN )) || write=(--write-release-env)
  # every mode but shutdown and status refuses corrupt state files first (STATE_CORRUPT); shutdown stops
  # what runs anyway, status shows what it can (both exit STATE_CORRUPT at the end)
  [[ ! ${FEEDOPS_MODE:-} =~ ^(shutdown|status)$ ]] || write+=(--lenient-state)
  out="$(feedops::py config "${write[@]}")" || rc=$?
  (( rc == 0 )) || feedops::fail "${rc}" "cannot load the configuration or the state (see the lines above)"
  FEEDOPS_CFG=()
  FEEDOPS_CHILD_ENV=()
  while IFS='=' read -r key value; do
    case ${key} in
      '') ;;
      ENV.*) FEEDOPS_CHILD_ENV+=("${key#ENV.}=${value}") ;;
      *) FEEDOPS_CFG[${key}]="${value}" ;;
    esac
  done <<< "${out}"
  # the bash logger follows the settings unless the caller chose a format
  FEEDOPS_LOG_FORMAT="${FEEDOPS_LOG_FORMAT:-${FEEDOPS_CFG[LOG_FORMAT]}}"
}

#######################################
# Run a command that changes something, or print it under --dry-run.
# Arguments: COMMAND [ARGS...]
#######################################
feedops::run() {
  if (( FEEDOPS_DRY_RUN )); then
    printf 'dry-run:'
    printf ' %q' "$@"
    printf '\n'
    return 0
  fi
  "$@"
}

#######################################
# Run one of the feed's CLIs with the runbook's effective configuration.
# Arguments: [VAR=VALUE ...] SCRIPT [ARGS...]  (VAR=VALUE: settings for this call only)
#######################################
feedops::cli() {
  local -a extra=()
  while [[ $# -gt 0 && $1 == *=* ]]; do extra+=("$1"); shift; done
  local script=$1
  shift
  feedops::run env "${FEEDOPS_CHILD_ENV[@]}" "${extra[@]}" "${FEEDOPS_PY}" "${FEEDOPS_ROOT}/scripts/operations/${script}" "$@"
}

# The Python helper for a step that changes something (printed under --dry-run).
feedops::py::act() {
  feedops::run "${FEEDOPS_PY}" -m feedops.runbook "${FEEDOPS_HELPER_ARGS[@]}" "$@"
}

#######################################
# Log a step and run it; under --dry-run print it as a plan line (the commands
# inside print themselves through feedops::run).
# Arguments: DESCRIPTION COMMAND [ARGS...]
#######################################
feedops::act() {
  local what=$1
  shift
  if (( FEEDOPS_DRY_RUN )); then
    printf 'plan: %s\n' "${what}"
  else
    feedops::log::info runbook.step "${what}" mode="${FEEDOPS_MODE:-}"
  fi
  "$@"
}

#######################################
# Take the runbook lock: flock(1) on <state>/runbook.lock, non-blocking, so that of
# any number of runs at once exactly one holds it (the kernel decides, no check-then-
# remove). The holder writes "pid=... mode=... started=..." into the file for the
# message of the others. A lock file left by a dead run holds no flock: the next run
# takes it over (runbook.lock.stale). After flock, the path must still name the file
# locked (a releasing run removes it): otherwise open it again.
# The caller's EXIT trap releases it (feedops::lock::release).
# Globals: FEEDOPS_LOCK_FILE, FEEDOPS_LOCK_FD (set here), FEEDOPS_MODE
#######################################
feedops::lock::acquire() {
  FEEDOPS_LOCK_FILE="${FEEDOPS_CFG[STATE_DIR]}/runbook.lock"
  mkdir -p "${FEEDOPS_CFG[STATE_DIR]}"
  command -v flock >/dev/null 2>&1 \
    || feedops::fail "${EXIT_DEPENDENCY_MISSING}" "flock (util-linux) is missing; install util-linux"
  local holder holder_pid attempt
  for attempt in 1 2 3 4 5; do
    exec {FEEDOPS_LOCK_FD}<>"${FEEDOPS_LOCK_FILE}" \
      || feedops::fail "${EXIT_STATE_CORRUPT}" "cannot open the lock file ${FEEDOPS_LOCK_FILE}; fix the state directory's permissions"
    if ! flock --nonblock "${FEEDOPS_LOCK_FD}"; then
      holder="$(cat "${FEEDOPS_LOCK_FILE}" 2>/dev/null || true)"
      exec {FEEDOPS_LOCK_FD}>&-
      FEEDOPS_LOCK_FD=""
      feedops::fail "${EXIT_LOCK_HELD}" "another run holds the lock ${FEEDOPS_LOCK_FILE} (${holder:-starting}); wait for it to finish" \
        holder="${holder}"
    fi
    [[ "${FEEDOPS_LOCK_FILE}" -ef "/dev/fd/${FEEDOPS_LOCK_FD}" ]] && break
    exec {FEEDOPS_LOCK_FD}>&-  # locked a file a finishing run just removed: take the new one
    FEEDOPS_LOCK_FD=""
    (( attempt < 5 )) || feedops::fail "${EXIT_LOCK_HELD}" "the lock file ${FEEDOPS_LOCK_FILE} keeps changing (other runs); wait and re-run"
  done
  holder="$(cat "${FEEDOPS_LOCK_FILE}")"
  holder_pid="$(sed -nE 's/^pid=([0-9]+).*/\1/p' <<< "${holder}")"
  if [[ -n "${holder_pid}" && ${holder_pid} != "$$" ]] && kill -0 "${holder_pid}" 2>/dev/null; then
    # a run of a runbook that did not flock (an older checkout) names a live pid
    exec {FEEDOPS_LOCK_FD}>&-
    FEEDOPS_LOCK_FD=""
    feedops::fail "${EXIT_LOCK_HELD}" "another run holds the lock ${FEEDOPS_LOCK_FILE} (${holder}); wait for it to finish" \
      holder="${holder}"
  fi
  [[ -z "${holder}" ]] \
    || feedops::log::warning runbook.lock.stale "taking over a stale lock left by a dead run (${holder})" lock="${FEEDOPS_LOCK_FILE}"
  printf 'pid=%s mode=%s started=%s\n' "$$" "${FEEDOPS_MODE}" "$(date -u +%FT%TZ)" > "${FEEDOPS_LOCK_FILE}"
}

# Release the lock if this process holds it: remove the file, then drop the flock.
feedops::lock::release() {
  [[ -n "${FEEDOPS_LOCK_FD:-}" ]] || return 0
  rm -f "${FEEDOPS_LOCK_FILE}"
  exec {FEEDOPS_LOCK_FD}>&-
  FEEDOPS_LOCK_FD=""
}
