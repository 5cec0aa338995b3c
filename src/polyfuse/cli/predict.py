"""``polyfuse predict``: predictions of an artifact for every row of a manifest."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from polyfuse.cli.batch import job_settings, print_result, ray_arguments, runner, uses_ray
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
    p.add_argument(
        "--out",
        metavar="FILE",
        help="write JSON lines here (default stdout); with --ray a folder of Parquet parts",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--on-bad-row", choices=("skip", "fail"), default="skip")
    ray_arguments(p)
    p.add_argument(
        "--jsonl",
        metavar="FILE",
        help="with --ray: also write the JSON lines of the single-process predict here",
    )


def predict(args: argparse.Namespace) -> int:
    """Predict every row of a manifest; JSON lines to --out or stdout, or (with --ray)
    Parquet parts to the --out folder."""
    if uses_ray(args):
        return _predict_on_ray(args)
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


def _predict_on_ray(args: argparse.Namespace) -> int:
    from polyfuse.core.errors import ConfigError

    if not args.out:
        raise ConfigError(
            "--out",
            "--ray writes Parquet parts to a folder",
            hint="add --out preds.parquet (a rerun with the same folder resumes)",
        )
    check_output_file("--jsonl", args.jsonl)
    from polyfuse.batch.jobs import predict as predict_job
    from polyfuse.batch.jobs import predictions_jsonl

    settings = job_settings(args)
    result = predict_job(
        resolve_artifact(args.artifact), args.data, args.out, runner(args), settings
    )
    print_result(result, "predictions")
    if args.jsonl:
        n = predictions_jsonl(result.out, args.jsonl)
        print(f"wrote {n} predictions to {args.jsonl}", file=sys.stderr)
    return EXIT_OK
