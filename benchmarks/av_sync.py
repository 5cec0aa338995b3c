"""A/V desync: the learned sync model vs the signal baseline, side by side on video digits.

Two video-digits builds from the same seed (`polyfuse.datasets.video_digits`): one in sync
(offset 0) whose training speakers' clips train the learned model
(`polyfuse.train.sync.fit_sync`), and one whose rows carry offsets drawn from
``--offsets-ms`` (default 0, +-40, +-80, +-120, +-200, +-400 ms), of which only the test
split is scored: a speaker never heard in training and MNIST images never seen. Each
scored clip is decoded by the product's reader (every frame, the soundtrack at 16 kHz)
and both methods estimate its offset. Printed per method: the median absolute error of
the offset (all clips and per true offset), the AUC of |estimate| for telling offsets of
``--threshold-ms`` and more from smaller ones, and the flag's TPR / FPR at that threshold.

    python benchmarks/av_sync.py --data ../shared/data --work /tmp/polyfuse-bench/av_sync
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

OFFSETS = "0,40,-40,80,-80,120,-120,200,-200,400,-400"


def auc(pos: list[float], neg: list[float]) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney)."""
    if not pos or not neg:
        return float("nan")
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((p > n).sum() + 0.5 * (p == n).sum()) / (p.size * n.size))


def read_clip(path: Path, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Every frame (grey) with its time, and the soundtrack at 16 kHz (None without one)."""
    from polyfuse.modalities.readers.video import FrameSampling, decode_soundtrack, decode_video

    data = path.read_bytes()
    video = decode_video(data, sampling=FrameSampling(mode="fps", fps=fps, frames=100_000))
    wave = decode_soundtrack(data, sample_rate=16_000)
    return video.frames.mean(axis=-1), video.timestamps, wave


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """A manifest's rows."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data", help="folder with mnist/ and fsdd/")
    parser.add_argument("--work", default="/tmp/polyfuse-bench/av_sync")
    parser.add_argument("--offsets-ms", default=OFFSETS)
    parser.add_argument("--takes", type=int, default=20, help="takes per digit and speaker")
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--threshold-ms", type=float, default=120.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shift-share", type=float, default=1.0)
    parser.add_argument("--save-model", default=None, help="save the learned model here")
    parser.add_argument("--json", default=None, help="write the results here")
    return parser.parse_args()


def summary(rows: list[dict[str, Any]], name: str, threshold: float) -> dict[str, Any]:
    """One method's errors, AUC and flag rates over the scored clips."""
    ok = [r for r in rows if r[name] is not None]
    err = [abs(r[name] - r["true"]) for r in ok]
    pos = [abs(r[name]) for r in ok if abs(r["true"]) >= threshold]
    neg = [abs(r[name]) for r in ok if abs(r["true"]) < threshold]
    per = {
        off: statistics.median([abs(r[name] - r["true"]) for r in ok if r["true"] == off])
        for off in sorted({r["true"] for r in ok})
    }
    return {
        "clips": len(ok),
        "no_estimate": len(rows) - len(ok),
        "median_abs_error_ms": statistics.median(err) if err else float("nan"),
        "auc": auc(pos, neg),
        "tpr": float(np.mean([p >= threshold for p in pos])) if pos else float("nan"),
        "fpr": float(np.mean([n >= threshold for n in neg])) if neg else float("nan"),
        "per_offset_median_error_ms": per,
        "ms_per_clip_p50": 1000 * statistics.median(r[f"{name}_s"] for r in rows),
    }


def report(result: dict[str, Any], threshold: float) -> None:
    """The tables."""
    methods = result["methods"]
    print(
        f"\ntest clips with a soundtrack: {methods['signal']['clips']}; learned model trained "
        f"on {result['train_clips']} in-sync clips in {result['train_s']:.0f} s"
    )
    print(f"\n| method | AUC (>= {threshold:g} ms) | flag TPR / FPR | median abs error ms "
          "| ms per clip (p50) |")  # fmt: skip
    print("|---|---|---|---|---|")
    for m, s in methods.items():
        print(
            f"| {m} | {s['auc']:.3f} | {s['tpr']:.3f} / {s['fpr']:.3f} | "
            f"{s['median_abs_error_ms']:.1f} | {s['ms_per_clip_p50']:.1f} |"
        )
    offsets = list(methods["signal"]["per_offset_median_error_ms"])
    print("\nmedian abs error (ms) per true offset\n")
    print("| method | " + " | ".join(f"{o:+d}" for o in offsets) + " |")
    print("|---|" + "---|" * len(offsets))
    for m, s in methods.items():
        per = s["per_offset_median_error_ms"]
        print(f"| {m} | " + " | ".join(f"{per[o]:.0f}" for o in offsets) + " |")
    ls, ss = methods["learned"], methods["signal"]
    ratio = ls["median_abs_error_ms"] / max(ss["median_abs_error_ms"], 1e-9)
    print(f"\nlearned / signal median error: {ratio:.2f}x; AUC {ls['auc']:.3f} vs {ss['auc']:.3f}")


def main() -> int:
    args = _args()
    import torch

    torch.set_num_threads(args.threads)
    from polyfuse.datasets.video_digits import VideoDigitsSpec, build, parse_offsets
    from polyfuse.modalities.sync import SignalSync
    from polyfuse.models.sync import SyncSettings, sync_inputs
    from polyfuse.train.sync import SyncTraining, fit_sync

    data, work = Path(args.data), Path(args.work)
    mnist, fsdd = data / "mnist" / "mnist_test_0_8000.npz", data / "fsdd"
    base = VideoDigitsSpec(takes=args.takes, fps=args.fps, no_audio=0.0, silent=0.0)
    t0 = time.perf_counter()
    in_sync = build(mnist, fsdd, work / "in_sync", replace(base, offsets_ms=(0,)))
    offsets = parse_offsets(args.offsets_ms)
    shifted = build(mnist, fsdd, work / "shifted", replace(base, offsets_ms=offsets))
    print(f"built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)

    settings = SyncSettings(threshold_ms=args.threshold_ms)
    train = []
    for row in read_jsonl(in_sync["train"]):
        frames, times, wave = read_clip(in_sync["train"].parent / row["video"], args.fps)
        if wave is not None:
            train.append(sync_inputs(settings, frames, times, wave, 16_000))
    t0 = time.perf_counter()
    training = SyncTraining(epochs=args.epochs, shift_share=args.shift_share)
    learned = fit_sync(train, settings, training)
    if args.save_model:
        learned.save(args.save_model)
    train_s = time.perf_counter() - t0
    signal = SignalSync(threshold_ms=args.threshold_ms)

    rows: list[dict[str, Any]] = []
    for row in read_jsonl(shifted["test"]):
        frames, times, wave = read_clip(shifted["test"].parent / row["video"], args.fps)
        if wave is None:
            continue
        out: dict[str, Any] = {"id": row["id"], "true": row["offset_ms"]}
        for name, method in (("signal", signal), ("learned", learned)):
            t = time.perf_counter()
            est = method.estimate(frames, times, wave, 16_000)
            out[f"{name}_s"] = time.perf_counter() - t
            out[name] = None if est is None else est.offset_ms
        rows.append(out)

    result = {
        "args": vars(args),
        "train_clips": len(train),
        "train_s": round(train_s, 1),
        "learned_metrics": learned.metrics,
        "methods": {m: summary(rows, m, args.threshold_ms) for m in ("signal", "learned")},
    }
    report(result, args.threshold_ms)
    if args.json:
        Path(args.json).write_text(json.dumps({**result, "rows": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
