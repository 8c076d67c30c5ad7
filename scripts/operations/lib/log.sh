# shellcheck shell=bash
# feedops structured logging for bash: the same JSON-lines shape as lib/feedops/log.py
# (ts, level, component, event, msg, plus key=value fields), checked against
# lib/feedops/schemas/log-line.schema.json by tests/bats/log.bats.
#
# Globals:   FEEDOPS_LOG_COMPONENT (default: runbook), FEEDOPS_LOG_FORMAT (json|text),
#            FEEDOPS_LOG_LEVEL (debug|info|warning|error|critical)
# Usage:     feedops::log::info EVENT "message" [key=value ...]
# Output:    one line on stderr per call.

[[ -n "${__FEEDOPS_LOG_SH:-}" ]] && return 0
readonly __FEEDOPS_LOG_SH=1

# Escape a string as a JSON string body (backslash, quote, control characters).
feedops::log::_json_escape() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/\\r}
  s=${s//$'\t'/\\t}
  # remaining control characters are dropped
  s=$(printf '%s' "$s" | tr -d '\000-\010\013\014\016-\037')
  printf '%s' "$s"
}

feedops::log::_rank() {
  case $1 in
    debug) echo 0 ;; info) echo 1 ;; warning) echo 2 ;; error) echo 3 ;; critical) echo 4 ;; *) echo 1 ;;
  esac
}

# feedops::log::emit LEVEL EVENT MSG [key=value ...]
feedops::log::emit() {
  local level=$1 event=$2 msg=$3
  shift 3
  local threshold=${FEEDOPS_LOG_LEVEL:-info}
  threshold=${threshold,,}
  if (( $(feedops::log::_rank "$level") < $(feedops::log::_rank "$threshold") )); then
    return 0
  fi
  local component=${FEEDOPS_LOG_COMPONENT:-runbook}
  local ts
  ts=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
  local kv key value line
  if [[ "${FEEDOPS_LOG_FORMAT:-json}" == "text" ]]; then
    printf -v line '%s %-8s %s %s %s' "$ts" "${level^^}" "$component" "$event" "$msg"
    for kv in "$@"; do line+=" ${kv}"; done
  else
    line="{\"ts\":\"${ts}\",\"level\":\"${level}\",\"component\":\"$(feedops::log::_json_escape "$component")\""
    line+=",\"event\":\"$(feedops::log::_json_escape "$event")\",\"msg\":\"$(feedops::log::_json_escape "$msg")\""
    for kv in "$@"; do
      key=${kv%%=*}
      value=${kv#*=}
      [[ "$key" =~ ^[a-z_][a-z0-9_]*$ ]] || continue
      case $key in ts|level|component|event|msg) continue ;; esac
      if [[ "$value" =~ ^-?(0|[1-9][0-9]*)(\.[0-9]+)?$ ]]; then
        line+=",\"${key}\":${value}"
      else
        line+=",\"${key}\":\"$(feedops::log::_json_escape "$value")\""
      fi
    done
    line+="}"
  fi
  printf '%s\n' "$line" >&2
}

feedops::log::debug() { feedops::log::emit debug "$@"; }
feedops::log::info() { feedops::log::emit info "$@"; }
feedops::log::warning() { feedops::log::emit warning "$@"; }
feedops::log::error() { feedops::log::emit error "$@"; }
feedops::log::critical() { feedops::log::emit critical "$@"; }
