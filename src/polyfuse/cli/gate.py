"""``polyfuse gate``: may this artifact ship? Exit 0 pass, 1 fail, 2 error."""

from __future__ import annotations

import argparse
import json

from polyfuse.cli.common import ARTIFACT_HELP, EXIT_FINDINGS, EXIT_OK, resolve_artifact


def gate_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``gate``."""
    p.add_argument("artifact", help="the candidate: " + ARTIFACT_HELP)
    p.add_argument("--data", required=True, metavar="MANIFEST", help="labelled manifest")
    p.add_argument(
        "--rules",
        required=True,
        metavar="GATES.yaml",
        help="rules file (polyfuse schema gate; docs/releases.md)",
    )
    p.add_argument(
        "--champion",
        metavar="ARTIFACT",
        help="the model in production (folder or models:/NAME@champion), for champion: rules",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", metavar="FILE", help="also write the JSON verdict here")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def gate(args: argparse.Namespace) -> int:
    """Judge every rule; exit 0 when all pass, 1 when any fails (2 on errors, by main)."""
    from pathlib import Path

    from polyfuse.cli.common import check_output_file
    from polyfuse.release.gate import GateFile, run_gate

    check_output_file("--out", args.out)
    rules = GateFile.load(args.rules)  # a bad rules file fails before any model loads
    result = run_gate(
        resolve_artifact(args.artifact),
        args.data,
        rules,
        champion=resolve_artifact(args.champion) if args.champion else None,
        device=args.device,
        progress=not args.quiet,
    )
    data = result.to_dict()
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(data))
    else:
        print(render(data))
    return EXIT_OK if result.passed else EXIT_FINDINGS


def render(data: dict[str, object]) -> str:
    """The verdict as a table for terminals."""
    rules = data["rules"]
    assert isinstance(rules, list)
    lines = [
        f"gate on {data['n']} rows of {data['data']}"
        + (f" against champion {data['champion']}" if data["champion"] else "")
    ]
    width = max(len(str(r["rule"])) for r in rules)
    for r in rules:
        value = "-" if r["value"] is None else f"{r['value']:.4g}"
        limit = "-" if r["threshold"] is None else f"{r['threshold']:.4g}"
        mark = "PASS" if r["passed"] else "FAIL"
        extra = ""
        if "interval" in r:
            ci = r["interval"]
            extra = (
                f"  (candidate - champion {r['difference']:+.4f}, "
                f"95% {ci['low']:+.4f}..{ci['high']:+.4f})"
            )
        elif "worst" in r:
            extra = f"  (worst {r['worst']}: {r['worst_value']:.4g} vs overall {r['overall']:.4g})"
        lines.append(
            f"  {mark}  {r['rule']:<{width}}  value {value:>8}  threshold {limit:>8}{extra}"
        )
    lines.append(
        "PASSED" if data["passed"] else f"FAILED: {sum(not r['passed'] for r in rules)} rule(s)"
    )
    return "\n".join(lines)
