"""Monitoring as code: the Grafana dashboards (:mod:`.dashboards`) generated from Python."""
