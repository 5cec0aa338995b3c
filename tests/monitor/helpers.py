"""Synthetic `Observations` for the monitor's unit tests (no model needed)."""

from __future__ import annotations

import numpy as np

from polyfuse.monitor.observe import ModalityView, Observations
from polyfuse.monitor.outputs import Outputs
from polyfuse.monitor.profile import ReferenceProfile

CLASSES = ("a", "b", "c")


def _probs(rng: np.random.Generator, labels: np.ndarray, sharp: float, k: int = 3) -> np.ndarray:
    logits = rng.normal(0.0, 1.0, (len(labels), k))
    logits[np.arange(len(labels)), labels] += sharp
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def make(
    n: int = 400,
    *,
    seed: int = 0,
    shift: dict[str, float] | None = None,
    missing: dict[str, float] | None = None,
    prior: tuple[float, ...] = (1 / 3, 1 / 3, 1 / 3),
    noise: tuple[str, ...] = (),
) -> Observations:
    """Two modalities (``image``, ``audio``) whose statistics and embeddings carry the class.

    Args:
        shift: modality -> offset added to its first statistic and its embedding.
        missing: modality -> share of samples without it.
        prior: class prior.
        noise: modalities turned into noise (class signal removed; the head confidently
            predicts random classes, so the fusion is hurt).
    """
    rng = np.random.default_rng(seed)
    shift = shift or {}
    missing = missing or {}
    labels = rng.choice(3, n, p=np.asarray(prior))
    views = {}
    heads = {}
    for j, m in enumerate(("image", "audio")):
        signal = 0.0 if m in noise else 1.0
        stats = rng.normal(0.0, 1.0, (n, 4)) + signal * labels[:, None] * 0.5
        stats[:, 0] += shift.get(m, 0.0)
        emb = rng.normal(0.0, 1.0, (n, 8))
        emb[:, :3] += signal * 1.5 * np.eye(3)[labels]
        emb += shift.get(m, 0.0) * 0.5
        present = rng.random(n) >= missing.get(m, 0.0)
        # a noise input steers its head confidently to random classes (the harmful case)
        head_labels = labels if signal else rng.integers(0, 3, n)
        probs = _probs(rng, head_labels, 2.5 + 0.01 * j)
        heads[m] = probs
        views[m] = ModalityView(
            kind="image" if m == "image" else "audio",
            present=present,
            statistics=np.where(present[:, None], stats, np.nan),
            names=("s0", "s1", "s2", "s3"),
            embedding=emb * present[:, None],
            probs=probs,
            without=probs,  # set below
        )
    # fused output: average of the present heads' log-probabilities
    logp = sum(np.log(heads[m]) * views[m].present[:, None] for m in views)
    fused = np.exp(logp - logp.max(axis=1, keepdims=True))
    fused /= fused.sum(axis=1, keepdims=True)
    views["image"].without = heads["audio"]
    views["audio"].without = heads["image"]
    return Observations(
        ids=[f"r{i}" for i in range(n)],
        modalities=views,
        probs=fused,
        classes=CLASSES,
        labels=labels.astype(np.int64),
        sources={},
    )


def reference(n: int = 600, seed: int = 100) -> ReferenceProfile:
    """A labelled reference profile of `make` data."""
    return ReferenceProfile(make(n, seed=seed), {}, {"manifest": "synthetic", "rows": n})


LABELS = ("x", "y", "z")


def make_multilabel(
    n: int = 400,
    *,
    seed: int = 0,
    shift: dict[str, float] | None = None,
    prevalence: tuple[float, ...] = (0.3, 0.4, 0.2),
    noise: tuple[str, ...] = (),
) -> Observations:
    """A multi-label version of `make`: three labels, each present independently with
    ``prevalence``; each modality's statistics and embedding carry the label set and its head
    gives sigmoid outputs; the fusion adds the present heads' logits."""
    rng = np.random.default_rng(seed)
    shift = shift or {}
    truth = rng.random((n, 3)) < np.asarray(prevalence)
    views = {}
    logits = {}
    for m in ("image", "audio"):
        signal = 0.0 if m in noise else 1.0
        seen = truth if signal else rng.random((n, 3)) < 0.5
        stats = rng.normal(0.0, 1.0, (n, 4)) + signal * truth[:, :1] * 0.5
        stats[:, 0] += shift.get(m, 0.0)
        emb = rng.normal(0.0, 1.0, (n, 8))
        emb[:, :3] += signal * 1.5 * truth
        emb += shift.get(m, 0.0) * 0.5
        z = 2.0 * (2.0 * seen - 1.0) + rng.normal(0.0, 1.5, (n, 3))
        logits[m] = z
        views[m] = ModalityView(
            kind=m,
            present=np.ones(n, dtype=bool),
            statistics=stats,
            names=("s0", "s1", "s2", "s3"),
            embedding=emb,
            probs=1.0 / (1.0 + np.exp(-z)),
            without=np.zeros((n, 3)),  # set below
        )
    views["image"].without = views["audio"].probs
    views["audio"].without = views["image"].probs
    fused = logits["image"] + logits["audio"]
    return Observations(
        ids=[f"r{i}" for i in range(n)],
        modalities=views,
        probs=1.0 / (1.0 + np.exp(-fused)),
        classes=LABELS,
        labels=truth.astype(np.int64),
        outputs=Outputs(multilabel=True),
    )


def multilabel_reference(n: int = 600, seed: int = 100) -> ReferenceProfile:
    """A labelled reference profile of `make_multilabel` data."""
    return ReferenceProfile(make_multilabel(n, seed=seed), {}, {"manifest": "synthetic"})
