"""Operating a polyfuse service: SLOs, Prometheus rules, Grafana dashboards.

- `polyfuse.ops.catalogue`: the metrics the service exports, as queries may name them;
- `polyfuse.ops.slo`: ``slo.yaml`` (targets, windows, runbooks) as a validated model;
- `polyfuse.ops.rules`: recording rules and multi-window, multi-burn-rate alert rules;
- `polyfuse.ops.dashboards`: the executive, on-call and debug dashboards as Grafana JSON.

``polyfuse ops rules`` / ``polyfuse ops dashboards`` write them; docs/operations.md explains
them and docs/runbooks/ holds one runbook per alert. This package reads no model and
imports nothing of ``polyfuse.serve``: it names the service's metrics through the catalogue.
"""
