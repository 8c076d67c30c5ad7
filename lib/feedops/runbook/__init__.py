"""Python helpers behind ``scripts/operations/start_live_env.sh`` (the runbook).

The bash script stays a thin orchestrator; everything that needs more than a few
lines lives here and is reached through ``python -m feedops.runbook SUBCOMMAND``:

* :mod:`.cli`: the subcommands' parser and exit codes; the subcommands themselves are
  :mod:`.native_steps` (start, wait for ready and stop the native processes) and
  :mod:`.state_steps` (configuration values, release record, profile, rollback, rotation,
  outcomes, status); a failing step raises :class:`~.step.StepFailed`;
* :mod:`.state`: state files under FEEDOPS_STATE_DIR, written atomically; a corrupt
  or missing file is reported (:class:`~.state.StateError`), never trusted;
* :mod:`.config`: the few values bash needs, configuration snapshots without secrets;
* :mod:`.procs`: the native runtime (processes with pid files and log files);
* :mod:`.monitoring`: the monitoring stack on the native runtime (Prometheus, Alertmanager,
  Pushgateway, redis-exporter from Debian, when enabled and installed);
* :mod:`.ready`: bounded readiness polling with progress lines;
* :mod:`.outcome`: run outcomes in the state and on Pushgateway.

Every subcommand exits with a code of :class:`feedops.exitcodes.Runbook`.
"""
