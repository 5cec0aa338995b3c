"""AV-digits leave-one-speaker-out: the audio CNN vs the frozen Whisper base encoder.

For every FSDD speaker of AV-digits (george, jackson, nicolas, theo, yweweler) the dataset is
built with that speaker held out of training and validation, and four models are trained
on the other four and evaluated on the held-out one:

* ``audio_cnn``: audio only, the small trainable CNN (examples/av_digits/audio_only.yaml),
* ``audio_whisper``: audio only, frozen Whisper base + adapter (audio_whisper.yaml),
* ``fused``: image CNN + audio CNN (fused.yaml), evaluated fed both, image only, audio only,
* ``fused_whisper``: image CNN + frozen Whisper audio (fused_whisper.yaml), likewise.

It prints the accuracy per held-out speaker, the means and minimums, and the acceptance
figures (audio-only Whisper >= 0.90 on every held-out speaker and on average; fused Whisper
not below today's fused model). Whisper's features are cached by input content, so each
clip is encoded once across all folds (the first fold pays the encoding).

    python benchmarks/av_digits_loso.py --data ../shared/data --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "av_digits"
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from av_digits import run_one  # noqa: E402  (train + evaluate one model, one process)

#: model name -> its config in examples/av_digits.
MODELS = {
    "audio_cnn": "audio_only",
    "audio_whisper": "audio_whisper",
    "fused": "fused",
    "fused_whisper": "fused_whisper",
}
#: The audio-only accuracy the frozen speech encoder must reach on every held-out speaker.
TARGET = 0.90


def accuracy(row: dict[str, Any], feed: str) -> float | None:
    """The row's accuracy fed ``feed`` (``both``, ``image only``, ``audio only``); the
    unimodal models' single figure counts as their ``audio only``."""
    if feed == "audio only" and "audio only" not in row:
        return float(row["both"])
    value = row.get(feed)
    return None if value is None else float(value)


def table(rows: list[dict[str, Any]], variant: str, speakers: list[str]) -> dict[str, Any]:
    """model -> feed -> speaker -> accuracy, with ``mean`` and ``min`` per feed."""
    out: dict[str, Any] = {}
    for r in rows:
        if r["variant"] != variant:
            continue
        model, speaker = r["model"].split("@")
        unimodal = model.startswith("audio")
        feeds = ("audio only",) if unimodal else ("both", "image only", "audio only")
        for feed in feeds:
            value = accuracy(r, feed)
            if value is not None:
                out.setdefault(model, {}).setdefault(feed, {})[speaker] = value
    for feeds in out.values():
        for cells in feeds.values():
            done = [cells[s] for s in speakers if s in cells]
            cells["mean"] = round(statistics.fmean(done), 4)
            cells["min"] = min(done)
    return out


def render(result: dict[str, Any], variant: str, speakers: list[str]) -> str:
    """Markdown table plus the acceptance lines."""
    lines = [
        f"### {variant} variant",
        "",
        f"| model | fed | {' | '.join(speakers)} | mean | min |",
        f"|---|---|{'---|' * (len(speakers) + 2)}",
    ]
    for model, feeds in result.items():
        for feed, cells in feeds.items():
            values = [f"{cells[s]:.3f}" if s in cells else "-" for s in [*speakers, "mean", "min"]]
            lines.append(f"| {model} | {feed} | {' | '.join(values)} |")
    lines.append("")
    audio_w = result.get("audio_whisper", {}).get("audio only")
    audio_c = result.get("audio_cnn", {}).get("audio only")
    if audio_w and audio_c:
        lines.append(
            f"- audio only, frozen Whisper: mean {audio_w['mean']:.3f}, min {audio_w['min']:.3f} "
            f"(target {TARGET:.2f}: mean {'met' if audio_w['mean'] >= TARGET else 'NOT met'}, "
            f"every speaker {'met' if audio_w['min'] >= TARGET else 'NOT met'}); audio CNN "
            f"mean {audio_c['mean']:.3f}, ratio {audio_w['mean'] / audio_c['mean']:.3f}"
        )
    fused, fused_w = result.get("fused"), result.get("fused_whisper")
    if fused and fused_w:
        both, both_w = fused["both"], fused_w["both"]
        lines.append(
            f"- fused, both modalities: Whisper {both_w['mean']:.3f} vs today's "
            f"{both['mean']:.3f} (ratio {both_w['mean'] / both['mean']:.3f}; "
            f"{'not lower' if both_w['mean'] >= both['mean'] else 'LOWER'})"
        )
        lines.append(
            f"- fused fed audio only: Whisper {fused_w['audio only']['mean']:.3f} vs today's "
            f"{fused['audio only']['mean']:.3f}; fed image only: "
            f"{fused_w['image only']['mean']:.3f} vs {fused['image only']['mean']:.3f}"
        )
    return "\n".join(lines)


def encode_cost(test_manifest: str, clips: int) -> dict[str, float]:
    """Median milliseconds per clip, one clip at a time on one thread, of the frozen Whisper
    encoder (window and all; what a cache miss costs) and of the audio CNN, side by side
    on the same clips of ``test_manifest`` (preprocessing excluded)."""
    import torch

    from polyfuse.data.manifest import Manifest
    from polyfuse.encoders import build_encoder, resolve_contract

    torch.set_num_threads(1)
    rows = Manifest.load(Path(test_manifest), ["audio"]).rows[:clips]
    times: dict[str, float] = {}
    for model, config in (("whisper_base", "audio_whisper"), ("audio_cnn", "audio_only")):
        audio = yaml.safe_load((EXAMPLES / f"{config}.yaml").read_text())["modalities"]["audio"]
        params = {k: v for k, v in audio["encoder"].items() if k != "name"}
        contract = resolve_contract("audio", "audio", model, params, audio.get("contract", {}))
        encoder = build_encoder(model, contract, params).eval()
        mels = [contract.preprocess(contract.load(r.values["audio"])) for r in rows]
        spent = []
        with torch.no_grad():
            encoder(mels[0][None])  # warm-up
            for mel in mels:
                start = time.perf_counter()
                encoder(mel[None])
                spent.append(time.perf_counter() - start)
        times[model] = round(1000 * statistics.median(spent), 2)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument(
        "--work", default="/tmp/polyfuse-bench/av_digits_loso", help="generated data and runs"
    )
    parser.add_argument("--variants", default="clean", help="clean, hard or clean,hard")
    parser.add_argument("--speakers", default="george,jackson,nicolas,theo,yweweler")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override every config's epochs")
    parser.add_argument("--jobs", type=int, default=1, help="trainings run in parallel")
    parser.add_argument("--json", dest="json_out", help="write all rows and tables here")
    parser.add_argument("--resume", action="store_true", help="reuse finished runs under --work")
    parser.add_argument(
        "--cost-clips", type=int, default=100, help="clips timed for the encode cost (0: skip)"
    )
    args = parser.parse_args()

    from polyfuse.datasets.av_digits import AVDigitsSpec, build

    speakers = args.speakers.split(",")
    models = {m: MODELS[m] for m in args.models.split(",")}
    threads = max(1, (os.cpu_count() or 2) // args.jobs)
    jobs = []
    for variant in args.variants.split(","):
        for speaker in speakers:
            paths = build(
                args.data,
                Path(args.work) / f"{variant}-{speaker}",
                AVDigitsSpec(variant, test_speaker=speaker),
                progress=False,
            )
            for model, config in models.items():
                cfg = yaml.safe_load((EXAMPLES / f"{config}.yaml").read_text())
                jobs.append(
                    {
                        "variant": variant,
                        "name": f"{model}@{speaker}",
                        "config": cfg,
                        "seed": args.seed,
                        "epochs": args.epochs,
                        "threads": threads,
                        "work": args.work,
                        "resume": args.resume,
                        **{k: str(v) for k, v in paths.items()},
                    }
                )
    print(f"{len(jobs)} trainings, {args.jobs} at a time, {threads} torch threads each", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run_one, jobs))
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rows": rows,
        "tables": {},
    }
    for variant in args.variants.split(","):
        report["tables"][variant] = table(rows, variant, speakers)
        print()
        print(render(report["tables"][variant], variant, speakers))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    if args.cost_clips:
        report["encode_ms"] = encode_cost(jobs[0]["test"], args.cost_clips)
        print(
            f"encode cost per clip (median of {args.cost_clips}, one thread, shared CPU): "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in report["encode_ms"].items())
        )
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
