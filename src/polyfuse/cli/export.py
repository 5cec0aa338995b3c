"""``polyfuse export``: an artifact as ONNX graphs, fp32 or int8 (docs/export.md)."""

from __future__ import annotations

import argparse
import json

from polyfuse.cli.common import ARTIFACT_HELP, EXIT_OK, check_positive, resolve_artifact


def export_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``export``."""
    p.add_argument("artifact", help=ARTIFACT_HELP)
    p.add_argument("--format", choices=("onnx",), default="onnx", help="what to export to")
    p.add_argument(
        "--quantize",
        choices=("int8",),
        help="int8 graphs: dynamic for transformers and linear layers, static (calibrated on "
        "--data) for convolutional encoders",
    )
    p.add_argument(
        "--data",
        metavar="MANIFEST",
        help="labelled manifest (a pair manifest for an alignment artifact): calibration rows "
        "for static int8, and the accuracy (retrieval R@K) of the fp32 (and int8) export is "
        "measured on it",
    )
    p.add_argument("--out", metavar="DIR", required=True, help="folder to write")
    p.add_argument(
        "--calibration-rows",
        type=int,
        default=256,
        metavar="N",
        help="rows of --data that calibrate static int8 (default 256)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def export(args: argparse.Namespace) -> int:
    """Export an artifact as ONNX graphs (one per encoder + adapter, the fusion + head, the
    auxiliary heads; for an alignment artifact one "encoder + adapters" graph per modality)
    with dynamic batch and length axes, checked against the eager model (1e-4); with
    --quantize int8, int8 graphs and the fp32 and int8 accuracy (or retrieval R@K) on
    --data. The folder loads like the artifact: predict, evaluate, info and `serve --engine
    onnx` for a classifier; index, search, evaluate and `serve --align` for an alignment."""
    check_positive("--calibration-rows", args.calibration_rows)
    from polyfuse.export import export_onnx

    result = export_onnx(
        resolve_artifact(args.artifact),
        args.out,
        quantize=args.quantize,
        data=args.data,
        calibration_rows=args.calibration_rows,
    )
    summary = {
        "out": str(result.folder),
        "precision": "int8" if result.quantization else "fp32",
        "graphs": sorted(result.graphs),
        "max_abs_diff_fp32": max(result.differences.values()),
        "quantization": result.quantization,
        "accuracy": result.accuracy,
    }
    if args.json:
        print(json.dumps(summary))
        return EXIT_OK
    print(f"wrote {len(result.graphs)} graphs ({summary['precision']}) to {result.folder}")
    print(f"fp32 graphs match the eager model within {summary['max_abs_diff_fp32']:.2g}")
    for name, mode in result.quantization.items():
        print(f"  {name}: int8 {mode}")
    for precision, metrics in result.accuracy.items():
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "n")
        print(f"{precision} on --data: {shown}")
    return EXIT_OK
