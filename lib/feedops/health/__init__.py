"""The feed health check (check_feed_health.py): sources -> checks -> report -> push.

* :mod:`.sources`: the observations every source yields; the readers are
  :mod:`.source_worker` (the worker's ``/status``, one per shard), :mod:`.source_prometheus`
  (the Prometheus HTTP API), :mod:`.source_redis` (Redis consumer groups) and
  :mod:`.source_state` (the runbook's last pre-market success and its worker pid files);
* :mod:`.checks`: thresholds (from the settings model, overridable by flags) applied
  to the observations, one :class:`~feedops.health.checks.CheckResult` per
  ``component:measurement`` and component;
* :mod:`.report`: the IETF health-check report, its verdict and exit code, and the
  json / text / nagios renderings;
* :mod:`.push`: the run's outcome to Pushgateway.

:func:`feedops.health.run.run` ties them together; :mod:`.cli` is the command line. Imports stay lazy on the hot path:
``jsonschema``, ``prometheus_client`` and ``redis`` load only when needed.
"""
