"""Quarantine: served accuracy on a stream whose audio turns to noise, with and without it.

The AV-digits model and the reference / stream split of `monitor_drift.py`. The stream
(the unseen speaker's odd takes, repeated ``--repeats`` times in shuffled order) starts
clean for ``--clean`` requests, then its audio is replaced (a dead microphone: low hiss;
or ESC-50 environmental sound mixed in at 0 dB). The requests are replayed in order
through `polyfuse.monitor.live.LiveMonitor`, the object `polyfuse serve` runs: while a
modality is quarantined the answer is the model's answer without it (what the service
answers then), otherwise the fused answer. Side by side: quarantine off, quarantine on,
and the image-only answer for every request.

    python benchmarks/monitor_quarantine.py --data ../shared/data --work /tmp/monitor-bench \\
        --artifact /tmp/monitor-bench/model
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from monitor_drift import (  # noqa: E402 - the sibling benchmark's data and shifts
    _esc_test_clips,
    build_model,
    shifted_rows,
    split_test,
    write_manifest,
)


def replay(obs: Any, profile: Any, quarantine: bool, window: int, windows: int) -> dict[str, Any]:
    """Served answers of ``obs`` in order; returns accuracy overall and after onset."""
    from polyfuse.monitor.live import LiveMonitor, QuarantinePolicy

    policy = QuarantinePolicy(enabled=quarantine, windows=windows)
    live = LiveMonitor(profile, window=window, background=False, policy=policy)
    correct = []
    first = None
    for i in range(len(obs)):
        row = obs.take(slice(i, i + 1))
        hidden = live.quarantined()
        if hidden:
            first = i if first is None else first
            probs = row.modalities[sorted(hidden)[0]].without
        else:
            probs = row.probs
        correct.append(int(probs.argmax()) == int(row.labels[0]))
        live.record(row)
    return {"accuracy": float(np.mean(correct)), "correct": correct, "onset": first}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/monitor-bench")
    ap.add_argument("--artifact")
    ap.add_argument("--repeats", type=int, default=4, help="passes over the 250 stream rows")
    ap.add_argument("--clean", type=int, default=200, help="clean requests before the fault")
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--windows", type=int, default=3, help="quarantine after N drifted windows")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from polyfuse.data.manifest import Manifest
    from polyfuse.inference.predict import Predictor
    from polyfuse.monitor import build_profile, concat, observe

    t0 = time.perf_counter()
    data, work = Path(args.data), Path(args.work)
    artifact, test = build_model(data, work, Path(args.artifact) if args.artifact else None)
    predictor = Predictor.load(artifact, device="cpu")
    ref_rows, stream_rows = split_test(test)
    label = predictor.artifact.config.label
    ref = Manifest.load(
        write_manifest(work / "reference.jsonl", ref_rows), predictor.modalities, label
    )
    profile = build_profile(predictor, ref, progress=False)
    clips = _esc_test_clips(data)

    def observed(shift: str) -> Any:
        rows = shifted_rows(shift, stream_rows, work / "shifts" / shift, clips, seed=1)
        path = write_manifest(work / "shifts" / f"{shift}.jsonl", rows)
        manifest = Manifest.load(path, predictor.modalities, label)
        return observe(predictor, manifest, vocab=profile.vocab, progress=False)

    clean = observed("none")
    rng = np.random.default_rng(0)
    print(
        "| fault | quarantine off | quarantine on | image only | onset (request) "
        "| on, after onset | off, after onset |"
    )
    print("|---|---|---|---|---|---|---|")
    for fault in ("audio_dead", "audio_noise"):
        bad = observed(fault)
        order = [rng.permutation(len(clean)) for _ in range(args.repeats)]
        head = clean.take(rng.choice(len(clean), args.clean, replace=False))
        tail = concat([bad.take(o) for o in order])
        stream = concat([head, tail])
        off = replay(stream, profile, False, args.window, args.windows)
        on = replay(stream, profile, True, args.window, args.windows)
        image = stream.modalities["audio"].without.argmax(axis=1) == stream.labels
        onset = on["onset"]
        after_on = float(np.mean(on["correct"][onset:])) if onset is not None else float("nan")
        after_off = float(np.mean(off["correct"][onset:])) if onset is not None else float("nan")
        print(
            f"| {fault} | {off['accuracy']:.3f} | {on['accuracy']:.3f} | {image.mean():.3f} | "
            f"{onset} (fault at {args.clean}) | {after_on:.3f} | {after_off:.3f} |"
        )
    print(f"{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
