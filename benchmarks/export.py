"""ONNX export: eager vs traced vs ONNX fp32 vs ONNX int8, per encoder and end to end, with
the accuracy each export keeps.

Builds AV-digits (clean) from the shared data with the repo's builder, trains the demo-like
fused model (examples/av_digits/fused.yaml, ``--epochs``), exports it twice with
`polyfuse.export.export_onnx` (fp32, and int8 calibrated on the validation split; both
measured on the test speaker), then times:

* **per encoder**: the encoder + adapter stage of each modality as serving runs it, eager
  (`EncodeStage.run`), TorchScript-traced (`trace_stage`), ONNX fp32 and ONNX int8
  (`OnnxEncoder.run`), on batches of 1, 8 and 32 test inputs;
* **end to end**: encode + fuse of the whole model on the same batches (eager, ONNX fp32,
  ONNX int8; tracing covers encoders only).

Rounds interleave the engines (each round runs every engine once per batch size) and the
figure is the median over rounds of items per second; ratios are over eager. All engines
use ``--threads`` intra-op threads (torch and ONNX Runtime alike).

    python benchmarks/export.py --data ../shared/data --epochs 8 --rounds 7 --json export.json

Flickr8k retrieval R@5 (fp32 vs int8) of an exported alignment artifact is measured by
`benchmarks/export_retrieval.py`.
``--tiny`` runs every step on a few rows, one epoch and one short round (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("eager", "traced", "onnx-fp32", "onnx-int8")


def build_data(data: str, work: Path, tiny: bool) -> dict[str, Path]:
    """AV-digits clean manifests (train/val/test); ``tiny`` keeps a few rows of each."""
    from polyfuse.datasets.av_digits import AVDigitsSpec, build

    paths = build(data, work / "av_digits", AVDigitsSpec(variant="clean"), progress=False)
    if not tiny:
        return paths
    small = {}
    for split, path in paths.items():
        lines = path.read_text().splitlines()[: 60 if split == "train" else 24]
        small[split] = path.with_name(f"tiny-{split}.jsonl")
        small[split].write_text("\n".join(lines) + "\n")
    return small


def train(paths: dict[str, Path], work: Path, epochs: int) -> Path:
    """The fused demo-like model, trained once (reused when its folder is complete)."""
    from polyfuse.core.config import Config
    from polyfuse.train import Trainer

    out = work / f"fused-e{epochs}"
    if not (out / "artifact.json").exists():
        cfg = yaml.safe_load((ROOT / "examples" / "av_digits" / "fused.yaml").read_text())
        cfg.setdefault("train", {})["epochs"] = epochs
        cfg["train"]["card"] = False
        Trainer(Config.from_dict(cfg), out, progress=False).fit(paths["train"], paths["val"])
    return out


def export(art: Path, paths: dict[str, Path], work: Path) -> dict[str, Any]:
    """fp32 and int8 exports, accuracy on the test split; returns their folders and metrics."""
    from polyfuse.export import export_onnx

    fp32 = export_onnx(art, work / "onnx-fp32", data=paths["test"])
    int8 = export_onnx(art, work / "onnx-int8", quantize="int8", data=paths["test"])
    return {
        "folders": {"onnx-fp32": fp32.folder, "onnx-int8": int8.folder},
        "accuracy": int8.accuracy,
        "quantization": int8.quantization,
        "max_abs_diff_fp32": max(fp32.differences.values()),
    }


def batches(art: Any, test: Path, sizes: list[int]) -> dict[int, Any]:
    """Batch size -> one batch of test inputs (every modality present)."""
    from polyfuse.data.manifest import Manifest
    from polyfuse.inference.predict import Predictor

    predictor = Predictor(art, "cpu", max(sizes))
    manifest = Manifest.load(test, predictor.modalities, art.config.label)
    full = next(iter(predictor.loader(predictor.dataset(manifest))))
    return {b: _head(full, b) for b in sizes}


def _head(batch: Any, n: int) -> Any:
    """The first ``n`` rows of a collated batch (rows repeat when the batch is shorter)."""
    import torch

    from polyfuse.modalities.base import ModalityBatch

    inputs = {}
    for m, mb in batch.inputs.items():
        # ``data`` and ``lengths`` hold the present rows only (a row may lack a modality)
        rows = torch.arange(n) % mb.data.shape[0]
        lengths = None if mb.lengths is None else mb.lengths[rows]
        present = torch.ones(n, dtype=torch.bool)
        inputs[m] = ModalityBatch(mb.data[rows], present, lengths)
    return inputs


def stage_fns(art: Any, exported: dict[str, Any], sample: Any) -> dict[str, dict[str, Callable]]:
    """Engine -> modality -> the encoder + adapter stage in `StageFn` form."""
    from polyfuse.models.stages import EncodeStage
    from polyfuse.serve.runtime.stages import trace_stage

    model = art.model
    fns: dict[str, dict[str, Callable]] = {e: {} for e in ENGINES}
    for m in model.modalities:
        mb = sample[m]
        stage = EncodeStage(
            model.encoder(m),
            model.adapters[m],
            tokens=model.fusion.uses_tokens,
            lengths=mb.lengths is not None,
        ).eval()
        fns["eager"][m] = stage.run
        traced, status = trace_stage(stage, [mb])
        fns["traced"][m] = traced or stage.run
        if traced is None:
            print(f"  {m}: traced falls back to eager ({status})", flush=True)
        for engine in ("onnx-fp32", "onnx-int8"):
            fns[engine][m] = exported[engine].model.encoder(m).run
    return fns


def items_per_second(fn: Callable[[], Any], batch: int, seconds: float) -> float:
    """Calls ``fn`` for about ``seconds`` (after one warm-up call); items per second."""
    import torch

    with torch.inference_mode():
        fn()
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or calls < 3:
            fn()
            calls += 1
    return calls * batch / (time.perf_counter() - start)


def measure(
    art: Any, exported: dict[str, Any], data: dict[int, Any], rounds: int, seconds: float
) -> dict[str, Any]:
    """Median items/s over interleaved rounds: per encoder and end to end."""
    fns = stage_fns(art, exported, data[max(data)])
    models = {"eager": art.model, **{e: exported[e].model for e in ("onnx-fp32", "onnx-int8")}}
    samples: dict[str, list[float]] = {}
    for r in range(rounds):
        for b, inputs in data.items():
            for engine in ENGINES:
                for m, fn in fns[engine].items():
                    mb = inputs[m]
                    key = f"encoder {m}|{b}|{engine}"
                    run = lambda fn=fn, mb=mb: fn(mb.data, mb.lengths)  # noqa: E731
                    samples.setdefault(key, []).append(items_per_second(run, b, seconds))
                if engine in models:
                    model = models[engine]
                    e2e = lambda model=model, i=inputs, b=b: model.fuse(model.encode(i, b))  # noqa: E731
                    key = f"end to end|{b}|{engine}"
                    samples.setdefault(key, []).append(items_per_second(e2e, b, seconds))
        print(f"  round {r + 1}/{rounds} done", flush=True)
    table: dict[str, Any] = {}
    for key, values in samples.items():
        part, b, engine = key.split("|")
        table.setdefault(part, {}).setdefault(b, {})[engine] = statistics.median(values)
    for rows in table.values():
        for row in rows.values():
            eager = row["eager"]
            row.update(
                {f"{e} / eager": row[e] / eager for e in ENGINES if e in row and e != "eager"}
            )
    return table


def render(result: dict[str, Any]) -> str:
    """The tables as text."""
    lines = []
    acc = result["export"]["accuracy"]
    fp32, int8 = acc.get("fp32", {}), acc.get("int8", {})
    lines.append(
        f"AV-digits test accuracy: fp32 {fp32.get('accuracy', float('nan')):.4f}, int8 "
        f"{int8.get('accuracy', float('nan')):.4f} "
        f"(delta {100 * (int8.get('accuracy', 0) - fp32.get('accuracy', 0)):+.2f} points); "
        f"fp32 graphs within {result['export']['max_abs_diff_fp32']:.2g} of eager"
    )
    for part, rows in result["speed"].items():
        lines.append(f"\n{part} (items/s, median of {result['rounds']} rounds; ratio to eager)")
        for b, row in rows.items():
            cells = [f"{e} {row[e]:.0f}" for e in ENGINES if e in row]
            ratios = [f"{e} {row[e + ' / eager']:.2f}x" for e in ENGINES[1:] if e in row]
            lines.append(f"  batch {b:>2}: " + ", ".join(cells) + "  |  " + ", ".join(ratios))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/polyfuse-bench/export")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0, help="per engine, batch, round")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every engine")
    parser.add_argument("--tiny", action="store_true", help="smoke test: a few rows, 1 round")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    import torch

    from polyfuse.artifacts.classifier import load_artifact

    torch.set_num_threads(args.threads)  # ONNX sessions take the same count when they start
    work = Path(args.work) / ("tiny" if args.tiny else "full")
    sizes = [int(b) for b in args.batches.split(",")]
    if args.tiny:
        args.epochs, args.rounds, args.seconds, sizes = 1, 1, 0.05, [1, 2]
    paths = build_data(args.data, work, args.tiny)
    art_path = train(paths, work, args.epochs)
    done = export(art_path, paths, work)
    art = load_artifact(art_path)
    exported = {e: load_artifact(f) for e, f in done["folders"].items()}
    speed = measure(art, exported, batches(art, paths["test"], sizes), args.rounds, args.seconds)
    result = {"export": done, "speed": speed, "rounds": args.rounds, "threads": args.threads}
    print(render(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
