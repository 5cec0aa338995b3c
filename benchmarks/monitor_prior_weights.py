"""How a multi-label prior change is told apart from modality drift: three re-weightings.

When the label-shift test fires and a modality is flagged too, the monitor re-tests that
modality against the reference re-weighted to the estimated current label distribution
(`polyfuse.monitor.run`). On the Flickr8k concepts setup of `monitor_drift.py --model
flickr8k` (photos showing a dog at 70 % of the window), this compares, on the same windows:

- ``raking`` (what the monitor does): each label's current share by black-box shift
  estimation, then raking (iterative proportional fitting) to all of them;
- ``sets``: black-box shift estimation over whole label sets (sets seen at least 5 times
  in the reference as classes, the rest pooled);
- ``sparse``: raking only the labels whose answered share changed significantly.

Printed per window size: windows named as a prior change alone, windows whose named
modality came with a flagged prediction, and false alarms on unshifted windows.

    python benchmarks/monitor_prior_weights.py --work /tmp/mb-flickr-full
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import drift_flickr8k as setup  # noqa: E402 - the sibling benchmark's data and shifts
from monitor_drift import window_indices, write_manifest  # noqa: E402


def set_weights(reference: Any, current: Any, min_count: int = 5) -> np.ndarray | None:
    """Black-box shift estimation with whole label sets as classes."""
    keep = reference.outputs.labelled(reference.labels)
    truth = reference.labels[keep] > 0
    bits = 1 << np.arange(truth.shape[1])
    tkey = truth.astype(np.int64) @ bits
    pkey = reference.predicted[keep].astype(np.int64) @ bits
    keys, counts = np.unique(tkey, return_counts=True)
    index = {int(k): i for i, k in enumerate(keys[counts >= min_count])}
    other = len(index)
    cls = lambda ks: np.array([index.get(int(k), other) for k in ks])  # noqa: E731
    t, p = cls(tkey), cls(pkey)
    conf = np.zeros((other + 1, other + 1))
    np.add.at(conf, (p, t), 1.0)
    conf /= len(t)
    mu = np.bincount(cls(current.predicted.astype(np.int64) @ bits), minlength=other + 1)
    w, *_ = np.linalg.lstsq(conf + 1e-6 * np.eye(other + 1), mu / len(current), rcond=None)
    prior = np.bincount(t, minlength=other + 1) / len(t)
    w = np.clip(w, 0.0, None)
    if (w * prior).sum() <= 0:
        return None
    out: np.ndarray = (w / (w * prior).sum())[t]
    return out


def sparse_raking(reference: Any, current: Any) -> np.ndarray | None:
    """Raking on the labels whose answered share moved (Fisher, Bonferroni, p < 0.05)."""
    from polyfuse.monitor.detectors import fisher, label_prevalence

    target = label_prevalence(reference, current)
    if target is None:
        return None
    truth = reference.labels[reference.outputs.labelled(reference.labels)] > 0
    ref_on, cur_on = reference.predicted, current.predicted
    k = truth.shape[1]
    moved = [
        j
        for j in range(k)
        if k * fisher(int(ref_on[:, j].sum()), len(ref_on), int(cur_on[:, j].sum()), len(cur_on))
        < 0.05
    ]
    w = np.ones(len(truth))
    for _ in range(50):
        for j in moved:
            pos = truth[:, j]
            share = w[pos].sum() / w.sum()
            if 0.0 < share < 1.0:
                w[pos] *= target[j] / share
                w[~pos] *= (1.0 - target[j]) / (1.0 - share)
    out: np.ndarray = w / w.mean()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/mb-flickr-full")
    ap.add_argument("--sizes", default="100,200,500")
    ap.add_argument("--draws", type=int, default=40)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    import polyfuse.monitor.run as monitor_run
    from polyfuse.data.manifest import Manifest
    from polyfuse.inference.predict import Predictor
    from polyfuse.monitor import assess, build_profile, observe
    from polyfuse.monitor.detectors import sample_weights

    data, work = Path(args.data), Path(args.work)
    artifact = work / "model" if (work / "model" / "artifact.json").exists() else None
    artifact, ref_rows, stream_rows = setup.build_model(data, work, artifact)
    predictor = Predictor.load(artifact, device="cpu")
    label = predictor.artifact.config.label
    ref = Manifest.load(
        write_manifest(work / "reference.jsonl", ref_rows), predictor.modalities, label
    )
    profile = build_profile(predictor, ref, progress=False)
    obs = {}
    for shift in ("none", "class_prior"):
        rows = setup.shifted_rows(shift, stream_rows, work / "shifts" / shift, data, seed=1)
        manifest = Manifest.load(
            write_manifest(work / "shifts" / f"{shift}.jsonl", rows), predictor.modalities, label
        )
        obs[shift] = observe(predictor, manifest, vocab=profile.vocab, progress=False)
    variants = {"raking": sample_weights, "sets": set_weights, "sparse": sparse_raking}
    rng = np.random.default_rng(5)
    print(
        "| window | re-weighting | named as a prior change | otherwise, prediction flagged too "
        "| false alarms |"
    )
    print("|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        windows = {
            s: [o.take(i) for i in window_indices(o, s, size, args.draws, rng, setup.favoured)]
            for s, o in obs.items()
        }
        for name, weights in variants.items():
            monitor_run.sample_weights = weights  # the re-test's weights (module attribute)
            prior = [assess(profile, w) for w in windows["class_prior"]]
            named = sum(not r.drifted for r in prior)
            flagged = sum(r.prediction.drift for r in prior if r.drifted)
            far = sum(assess(profile, w).drift for w in windows["none"])
            n = args.draws
            print(
                f"| {size} | {name} | {named} / {n} | {flagged} / {n - named} | {far} / {n} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
