"""ONNX export of an alignment artifact: Flickr8k dev R@5 and encoder speed, eager vs ONNX
fp32 vs ONNX int8.

Builds the Flickr8k alignment manifests from the shared data with the repository's builder
(1,800 train images x 5 captions, 200 validation images, the 1,000-image dev split), trains
one InfoNCE adapter pair as `benchmarks/flickr8k_retrieval.py` trains its seed 0 (frozen
EfficientNet-Lite0 and MiniLM pooled features from the feature cache, dim 512, dropout 0.5,
weight decay 0.5, ``--epochs``, epoch picked on validation R@5; QB-norm with the training
bank unless ``--no-querybank``) through `train_alignment`, and exports it with
`polyfuse.export.export_onnx` in fp32 and in int8 (static QDQ for the image encoder,
calibrated on the validation images; dynamic for MiniLM). Then:

* **quality**: the retrieval protocol (`Aligner.evaluate`: R@1/5/10 both ways) on the dev
  split for the eager artifact and both exports, with the R@5 deltas to eager;
* **speed**: each modality's encoder + adapters (eager `EmbedGraph`, ONNX fp32 and int8
  `OnnxEmbedder.run`) on batches of 1, 8 and 32 dev inputs, in interleaved rounds (each
  round runs every engine once per batch size), the median over rounds of items per
  second, ratios to eager; every engine on ``--threads`` intra-op threads.

    python benchmarks/export_retrieval.py --data ../shared/data --rounds 5 --json out.json

``--tiny`` runs every step on a few rows, one epoch and one short round (a smoke test).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from export import items_per_second  # noqa: E402  (the same timing loop as the classifier's)

ENGINES = ("eager", "onnx-fp32", "onnx-int8")


def build_data(data: str, work: Path, tiny: bool) -> dict[str, Path]:
    """Flickr8k alignment manifests (train/val/dev); ``tiny`` keeps a few images of each."""
    from polyfuse.datasets.flickr8k import build_alignment

    paths = build_alignment(data, work / "manifests")
    if not tiny:
        return paths
    small = {}
    for split, path in paths.items():
        lines = path.read_text().splitlines()[: 50 if split == "train" else 20]
        small[split] = path.with_name(f"tiny-{split}.jsonl")
        small[split].write_text("\n".join(lines) + "\n")
    return small


def train(paths: dict[str, Path], work: Path, epochs: int, querybank: bool) -> Path:
    """One adapter pair (seed 0), trained once (reused when its folder is complete)."""
    from polyfuse.core.config import Config
    from polyfuse.retrieval.pipeline import train_alignment

    out = work / f"align-e{epochs}{'-qb' if querybank else ''}"
    if not (out / "artifact.json").exists():
        config = {
            "task": "contrastive",
            "modalities": {
                "image": {"kind": "image", "encoder": "efficientnet_lite0"},
                "text": {"kind": "text", "encoder": "minilm"},
            },
            "model": {"dim": 512, "dropout": 0.5},
            "train": {
                "epochs": epochs,
                "batch_size": 256,
                "lr": 1e-3,
                "weight_decay": 0.5,
                "seed": 0,
            },
            "align": {"ensemble": 1, "querybank": querybank},
        }
        train_alignment(Config.from_dict(config), paths["train"], paths["val"], out, progress=False)
    return out


def export(art: Path, paths: dict[str, Path], work: Path) -> dict[str, Any]:
    """fp32 and int8 exports (int8 calibrated on the validation images; both measured on
    them by the exporter); returns their folders and what they recorded."""
    from polyfuse.export import export_onnx

    fp32 = export_onnx(art, work / "onnx-fp32", data=paths["val"])
    int8 = export_onnx(art, work / "onnx-int8", quantize="int8", data=paths["val"])
    return {
        "folders": {"onnx-fp32": fp32.folder, "onnx-int8": int8.folder},
        "val": int8.accuracy,
        "quantization": int8.quantization,
        "max_abs_diff_fp32": max(fp32.differences.values()),
    }


def quality(aligners: dict[str, Any], dev: Path) -> dict[str, Any]:
    """Engine -> the retrieval protocol on ``dev``, plus R@5 deltas to eager."""
    out = {e: a.evaluate(dev, progress=False) for e, a in aligners.items()}
    for engine in ENGINES[1:]:
        out[engine]["delta R@5"] = {
            d: out[engine][d]["R@5"] - out["eager"][d]["R@5"]
            for d in ("text_to_image", "image_to_text")
        }
    return out


def batches(aligner: Any, dev: Path, sizes: list[int]) -> dict[str, dict[int, Any]]:
    """Modality -> batch size -> one batch of dev inputs (distinct images, captions)."""
    from polyfuse.data.manifest import Manifest
    from polyfuse.inference.batches import load_batch

    rows = Manifest.load(dev, tuple(aligner.encoders)).rows
    out: dict[str, dict[int, Any]] = {}
    for m, enc in aligner.encoders.items():
        values = list(dict.fromkeys(r.values[m] for r in rows))
        values = [values[i % len(values)] for i in range(max(sizes))]
        out[m] = {b: load_batch(enc.contract, values[:b], field=m) for b in sizes}
    return out


def stage_fns(aligners: dict[str, Any]) -> dict[str, dict[str, Callable[..., Any]]]:
    """Engine -> modality -> ``fn(data, lengths)`` computing the embeddings."""
    from polyfuse.export.alignment import embedder

    eager = aligners["eager"]
    fns: dict[str, dict[str, Callable[..., Any]]] = {
        "eager": {m: embedder(eager, m) for m in eager.encoders}
    }
    for engine in ENGINES[1:]:
        fns[engine] = {m: e.run for m, e in aligners[engine].encoders.items()}
    return fns


def measure(
    aligners: dict[str, Any], data: dict[str, dict[int, Any]], rounds: int, seconds: float
) -> dict[str, Any]:
    """Median items/s per encoder, engine and batch size over interleaved rounds."""
    fns = stage_fns(aligners)
    samples: dict[str, list[float]] = {}
    for r in range(rounds):
        for m, by_size in data.items():
            for b, mb in by_size.items():
                for engine in ENGINES:
                    fn = fns[engine][m]
                    run = lambda fn=fn, mb=mb: fn(mb.data, mb.lengths)  # noqa: E731
                    key = f"encoder {m}|{b}|{engine}"
                    samples.setdefault(key, []).append(items_per_second(run, b, seconds))
        print(f"  round {r + 1}/{rounds} done", flush=True)
    table: dict[str, Any] = {}
    for key, values in samples.items():
        part, b, engine = key.split("|")
        table.setdefault(part, {}).setdefault(b, {})[engine] = statistics.median(values)
    for rows in table.values():
        for row in rows.values():
            row.update({f"{e} / eager": row[e] / row["eager"] for e in ENGINES[1:]})
    return table


def render(result: dict[str, Any]) -> str:
    """The tables as text."""
    lines = [f"Flickr8k dev retrieval ({result['dev_queries']:.0f} captions):"]
    for engine, metrics in result["quality"].items():
        cells = [
            f"{d[:1]}2{d.split('_')[-1][:1]} R@{k} {metrics[d][f'R@{k}']:.3f}"
            for d in ("text_to_image", "image_to_text")
            for k in (1, 5, 10)
        ]
        delta = metrics.get("delta R@5")
        if delta:
            cells.append(
                f"delta R@5 t2i {delta['text_to_image']:+.4f} i2t {delta['image_to_text']:+.4f}"
            )
        lines.append(f"  {engine:>9}: " + ", ".join(cells))
    lines.append(f"fp32 graphs within {result['export']['max_abs_diff_fp32']:.2g} of eager")
    for part, rows in result["speed"].items():
        lines.append(f"\n{part} (items/s, median of {result['rounds']} rounds; ratio to eager)")
        for b, row in rows.items():
            cells = [f"{e} {row[e]:.1f}" for e in ENGINES]
            ratios = [f"{e} {row[e + ' / eager']:.2f}x" for e in ENGINES[1:]]
            lines.append(f"  batch {b:>2}: " + ", ".join(cells) + "  |  " + ", ".join(ratios))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/polyfuse-bench/export_retrieval")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--no-querybank", action="store_true", help="rank without QB-norm")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0, help="per engine, batch, round")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of every engine")
    parser.add_argument("--tiny", action="store_true", help="smoke test: a few rows, 1 round")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    import torch

    from polyfuse.retrieval.pipeline import Aligner

    torch.set_num_threads(args.threads)  # ONNX sessions take the same count when they start
    work = Path(args.work) / ("tiny" if args.tiny else "full")
    sizes = [int(b) for b in args.batches.split(",")]
    if args.tiny:
        args.epochs, args.rounds, args.seconds, sizes = 1, 1, 0.05, [1, 2]
    paths = build_data(args.data, work, args.tiny)
    art = train(paths, work, args.epochs, not args.no_querybank)
    done = export(art, paths, work)
    aligners = {"eager": Aligner.load(art)}
    aligners.update({e: Aligner.load(f) for e, f in done["folders"].items()})
    scores = quality(aligners, paths["dev"])
    speed = measure(
        aligners, batches(aligners["eager"], paths["dev"], sizes), args.rounds, args.seconds
    )
    result = {
        "export": done,
        "quality": scores,
        "dev_queries": scores["eager"]["n"]["queries"],
        "speed": speed,
        "rounds": args.rounds,
        "threads": args.threads,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(render(result))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
