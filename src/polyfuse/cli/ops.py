"""``polyfuse ops``: Prometheus rules and Grafana dashboards for a running service."""

from __future__ import annotations

import argparse

from polyfuse.cli.common import EXIT_OK

#: ``polyfuse ops ACTION``: what each action writes.
ACTIONS = {
    "rules": "recording and alert rules from slo.yaml",
    "dashboards": "the executive, on-call and debug Grafana dashboards",
    "all": "rules and dashboards",
}


def ops_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``ops``."""
    p.add_argument(
        "action", choices=list(ACTIONS), help="; ".join(f"{k}: {v}" for k, v in ACTIONS.items())
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into (created)")
    p.add_argument(
        "--slo",
        metavar="FILE",
        help="slo.yaml (see 'polyfuse schema slo'; default: the one shipped with polyfuse)",
    )


def ops(args: argparse.Namespace) -> int:
    """Write Prometheus recording and multi-window, multi-burn-rate alert rules generated
    from slo.yaml, and the Grafana dashboards (docs/operations.md). Load the rule files
    in Prometheus (``rule_files``) before importing the dashboards: they read its series."""
    from polyfuse.ops.dashboards import write_dashboards
    from polyfuse.ops.rules import write_rules
    from polyfuse.ops.slo import load_slo

    written = []
    if args.action in ("rules", "all"):
        files = write_rules(load_slo(args.slo), args.out)
        written += [files.recording, files.alerts]
    if args.action in ("dashboards", "all"):
        written += write_dashboards(args.out)
    for path in written:
        print(path)
    return EXIT_OK
