"""Distributed batch prediction: Ray Data vs the single-process `Predictor`, on AV-digits.

Builds the AV-digits manifests (``polyfuse.datasets.av_digits``), trains the fused image +
audio model (``examples/av_digits/fused.yaml``, a few epochs; or ``--artifact``), then
predicts the test split (or ``--rows`` of it, repeated with ``--repeat``) three ways:

* ``single``: `Predictor.predict_manifest`, one process (what ``polyfuse predict`` does);
* ``stages``: the batch job's stages in this process (`LocalRunner`), Parquet parts out;
* ``ray``: the same job on Ray Data (an actor pool per stage), Parquet parts out; the time
  includes starting the actors, and Ray's own start is reported apart.

Prints rows/s, the overhead ratio (time / single-process time), and how far the answers
are from the single process (labels that differ, largest probability difference).

    python benchmarks/batch_predict.py --data ../shared/data --work /tmp/batchbench
    python benchmarks/batch_predict.py --data ../shared/data --work /tmp/bb --rows 40 \\
        --epochs 1 --train-rows 200                   # a quick check of the wiring
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    """(artifact folder, manifest to predict)."""
    from polyfuse.core.config import Config
    from polyfuse.datasets.av_digits import build
    from polyfuse.train import Trainer

    work = Path(args.work)
    manifests = build(args.data, work / "av", progress=False)
    name = f"art-e{args.epochs}" + (f"-n{args.train_rows}" if args.train_rows else "")
    artifact = Path(args.artifact) if args.artifact else work / name
    if not (artifact / "artifact.json").is_file():
        raw = yaml.safe_load((ROOT / "examples" / "av_digits" / "fused.yaml").read_text())
        raw["train"] |= {"epochs": args.epochs, "card": False}
        raw["modalities"]["audio"]["substitute"]["source"] = str(
            work / "av" / "nonsignal_audio.txt"
        )
        train = manifests["train"]
        if args.train_rows:
            train = work / "av" / f"train-{args.train_rows}.jsonl"
            lines = manifests["train"].read_text().splitlines()[: args.train_rows]
            train.write_text("\n".join(lines) + "\n")
        Trainer(Config.from_dict(raw), artifact, progress=False).fit(train, manifests["val"])
    lines = manifests["test"].read_text().splitlines()
    lines = lines[: args.rows] if args.rows else lines
    data = work / "av" / f"predict-{len(lines)}x{args.repeat}.jsonl"
    rows = [json.loads(x) for x in lines]
    out = [{**r, "id": f"{r['id']}#{k}"} for k in range(args.repeat) for r in rows]
    data.write_text("".join(json.dumps(r) + "\n" for r in out))
    return artifact, data


def single(artifact: Path, data: Path, batch_size: int) -> tuple[float, list[dict[str, Any]]]:
    """Seconds and answers of the single-process `Predictor`."""
    from polyfuse.inference.predict import Predictor

    predictor = Predictor.load(artifact, "cpu", batch_size=batch_size)
    start = time.perf_counter()
    run = predictor.predict_manifest(data, progress=False)
    return time.perf_counter() - start, [p.to_dict() for p in run.predictions]


def job(
    artifact: Path, data: Path, out: Path, runner: Any, settings: Any
) -> tuple[float, list[dict[str, Any]]]:
    """Seconds and answers of the batch job on ``runner`` (a fresh parts folder)."""
    from polyfuse.batch import jobs
    from polyfuse.batch.parts import read_parts

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    jobs.predict(artifact, data, out, runner, settings)
    seconds = time.perf_counter() - start
    answers = read_parts(out, ["prediction"]).column("prediction").to_pylist()
    return seconds, [json.loads(a) for a in answers if a is not None]


def distance(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> dict[str, float]:
    """Labels that differ and the largest probability difference."""
    if [g["id"] for g in got] != [e["id"] for e in expected]:
        raise SystemExit("the runs answered different rows")
    labels = sum(g["label"] != e["label"] for g, e in zip(got, expected, strict=True))
    diff = max(
        (
            abs(g["probabilities"][k] - p)
            for g, e in zip(got, expected, strict=True)
            for k, p in e["probabilities"].items()
        ),
        default=0.0,
    )
    return {"labels_differ": labels, "max_prob_diff": diff}


def main() -> int:
    """Run the comparison and print it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data", help="the shared data folder")
    parser.add_argument("--work", default="/tmp/batch_predict", help="manifests, model, parts")
    parser.add_argument("--artifact", help="a trained AV-digits artifact (default: train one)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the trained model")
    parser.add_argument("--train-rows", type=int, default=0, help="train on N rows (0: all)")
    parser.add_argument("--rows", type=int, default=0, help="first N test rows (0: all 500)")
    parser.add_argument("--repeat", type=int, default=1, help="repeat the rows (bigger runs)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--actors", type=int, default=1, help="Ray workers per stage")
    parser.add_argument("--part-rows", type=int, default=1000)
    parser.add_argument("--ray-address", help="a running cluster (default: a local Ray)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    from polyfuse.batch.jobs import JobSettings
    from polyfuse.batch.runners import LocalRunner, RayRunner, connect

    artifact, data = prepare(args)
    n = len(data.read_text().splitlines())
    settings = JobSettings(batch_size=args.batch_size, part_rows=args.part_rows, actors=args.actors)
    print(f"{n} rows of {data}, model {artifact}", flush=True)
    results: dict[str, Any] = {"rows": n, "batch_size": args.batch_size, "actors": args.actors}
    base_s, expected = single(artifact, data, args.batch_size)
    results["single"] = {"seconds": base_s, "rows_per_s": n / base_s}
    local_s, local = job(artifact, data, Path(args.work) / "parts-local", LocalRunner(), settings)
    results["stages"] = {"seconds": local_s, "rows_per_s": n / local_s} | distance(local, expected)
    start = time.perf_counter()
    connect(args.ray_address)
    results["ray_start_s"] = time.perf_counter() - start
    ray_s, ray = job(
        artifact, data, Path(args.work) / "parts-ray", RayRunner(args.ray_address), settings
    )
    results["ray"] = {"seconds": ray_s, "rows_per_s": n / ray_s} | distance(ray, expected)
    print("\n| run | seconds | rows/s | x single time | labels differ | max |dp| |")
    print("|---|---|---|---|---|---|")
    for name in ("single", "stages", "ray"):
        r = results[name]
        ratio = r["seconds"] / base_s
        print(
            f"| {name} | {r['seconds']:.1f} | {r['rows_per_s']:.1f} | {ratio:.2f} "
            f"| {r.get('labels_differ', 0)} | {r.get('max_prob_diff', 0.0):.2g} |"
        )
    print(f"\nRay start (not in the times above): {results['ray_start_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
