"""``polyfuse validate``: check a manifest before a long run does."""

from __future__ import annotations

import argparse
import json

from polyfuse.cli.common import EXIT_FINDINGS, EXIT_OK


def validate_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``validate``."""
    p.add_argument("manifest", help="JSONL, CSV or Parquet manifest")
    p.add_argument("--config", help="training config naming the modalities")
    p.add_argument(
        "--modality",
        action="append",
        default=[],
        metavar="NAME=KIND",
        help="declare a modality without a config (repeatable)",
    )
    p.add_argument(
        "--sync-model",
        metavar="DIR",
        help="a learned sync model (polyfuse.train.sync) to estimate video offsets with "
        "(default: the signal baseline)",
    )
    p.add_argument(
        "--no-sync",
        dest="sync",
        action="store_false",
        help="do not estimate the sound/picture offset of video files",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def validate(args: argparse.Namespace) -> int:
    """Check a manifest: files, formats, labels and modality coverage."""
    from polyfuse.train.validate import validate_manifest

    report = validate_manifest(
        args.manifest,
        config=args.config,
        modalities=args.modality,
        progress=not args.quiet,
        sync=args.sync,
        sync_model=args.sync_model,
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    return EXIT_FINDINGS if report.bad_rows else EXIT_OK
