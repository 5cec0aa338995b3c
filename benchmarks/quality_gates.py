"""Quality gates: does a dead microphone still steer the AV-digits model?

Trains the AV-digits fused model (`examples/av_digits/fused.yaml`, clean variant) twice
side by side: as the example config ships it (quality gates on, ESC-50 substitution in
training) and with both turned off. Evaluates each on the unseen test speaker

- as recorded (clean accuracy);
- with every recording replaced by an ESC-50 clip from the test side of the build's
  split (environmental sound that training never heard), the image kept;

and reports accuracy with both modalities, with the image alone, and the Shapley share
of the audio (exact Shapley values of the true class's log-probability and of accuracy,
`polyfuse.evaluation.analyses.Contributions`).

    python benchmarks/quality_gates.py --data ../shared/data --work /tmp/quality-bench
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def esc50_test_clips(data: Path) -> list[Path]:
    """ESC-50 clips of the build's test side (`polyfuse.datasets.av_digits`), not silent."""
    import soundfile as sf

    from polyfuse.datasets.av_digits import noise_split

    out = []
    for wav in sorted((data / "esc50_8k").glob("*.wav")):
        if noise_split(wav.name) != "test":
            continue
        x, _ = sf.read(wav, dtype="float32", always_2d=True)
        if np.sqrt(np.mean(x.mean(1) ** 2)) >= 1e-4:
            out.append(wav)
    return out


def noise_manifest(test: Path, clips: list[Path], out: Path, seed: int = 0) -> Path:
    """``test`` with each recording replaced by a random 1-second window of an ESC-50 clip."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    folder = out.parent / "esc_audio"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, line in enumerate(test.open()):
        r = json.loads(line)
        r["image"] = str((test.parent / r["image"]).resolve())
        x, rate = sf.read(clips[int(rng.integers(len(clips)))], dtype="float32", always_2d=True)
        x = x.mean(1)
        n = min(x.size, rate)
        start = int(rng.integers(0, x.size - n + 1))
        path = folder / f"{i}.wav"
        sf.write(path, x[start : start + n], rate)
        r["audio"] = str(path)
        rows.append(r)
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/quality-bench")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", dest="json_out")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from polyfuse.core.config import Config
    from polyfuse.datasets.av_digits import AVDigitsSpec, build
    from polyfuse.evaluation.analyses import Contributions
    from polyfuse.evaluation.analysis import analyze
    from polyfuse.train import Trainer

    data, work = Path(args.data), Path(args.work)
    t0 = time.perf_counter()
    manifests = build(data, work / "clean", AVDigitsSpec(variant="clean"), progress=False)
    gated = yaml.safe_load((ROOT / "examples" / "av_digits" / "fused.yaml").read_text())
    gated["train"]["seed"] = args.seed
    plain = copy.deepcopy(gated)
    for mod in plain["modalities"].values():
        mod["quality"] = False
        mod.pop("substitute", None)
    noisy = noise_manifest(manifests["test"], esc50_test_clips(data), work / "esc_test.jsonl")
    rows: list[dict[str, Any]] = []
    for name, cfg in (("gates + substitution (example config)", gated), ("plain", plain)):
        out = work / ("gated" if cfg is gated else "plain") / f"s{args.seed}"
        if not (out / "artifact.json").exists():
            print(f"training {name} ...", flush=True)
            Trainer(Config.from_dict(cfg), out, progress=False, reference=False).fit(
                manifests["train"], manifests["val"]
            )
        for feed, manifest in (("clean", manifests["test"]), ("ESC-50 for speech", noisy)):
            both = analyze(
                out, manifest, [Contributions(permutations=0)], progress=False, device="cpu"
            )
            image = analyze(out, manifest, [], modalities=["image"], progress=False, device="cpu")
            shares = both.contributions.value_functions
            row = {
                "model": name,
                "feed": feed,
                "both": both.metrics["accuracy"],
                "image only": image.metrics["accuracy"],
                "audio share (log-prob)": shares["log_prob"]["share"]["audio"],
                "audio share (accuracy)": shares["accuracy"]["share"]["audio"],
                "rows": both.metrics["n"],
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| model | feed | both | image only | audio Shapley share (log-prob / accuracy) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['feed']} | {r['both']:.3f} | {r['image only']:.3f} | "
            f"{r['audio share (log-prob)']:.1%} / {r['audio share (accuracy)']:.1%} |"
        )
    print(f"{time.perf_counter() - t0:.0f} s in all")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
