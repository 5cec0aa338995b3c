"""The quality gate on AV-digits: three candidates against a champion.

Trains (or reuses, with --resume) four models on the hard AV-digits build, all from
``examples/av_digits/fused.yaml`` with seed 0:

- ``champion``: concat fusion with modality dropout (the model in production);
- ``better``: the example config as it is (gated fusion with modality dropout);
- ``audio_worse``: gated fusion trained without modality dropout and without the
  per-modality auxiliary losses, so the fusion never learns to answer from one modality:
  as good or better with both inputs, worse with audio alone;
- ``bad_slice``: the example config trained on a "cleaned" manifest that drops the
  noisiest third of the training rows (SNR -6..-4 dB), so that slice of the test stream
  suffers.

Then runs ``polyfuse gate`` (the Python API) for each candidate against the champion on
the held-out test stream (a speaker never heard in training) with
``examples/av_digits/gates.yaml``, and prints every verdict with its measured value,
threshold and bootstrap interval.

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
HARDEST_SNR = "-6..-4"


def configs() -> dict[str, dict[str, Any]]:
    """Model name -> training config."""
    fused = yaml.safe_load((EXAMPLES / "fused.yaml").read_text())
    champion = copy.deepcopy(fused)
    champion["model"]["fusion"] = "concat"
    audio_worse = copy.deepcopy(fused)
    for mod in audio_worse["modalities"].values():
        mod["dropout"] = 0.0
        mod["loss_weight"] = 0.0
    return {
        "champion": champion,
        "better": copy.deepcopy(fused),
        "audio_worse": audio_worse,
        "bad_slice": copy.deepcopy(fused),
    }


def without_hardest(train: Path, out: Path) -> Path:
    """The training manifest without its noisiest SNR band (paths made absolute)."""
    base = train.parent
    keys = ("image", "audio")
    with train.open() as src, out.open("w") as dst:
        for line in src:
            row = json.loads(line)
            if row.get("snr_db") == HARDEST_SNR:
                continue
            for k in keys:
                if row.get(k):
                    row[k] = str(base / row[k])
            dst.write(json.dumps(row) + "\n")
    return out


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
    train_m, val_m, test_m = Path(paths["train"]), Path(paths["val"]), Path(paths["test"])
    cleaned = without_hardest(train_m, work / "train_without_hardest_snr.jsonl")
    print(f"training on {train_m} ({HARDEST_SNR} dB rows dropped for bad_slice)", flush=True)
    for name, cfg in configs().items():
        data = cleaned if name == "bad_slice" else train_m
        train(name, cfg, data, val_m, work / "models" / name, args.resume)

    champion = work / "models" / "champion"
    report: dict[str, Any] = {"command": " ".join(["python", *sys.argv]), "candidates": {}}
    for name in ("better", "audio_worse", "bad_slice"):
        result = run_gate(work / "models" / name, test_m, args.rules, champion=champion)
        data = result.to_dict()
        report["candidates"][name] = data
        print(f"\n{name}: {'PASSED' if result.passed else 'FAILED'} ({data['n']} rows)")
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
            print(
                f"  {'pass' if r['passed'] else 'FAIL'}  {r['rule']:<52} "
                f"{r['value']:>8.3f} vs {r['threshold']:>7.3f}{extra}"
            )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
