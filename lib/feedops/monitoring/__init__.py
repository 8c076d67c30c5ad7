"""Monitoring as code: the Prometheus, Alertmanager and Grafana files, rendered per runtime."""
