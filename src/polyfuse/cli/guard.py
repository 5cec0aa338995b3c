"""``polyfuse scan``: the firewall over files and folders."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from polyfuse.cli.common import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK


def scan_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``scan``."""
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to scan")
    p.add_argument("--policy", metavar="FILE", help="policy YAML (default: built-in)")
    p.add_argument(
        "--redact-out", metavar="DIR", help="write redacted copies of redacted inputs here"
    )
    p.add_argument("--audit", metavar="FILE", help="append decisions to this JSONL log")
    p.add_argument("--json", action="store_true", help="one JSON object per input")


def _scan_paths(items: Sequence[str]) -> list[Path]:
    """Files named on the command line; folders are walked (sorted, hidden files skipped)."""
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            out.append(path)
    return out


def scan(args: argparse.Namespace) -> int:
    """Scan files for PII, prompt injection and hidden text under one policy.

    Exit status: 0 when every input is allowed or only flagged, 1 when any input is
    redacted or blocked (unreadable inputs are blocked), 2 on usage errors.
    """
    from polyfuse.core.progress import bar
    from polyfuse.guard.engine import Guard
    from polyfuse.guard.policy import Policy

    guard = Guard(Policy.load(args.policy), audit=args.audit)
    paths = _scan_paths(args.paths)
    if not paths:
        print("error: no files to scan", file=sys.stderr)
        return EXIT_ERROR
    status = EXIT_OK
    for path in bar(
        paths, enabled=not (args.quiet or args.json) and len(paths) > 1, desc="scanning"
    ):
        result = guard.scan(path)
        redacted = guard.redact(path, result, args.redact_out) if args.redact_out else None
        if result.action in ("redact", "block"):
            status = EXIT_FINDINGS
        if args.json:
            line = result.to_dict()
            if redacted is not None:
                line["redacted"] = str(redacted)
            print(json.dumps(line), flush=True)
            continue
        types = sorted({f.type for f, _ in result.findings})
        detail = result.error if result.error else (", ".join(types) or "no findings")
        extra = f" -> {redacted}" if redacted else ""
        print(f"{result.action:<7} {result.modality:<6} {path}: {detail}{extra}", flush=True)
    return status
