#!/usr/bin/env bats
# validate_env.py from the shell, as the runbook and operators call it: exit codes,
# every bad input (named setting, fix, exit code, no traceback) and the sentinel secret.

bats_require_minimum_version 1.5.0

readonly SENTINEL_PW="S3ntinel-PW-bats-4c2e"
readonly SENTINEL_AC="S3nt-AC-bats-9d7"  # 16 characters: CTP's AuthCode size

setup() {
  bats_load_library bats-support
  bats_load_library bats-assert
  bats_load_library bats-file
  ROOT="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
  PY="${FEEDOPS_PYTHON:-$ROOT/.venv/bin/python}"
  VALIDATE="$ROOT/scripts/operations/validate_env.py"
  local var
  while IFS= read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(FEEDOPS_|CTP_PRIMARY_|CTP_BACKUP_)' || true)
  SECRETS="$BATS_TEST_TMPDIR/secrets"
  mkdir -p "$SECRETS"
  for var in CTP_PRIMARY_PASSWORD CTP_PRIMARY_AUTH_CODE CTP_BACKUP_PASSWORD CTP_BACKUP_AUTH_CODE; do
    printf 'bats-%s-Qx71\n' "${var: -6}" >"$SECRETS/$var"
  done
  export FEEDOPS_SECRETS_DIR="$SECRETS" FEEDOPS_FLOW_DIR="$BATS_TEST_TMPDIR/flow"
  export CTP_PRIMARY_PASSWORD="$SENTINEL_PW" CTP_PRIMARY_AUTH_CODE="$SENTINEL_AC"
}

validate() {
  "$PY" "$VALIDATE" "$@"
}

# Assert the last `run`: no traceback, no sentinel secret.
assert_clean() {
  refute_output --partial "Traceback"
  refute_output --partial "$SENTINEL_PW"
  refute_output --partial "$SENTINEL_AC"
}

# assert_problem_line SETTING FIX [WHAT]: one line of the last output names SETTING, then the fix.
assert_problem_line() {
  local setting=$1 fix=$2 what=${3:-} line
  for line in "${lines[@]}"; do
    [[ "$line" == *"$setting"*"$what"*"fix: "*"$fix"* ]] && return 0
  done
  fail "no line names ${setting} ${what:+(${what}) }with the fix '${fix}'"$'\n'"$output"
}

# assert_bad_input SETTING FIX -- ARGS...: exit 2, one problem line naming SETTING and FIX.
assert_bad_input() {
  local setting=$1 fix=$2
  shift 3
  run -2 validate "$@"
  assert_clean
  assert_problem_line "$setting" "$fix"
}

@test "dev passes: table and a JSON report matching the schema, exit 0" {
  run -0 validate
  assert_output --partial "result: PASS (exit 0)"
  assert_clean
  run --separate-stderr -0 validate --json
  printf '%s' "$output" | "$PY" -c 'import json,sys,jsonschema; jsonschema.validate(json.load(sys.stdin), json.load(open(sys.argv[1])))' \
    "$ROOT/lib/feedops/schemas/validate-report.schema.json"
}

@test "the table lists the check ids of docs/ops/premarket-checklist.md" {
  run -0 validate
  local id
  # shellcheck disable=SC2016  # the backquotes are literal markdown
  for id in $(grep -oE '^\| `[a-z0-9_.]+`' "$ROOT/docs/ops/premarket-checklist.md" | tr -d '|` '); do
    assert_output --regexp "(pass|skip|WARN|FAIL) +${id//./\\.} "
  done
}

@test "warnings only exit 1" {
  FEEDOPS_QUERY_RATE_PER_SECOND=5 run -1 validate
  assert_output --partial "FEEDOPS_QUERY_RATE_PER_SECOND"
}

@test "missing required variable" {
  CTP_PRIMARY_USER_ID="" assert_bad_input CTP_PRIMARY_USER_ID "set CTP_PRIMARY_USER_ID" --
}

@test "missing secret" {
  unset CTP_PRIMARY_AUTH_CODE
  rm "$SECRETS/CTP_PRIMARY_AUTH_CODE"
  assert_bad_input CTP_PRIMARY_AUTH_CODE "secrets directory" --
}

@test "malformed front URL" {
  CTP_PRIMARY_MD_FRONTS="127.0.0.1:17001" assert_bad_input CTP_PRIMARY_MD_FRONTS "tcp://host:port" --
}

@test "port out of range" {
  CTP_BACKUP_MD_FRONTS="tcp://127.0.0.1:65536" assert_bad_input CTP_BACKUP_MD_FRONTS "port 1-65535" --
}

@test "front hosts must be hostnames or IP literals" {
  CTP_PRIMARY_MD_FRONTS="tcp://256.256.256.256:1" assert_bad_input CTP_PRIMARY_MD_FRONTS "hostname or an IP address" --
  assert_output --partial "'256.256.256.256' is neither an IPv4 address"
  CTP_BACKUP_TD_FRONTS="tcp://999:1" assert_bad_input CTP_BACKUP_TD_FRONTS "hostname or an IP address" --
  assert_output --partial "'999' is neither an IPv4 address"
  CTP_BACKUP_TD_FRONTS="tcp://td_1.example:41205" assert_bad_input CTP_BACKUP_TD_FRONTS "hostname or an IP address" --
}

@test "a malformed sink URL names FEEDOPS_SINK_URL" {
  FEEDOPS_SINK_URL="redis://127.0.0.1:6379/abc" assert_bad_input FEEDOPS_SINK_URL "redis://host:port/db" --
  assert_output --partial "database 'abc'"
  FEEDOPS_SINK_URL="ftp://x" assert_bad_input FEEDOPS_SINK_URL "redis://host:port/db" --
}

@test "non-numeric rate limit" {
  FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS="1s" assert_bad_input FEEDOPS_SUBSCRIBE_BATCH_INTERVAL_SECONDS "to a number" --
}

@test "batch size above the CTP limit" {
  FEEDOPS_SUBSCRIBE_BATCH_SIZE=5000 assert_bad_input FEEDOPS_SUBSCRIBE_BATCH_SIZE "1000 or less" --
}

@test "unknown environment: argument exits 3, variable exits 2" {
  run -3 validate --env qa
  assert_clean
  assert_output --partial "--env"
  assert_output --partial "choose from"
  [ "${#lines[@]}" -eq 1 ]
  FEEDOPS_ENV=qa assert_bad_input FEEDOPS_ENV "dev, staging, prod" --
}

@test "unknown channel" {
  FEEDOPS_CHANNEL=real assert_bad_input FEEDOPS_CHANNEL "one of 'ctp' or 'sim'" --
}

@test "secrets directory missing" {
  FEEDOPS_SECRETS_DIR="$BATS_TEST_TMPDIR/nope" assert_bad_input FEEDOPS_SECRETS_DIR "create it" --
}

@test "secrets directory unreadable" {
  local base prefix=()
  base=$(mktemp -d /tmp/feedops-bats-XXXXXX)
  chmod 755 "$base"
  cp -r "$SECRETS" "$base/secrets"
  chmod 000 "$base/secrets"
  if [[ $EUID -eq 0 ]]; then prefix=(setpriv --reuid=65534 --regid=65534 --clear-groups); fi
  FEEDOPS_SECRETS_DIR="$base/secrets" FEEDOPS_FLOW_DIR="$base/flow" run -2 "${prefix[@]}" "$PY" "$VALIDATE"
  chmod 700 "$base/secrets"
  rm -rf "$base"
  assert_clean
  assert_problem_line FEEDOPS_SECRETS_DIR permissions "not readable"
}

@test "secret file with trailing whitespace" {
  unset CTP_PRIMARY_PASSWORD
  printf '%s \n' "$SENTINEL_PW" >"$SECRETS/CTP_PRIMARY_PASSWORD"
  assert_bad_input CTP_PRIMARY_PASSWORD "printf" --
  assert_output --partial "whitespace"
}

@test "secret in the environment with leading or trailing whitespace: named, never shown" {
  CTP_PRIMARY_PASSWORD="$SENTINEL_PW " assert_bad_input CTP_PRIMARY_PASSWORD "without it" --
  assert_output --partial "whitespace"
  refute_output --partial "$SENTINEL_PW"
  CTP_PRIMARY_AUTH_CODE=" ${SENTINEL_AC:1}" run -2 validate --json
  assert_output --partial "CTP_PRIMARY_AUTH_CODE"
  refute_output --partial "${SENTINEL_AC:1}"
  CTP_PRIMARY_AUTH_CODE=" ${SENTINEL_AC:1}" FEEDOPS_LOG_FORMAT=text run -2 validate
  refute_output --partial "${SENTINEL_AC:1}"
}

@test "env file with a syntax error" {
  printf 'FEEDOPS_ENV=dev\nFEEDOPS_CHANNEL: sim\n' >"$BATS_TEST_TMPDIR/bad.env"
  assert_bad_input "bad.env:2" "NAME=value" -- --env-file "$BATS_TEST_TMPDIR/bad.env"
  assert_output --partial "syntax error"
}

@test "bad arguments exit 3 with one line" {
  run -3 validate --profile tertiary
  assert_output --partial "--profile"
  run -3 validate --probe-timeout never
  assert_output --partial "--probe-timeout"
  run -3 validate --frobnicate
  assert_output --partial "--frobnicate"
  [ "${#lines[@]}" -eq 1 ]
  assert_clean
}

@test "sentinel secret never appears, also with other settings broken and in text logs" {
  FEEDOPS_SUBSCRIBE_BATCH_SIZE=9999 FEEDOPS_LOG_FORMAT=text run -2 validate
  assert_clean
  FEEDOPS_CHANNEL="$SENTINEL_PW" run -2 validate --json
  assert_clean
  printf 'FEEDOPS_ENV=dev\nCTP_PRIMARY_AUTH_CODE=%s\n' "$SENTINEL_AC" >"$BATS_TEST_TMPDIR/leaky.env"
  run -2 validate --env-file "$BATS_TEST_TMPDIR/leaky.env"
  assert_clean
  assert_output --partial "CTP_PRIMARY_AUTH_CODE"
}

@test "flow directory not writable" {
  FEEDOPS_FLOW_DIR=/proc/feedops-flow assert_bad_input FEEDOPS_FLOW_DIR "writable directory" --
}
