"""The quality gate on AV-digits: three candidates against a champion.

A release gate judges a candidate on held-out data like the data it will serve. Here: the
hard AV-digits build, its training manifest split by recording take into training rows
(four takes of every five) and a gate split (the fifth takes the validation split does not
hold: 200 rows, 50 per speaker, never trained on). Four models are trained (or reused,
with --resume), all from ``examples/av_digits/fused.yaml``, seed 0, early-stopped on the
build's validation split:

- ``champion``: concat fusion with modality dropout, trained on every other training row
  (the model in production, trained on last quarter's data);
- ``better``: the example config as it is (gated fusion with modality dropout);
- ``alone_worse``: cross-attention fusion without modality dropout and without the
  per-modality auxiliary losses: better with both inputs, but it never learned to answer
  from one modality alone;
- ``bad_slice``: the example config trained on a data pull that lost nine in ten of one
  digit's recordings (``7``): that class becomes the model's blind spot;
- ``frozen_audio``: the champion's config with the audio encoder left as initialised
  (``encoder_lr: 0``): the canary of ``benchmarks/canary_rollback.py``, worse on audio.

The hard build buries the speech at -6..0 dB SNR under ESC-50 noise, where the audio
quality gate's speech detector (Silero VAD) rejects many clips as "no speech" (the script
counts them on the gate split with the default check, per SNR band); the models here keep
the gate's silence, clipping and stuck-signal checks and turn its speech check off.

Then runs the gate (`polyfuse.release.gate.run_gate`, what ``polyfuse gate`` runs) for each
candidate against the champion with ``examples/av_digits/gates.yaml`` and prints every
verdict with its measured value, threshold and bootstrap interval.

    python benchmarks/release_gate.py --work /tmp/polyfuse-bench/gate [--resume] [--json F]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "av_digits"
LOST_LABEL = 7
GATE_EVERY = 5


def configs() -> dict[str, dict[str, Any]]:
    """Model name -> training config."""
    fused = yaml.safe_load((EXAMPLES / "fused.yaml").read_text())
    fused["modalities"]["audio"]["quality"] = {"speech": False}  # see the module docstring
    champion = copy.deepcopy(fused)
    champion["model"]["fusion"] = "concat"
    alone_worse = copy.deepcopy(fused)
    alone_worse["model"]["fusion"] = "cross_attention"
    for mod in alone_worse["modalities"].values():
        mod["dropout"] = 0.0
        mod["loss_weight"] = 0.0
    frozen_audio = copy.deepcopy(champion)
    frozen_audio["modalities"]["audio"]["encoder_lr"] = 0.0
    return {
        "champion": champion,
        "better": copy.deepcopy(fused),
        "alone_worse": alone_worse,
        "bad_slice": copy.deepcopy(fused),
        "frozen_audio": frozen_audio,
    }


def take_of(row: dict[str, Any]) -> int:
    """The FSDD take of a row (ids look like ``3_george_17-0``: digit, speaker, take)."""
    return int(str(row["id"]).split("_")[2].split("-")[0])


def split(train: Path, work: Path) -> dict[str, Path]:
    """Training rows, the gate split, every other training row, and the training rows
    without most of one digit (paths made absolute so the manifests live in ``work``)."""
    base = train.parent
    out = {
        "train": work / "train_core.jsonl",
        "gate": work / "gate.jsonl",
        "train_half": work / "train_half.jsonl",
        "train_lost_label": work / f"train_without_most_{LOST_LABEL}.jsonl",
    }
    files = {k: v.open("w") for k, v in out.items()}
    counts: dict[str, int] = {}
    with train.open() as src:
        for line in src:
            row = json.loads(line)
            for k in ("image", "audio"):
                if row.get(k):
                    row[k] = str(base / row[k])
            text = json.dumps(row) + "\n"
            if take_of(row) % GATE_EVERY == 0:
                files["gate"].write(text)
                continue
            files["train"].write(text)
            kept = counts.get("train", 0)
            counts["train"] = kept + 1
            if kept % 2 == 0:
                files["train_half"].write(text)
            if row.get("label") != LOST_LABEL or take_of(row) % 10 == 1:
                files["train_lost_label"].write(text)
    for f in files.values():
        f.close()
    return out


def speech_rejections(manifest: Path, artifact: Path) -> dict[str, str]:
    """SNR band -> how many of its clips the default audio gate calls "no speech"."""
    from collections import Counter

    from polyfuse.artifacts.classifier import load_artifact
    from polyfuse.modalities.quality import AudioQuality

    contract = load_artifact(artifact).contracts["audio"]
    check, failed, seen = AudioQuality(), Counter[str](), Counter[str]()
    for line in manifest.open():
        row = json.loads(line)
        band = str(row.get("snr_db"))
        seen[band] += 1
        failed[band] += not check.evaluate(contract.load(row["audio"]), contract).ok
    return {b: f"{failed[b]} of {seen[b]}" for b in sorted(seen)}


def train(
    name: str, cfg: dict[str, Any], train_m: Path, val_m: Path, out: Path, resume: bool
) -> None:
    from polyfuse.core.config import Config
    from polyfuse.train import Trainer

    if resume and (out / "artifact.json").exists():
        print(f"  {name}: reusing {out}", flush=True)
        return
    start = time.perf_counter()
    cfg = copy.deepcopy(cfg)
    source = cfg["modalities"]["audio"].get("substitute", {}).get("source")
    if source and not Path(source).is_absolute():  # relative to the data, as in the example
        cfg["modalities"]["audio"]["substitute"]["source"] = str(val_m.parent / source)
    Trainer(Config.from_dict(cfg), out, progress=False, card=False).fit(train_m, val_m)
    print(f"  {name}: trained in {time.perf_counter() - start:.0f} s", flush=True)


def render(name: str, data: dict[str, Any]) -> list[str]:
    """One candidate's verdicts."""
    lines = [f"\n{name}: {'PASSED' if data['passed'] else 'FAILED'} ({data['n']} rows)"]
    for r in data["rules"]:
        extra = ""
        if "interval" in r:
            ci = r["interval"]
            extra = (
                f"  diff {r['difference']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}]"
                f" cand {r['candidate']:.3f} champ {r['champion']:.3f}"
            )
        elif "worst" in r:
            extra = f"  worst {r['worst']} {r['worst_value']:.3f} vs {r['overall']:.3f}"
        lines.append(
            f"  {'pass' if r['passed'] else 'FAIL'}  {r['rule']:<58} "
            f"{r['value']:>8.3f} vs {r['threshold']:>7.3f}{extra}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/polyfuse-bench/gate")
    parser.add_argument("--rules", default=str(EXAMPLES / "gates.yaml"))
    parser.add_argument("--resume", action="store_true", help="reuse trained models")
    parser.add_argument("--json", dest="json_out", help="write every verdict here")
    args = parser.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from polyfuse.datasets.av_digits import AVDigitsSpec, build
    from polyfuse.release.gate import run_gate

    work = Path(args.work)
    paths = build(args.data, work / "hard", AVDigitsSpec("hard"), progress=False)
    parts = split(Path(paths["train"]), work)
    print({k: sum(1 for _ in v.open()) for k, v in parts.items()}, flush=True)
    for name, cfg in configs().items():
        data = {"champion": parts["train_half"], "bad_slice": parts["train_lost_label"]}.get(
            name, parts["train"]
        )
        train(name, cfg, data, Path(paths["val"]), work / "models" / name, args.resume)

    champion = work / "models" / "champion"
    rejected = speech_rejections(parts["gate"], champion)
    print(f"default speech check, clips called 'no speech' per SNR band: {rejected}", flush=True)
    report: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "speech_rejections": rejected,
        "candidates": {},
    }
    for name in ("better", "alone_worse", "bad_slice", "frozen_audio"):
        result = run_gate(work / "models" / name, parts["gate"], args.rules, champion=champion)
        report["candidates"][name] = result.to_dict()
        print("\n".join(render(name, result.to_dict())), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
