# shellcheck shell=bash disable=SC2034
# Generated from lib/feedops/exitcodes.py by `python -m feedops.exitcodes --shell`.
# Do not edit: tests/unit/test_exitcodes.py keeps this file identical to the generator.
readonly EXIT_OK=0  # the mode completed
readonly EXIT_USAGE=64  # unknown mode or option, bad option value
readonly EXIT_LOCK_HELD=65  # another run holds the lock (the message names its pid and mode)
readonly EXIT_VALIDATION_FAILED=66  # validate_env.py reported a failed check, or rotate's secret is shadowed by the environment; nothing was started or changed
readonly EXIT_START_FAILED=67  # a component did not start (stack, sim or worker)
readonly EXIT_NOT_READY=68  # the worker(s) did not become ready within the timeout
readonly EXIT_HEALTH_FAILED=69  # check_feed_health.py reported CRITICAL or UNKNOWN
readonly EXIT_FAILOVER_FAILED=70  # the other profile did not recover within the timeout
readonly EXIT_ROLLBACK_FAILED=71  # no usable previous release/snapshot, or it did not recover
readonly EXIT_SHUTDOWN_FAILED=72  # a component did not stop within the timeout
readonly EXIT_STATE_CORRUPT=73  # a state file is corrupt or unreadable; it was not trusted: nothing was started or overwritten (shutdown still stops what runs)
readonly EXIT_DEPENDENCY_MISSING=74  # a required tool (python venv, docker compose, gcc for the line encoder) is missing
readonly EXIT_ROTATION_FAILED=75  # the new credentials did not recover; the previous ones were restored
readonly EXIT_SCHEDULE_REFUSED=76  # --scheduled run refused: its session already opened (premarket) or one is open (shutdown, drill)
readonly EXIT_DRILL_FAILED=77  # drill: failover and failback recovered, but the reference consumer saw duplicates or out-of-order ticks, gaps outside the outages, or a recovery beyond its target
readonly EXIT_INTERRUPTED=130  # stopped by SIGINT (Ctrl-C); what this run started was cleaned up
readonly EXIT_TERMINATED=143  # stopped by SIGTERM; what this run started was cleaned up
readonly CHECK_OK=0  # all checks passed
readonly CHECK_WARNING=1  # warnings only; startup may continue
readonly CHECK_CRITICAL=2  # a check failed; startup must halt
readonly CHECK_UNKNOWN=3  # the checker could not run (bad arguments, unreadable input)
