"""``polyfuse predict``: predictions of an artifact for every row of a manifest."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from polyfuse.cli.common import (
    EXIT_OK,
    artifact_data_arguments,
    check_output_file,
    check_positive,
    report_bad,
    resolve_artifact,
)


def predict_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``predict``."""
    artifact_data_arguments(p)
    p.add_argument("--out", metavar="FILE", help="write JSON lines here (default stdout)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--on-bad-row", choices=("skip", "fail"), default="skip")


def predict(args: argparse.Namespace) -> int:
    """Predict every row of a manifest; JSON lines to --out or stdout."""
    check_positive("--batch-size", args.batch_size)
    check_output_file("--out", args.out)
    from polyfuse.inference.predict import Predictor

    artifact = resolve_artifact(args.artifact)
    predictor = Predictor.load(artifact, device=args.device, batch_size=args.batch_size)
    run = predictor.predict_manifest(
        args.data, modalities=args.modalities, on_bad_row=args.on_bad_row, progress=not args.quiet
    )
    lines = [json.dumps(p.to_dict()) for p in run.predictions]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")
        print(f"wrote {len(lines)} predictions to {args.out}", file=sys.stderr)
    else:
        for ln in lines:
            print(ln)
    report_bad(run.bad_rows)
    return EXIT_OK
