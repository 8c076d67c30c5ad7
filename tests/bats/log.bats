#!/usr/bin/env bats
# scripts/operations/lib/log.sh writes the same JSON lines as lib/feedops/log.py:
# every line is checked against lib/feedops/schemas/log-line.schema.json.

bats_require_minimum_version 1.5.0

setup() {
  bats_load_library bats-support
  bats_load_library bats-assert
  ROOT="$(cd "$BATS_TEST_DIRNAME/../.." && pwd)"
  PY="${FEEDOPS_PYTHON:-$ROOT/.venv/bin/python}"
  unset FEEDOPS_LOG_LEVEL FEEDOPS_LOG_FORMAT FEEDOPS_LOG_COMPONENT
  # shellcheck source=/dev/null
  source "$ROOT/scripts/operations/lib/log.sh"
}

# Validate stdin (one JSON object per line) against the log-line schema; print each record's msg.
valid_log_lines() {
  "$PY" -c '
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
for line in sys.stdin.read().splitlines():
    record = json.loads(line)
    jsonschema.validate(record, schema)
    print(json.dumps(record, ensure_ascii=False, sort_keys=True))
' "$ROOT/lib/feedops/schemas/log-line.schema.json"
}

@test "an info line is valid JSON matching the schema, on stderr only" {
  run --separate-stderr feedops::log::info runbook.premarket.start "pre-market start" mode=premarket
  assert_success
  assert_output ""
  run valid_log_lines <<<"$stderr"
  assert_success
  assert_output --partial '"component": "runbook"'
  assert_output --partial '"event": "runbook.premarket.start"'
  assert_output --partial '"level": "info"'
  assert_output --partial '"mode": "premarket"'
}

@test "quotes, backslashes, newlines, tabs, unicode and control characters stay one valid line" {
  run --separate-stderr feedops::log::warning runbook.odd $'say "hi" \\ path\nnext\tcol 行情 \x01end' detail=$'a "b"\nc'
  assert_success
  [ "${#stderr_lines[@]}" -eq 1 ]
  run valid_log_lines <<<"$stderr"
  assert_success
  assert_output --partial '"msg": "say \"hi\" \\ path\nnext\tcol 行情 end"'
  assert_output --partial '"detail": "a \"b\"\nc"'
}

@test "numbers stay numbers, other values are strings, bad keys and reserved keys are dropped" {
  run --separate-stderr feedops::log::info a.b m count=3 ratio=0.5 neg=-2 padded=007 word=yes Bad-Key=1 level=fake
  run valid_log_lines <<<"$stderr"
  assert_success
  assert_output --partial '"count": 3'
  assert_output --partial '"ratio": 0.5'
  assert_output --partial '"neg": -2'
  assert_output --partial '"padded": "007"'
  assert_output --partial '"word": "yes"'
  assert_output --partial '"level": "info"'
  refute_output --partial 'Bad-Key'
}

@test "every level is valid and the level filter applies" {
  local level
  for level in debug info warning error critical; do
    run --separate-stderr env FEEDOPS_LOG_LEVEL=debug bash -c "source '$ROOT/scripts/operations/lib/log.sh'; feedops::log::$level a.b m"
    run valid_log_lines <<<"$stderr"
    assert_success
    assert_output --partial "\"level\": \"$level\""
  done
  export FEEDOPS_LOG_LEVEL=error
  run --separate-stderr feedops::log::warning a.b hidden
  assert_equal "$stderr" ""
  run --separate-stderr feedops::log::error a.b shown
  assert_equal "${#stderr_lines[@]}" 1
}

@test "component comes from FEEDOPS_LOG_COMPONENT" {
  export FEEDOPS_LOG_COMPONENT=drill
  run --separate-stderr feedops::log::info drill.step m
  run valid_log_lines <<<"$stderr"
  assert_output --partial '"component": "drill"'
}

@test "text format matches the Python text format" {
  export FEEDOPS_LOG_FORMAT=text
  run --separate-stderr feedops::log::info runbook.step "step done" k=v
  assert_success
  [[ "$stderr" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z\ INFO\ {5}runbook\ runbook\.step\ step\ done\ k=v$ ]]
  local bash_line=$stderr
  run "$PY" -c 'import io; from feedops.log import Logger; s = io.StringIO(); Logger("runbook", fmt="text", stream=s).info("runbook.step", "step done", k="v"); print(s.getvalue().split(" ", 1)[1], end="")'
  assert_equal "$output" "${bash_line#* }"
}

@test "timestamps are RFC 3339 UTC" {
  run --separate-stderr feedops::log::info a.b m
  [[ "$stderr" =~ \"ts\":\"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\" ]]
}
