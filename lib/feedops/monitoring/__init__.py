"""Monitoring as code: alert and recording rules, their runbook pages, the Alertmanager
configuration and the Grafana dashboards, each generated from one source in this package.

* :mod:`.config`: thresholds, job selectors and the session windows (one block);
* :mod:`.model`: what an alert is (rules, annotations, runbook page);
* :mod:`.alerts_feed`, :mod:`.alerts_ops`: the alerts;
* :mod:`.rules`: recording rules, rendering of ``monitoring/prometheus/rules/`` and
  ``docs/ops/alerts/`` (``python -m feedops.monitoring.rules``);
* :mod:`.alertmanager`: ``monitoring/alertmanager/alertmanager.yml`` from the environment
  (``python -m feedops.monitoring.alertmanager render``);
* :mod:`.dashboards`: ``monitoring/grafana/dashboards/`` (``python -m feedops.monitoring.dashboards``),
  built from the Grafana blocks of :mod:`.panels`; :mod:`.dashboard_queries` reads their
  queries back for the tests and the live check;
* :mod:`.prometheus_config`: the scrape configuration per runtime (native loopback targets,
  ``monitoring/prometheus/compose/<env>.yml``).
"""
