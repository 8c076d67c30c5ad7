# shellcheck shell=bash
# The one bootstrap of the runbook: strict mode, repo root resolved once, a guard
# against double sourcing, then the libraries (logging, exit codes, utilities,
# runtimes, steps). Source it from scripts/operations/*.sh.
#
# Globals set: FEEDOPS_ROOT (repository root), FEEDOPS_PY (the venv's python).

[[ -n "${__FEEDOPS_INIT_SH:-}" ]] && return 0
readonly __FEEDOPS_INIT_SH=1

set -o errexit -o nounset -o pipefail -o errtrace
umask 022  # state files hold no secrets; the compose health check reads them as another uid

FEEDOPS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd -P)"
readonly FEEDOPS_ROOT
FEEDOPS_PY="${FEEDOPS_ROOT}/.venv/bin/python"
readonly FEEDOPS_PY
# openctp-ctp needs the zh_CN.GB18030 locale that `make bootstrap` compiles here; when it
# is not there, LOCPATH stays unset so that glibc can use the system's locales.
if [[ -z "${LOCPATH:-}" && -f "${FEEDOPS_ROOT}/.venv/locale/zh_CN.GB18030/LC_CTYPE" ]]; then
  export LOCPATH="${FEEDOPS_ROOT}/.venv/locale"
fi
# Time is an input (docs/ops/time.md): a moved clock (FEEDOPS_CLOCK_AT) is anchored once here, so
# that every step this run starts (validate, sim, worker, health check) reads the same clock.
if [[ -n "${FEEDOPS_CLOCK_AT:-}" && "${FEEDOPS_CLOCK_AT}" != *@* ]]; then
  FEEDOPS_CLOCK_AT="${FEEDOPS_CLOCK_AT}@$(date +%s.%N)"
  export FEEDOPS_CLOCK_AT
fi
# the bash logger's component (a shell variable: the settings model does not know it)
FEEDOPS_LOG_COMPONENT="${FEEDOPS_LOG_COMPONENT:-runbook}"

# shellcheck source=scripts/operations/lib/log.sh
source "${FEEDOPS_ROOT}/scripts/operations/lib/log.sh"
# shellcheck source=scripts/operations/lib/exitcodes.sh
source "${FEEDOPS_ROOT}/scripts/operations/lib/exitcodes.sh"
# shellcheck source=scripts/operations/lib/util.sh
source "${FEEDOPS_ROOT}/scripts/operations/lib/util.sh"
# shellcheck source=scripts/operations/lib/runtime.sh
source "${FEEDOPS_ROOT}/scripts/operations/lib/runtime.sh"
# shellcheck source=scripts/operations/lib/steps.sh
source "${FEEDOPS_ROOT}/scripts/operations/lib/steps.sh"

# An unexpected failure (errexit) names the command and the call stack before the exit.
feedops::on_err() {
  local rc=$? frames="" i
  for (( i = 1; i < ${#FUNCNAME[@]}; i++ )); do frames+="${FUNCNAME[i]}:${BASH_LINENO[i-1]} "; done
  feedops::log::error runbook.unexpected "command failed (exit ${rc}): ${BASH_COMMAND}" stack="${frames% }"
}
trap feedops::on_err ERR
