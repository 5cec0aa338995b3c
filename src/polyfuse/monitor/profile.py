"""The reference profile: what "normal" looked like, stored inside the artifact.

At training time (from the validation data, or any manifest given with ``--reference``)
`build_profile` observes the model once and writes ``monitor/reference/`` into the
artifact: per-modality input statistics, adapted embeddings, unimodal and fused output
distributions, missing-modality rates, labels (for calibration) and the reference
vocabulary of text modalities. What is fitted on it (projections of the embeddings,
calibration, thresholds) is cheap and deterministic, so it is recomputed when the profile
loads rather than stored twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from polyfuse.core.errors import ArtifactError
from polyfuse.monitor.observe import Observations, observe
from polyfuse.monitor.statistics import vocabulary

if TYPE_CHECKING:
    from polyfuse.data.manifest import Manifest
    from polyfuse.inference.predict import Predictor
    from polyfuse.monitor.estimate import Calibration

#: Where the profile lives inside an artifact folder.
PROFILE_DIR = Path("monitor") / "reference"
#: At most this many reference samples are kept (a random subset of larger manifests).
MAX_REFERENCE = 2000
#: Reference rows per whitened embedding direction (`Projection.fit`).
ROWS_PER_DIRECTION = 10


@dataclass(frozen=True)
class Projection:
    """A PCA projection fitted on reference embeddings: ``(x - mean) @ components``."""

    mean: NDArray[np.float64]
    components: NDArray[np.float64]

    def __call__(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Project ``(n, D)`` embeddings to ``(n, k)``."""
        out: NDArray[np.float64] = (x - self.mean) @ self.components
        return out

    @classmethod
    def fit(cls, x: NDArray[np.float64], k: int = 16) -> Projection:
        """Top-``k`` principal directions of ``x``: fewer when ``x`` has fewer dims, and at
        most one per `ROWS_PER_DIRECTION` rows. A small sample underestimates the variance
        of its weakest directions, so whitening them would inflate every later sample
        there and the kernel test would see drift in unshifted data."""
        mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        centred = x - mean
        k = max(1, min(k, x.shape[1], len(x) // ROWS_PER_DIRECTION))
        if len(x) < 2:
            return cls(mean, np.eye(x.shape[1])[:, :k])
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        scale = np.where(s[:k] > 1e-12, s[:k] / np.sqrt(max(len(x) - 1, 1)), 1.0)
        return cls(mean, vt[:k].T / scale)  # whitened: unit variance per direction


@dataclass
class ReferenceProfile:
    """Observations of the reference data plus what is fitted on them.

    Attributes:
        observations: the reference `Observations`.
        vocab: text modality -> reference vocabulary (for the OOV rate of current data).
        source: where the reference came from (manifest path, rows).
    """

    observations: Observations
    vocab: dict[str, frozenset[str]] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def projections(self) -> dict[str, Projection]:
        """Per modality, a whitened PCA of the present reference embeddings."""
        out = {}
        for m, view in self.observations.modalities.items():
            out[m] = Projection.fit(view.embedding[view.present])
        return out

    @cached_property
    def calibration(self) -> Calibration | None:
        """Calibration of the fused and leave-one-out outputs (None without labels)."""
        from polyfuse.monitor.estimate import Calibration

        obs = self.observations
        if obs.labels is None or not obs.outputs.labelled(obs.labels).any():
            return None
        return Calibration.fit(self.observations)

    def subset(self, index: NDArray[np.intp]) -> ReferenceProfile:
        """The reference rows ``index``, projected as the whole profile is (so sketches of
        both compare)."""
        part = ReferenceProfile(self.observations.take(index), self.vocab, self.source)
        part.__dict__["projections"] = self.projections  # the cached_property's value
        return part

    @property
    def missing_rate(self) -> dict[str, float]:
        """Share of reference samples without each modality."""
        return {
            m: float(1.0 - v.present.mean()) if len(v.present) else 0.0
            for m, v in self.observations.modalities.items()
        }

    def save(self, folder: str | Path) -> Path:
        """Write the profile into ``folder`` (an artifact's ``monitor/reference``)."""
        out = Path(folder)
        self.observations.save(out)
        meta = {
            "format": 1,
            "vocab": {m: sorted(v) for m, v in self.vocab.items()},
            "source": self.source,
        }
        (out / "profile.json").write_text(json.dumps(meta))
        return out

    @classmethod
    def load(cls, folder: str | Path) -> ReferenceProfile:
        """Read a profile written by `save`."""
        where = Path(folder)
        try:
            meta = json.loads((where / "profile.json").read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(
                f"no readable reference profile in {where} ({exc})",
                hint="pass `--reference MANIFEST` (labelled validation data of the model), "
                "or retrain: training writes the profile from the validation split",
            ) from exc
        return cls(
            Observations.load(where),
            {m: frozenset(v) for m, v in meta.get("vocab", {}).items()},
            dict(meta.get("source", {})),
        )

    @classmethod
    def of_artifact(cls, artifact_dir: str | Path) -> ReferenceProfile:
        """The profile stored in an artifact folder."""
        return cls.load(Path(artifact_dir) / PROFILE_DIR)


def build_profile(
    predictor: Predictor,
    manifest: Manifest,
    *,
    max_samples: int = MAX_REFERENCE,
    seed: int = 0,
    progress: bool = True,
) -> ReferenceProfile:
    """Observe ``manifest`` (a random ``max_samples`` subset of it) as the reference.

    Labelled rows make calibration and the label-free accuracy estimate possible.
    """
    from polyfuse.data.manifest import Manifest as _Manifest

    rows = manifest.rows
    if len(rows) > max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(rows), max_samples, replace=False))
        rows = [rows[int(i)] for i in keep]
        manifest = _Manifest(
            manifest.path, rows, manifest.problems, manifest.modalities, manifest.label_key
        )
    vocab = {
        m: vocabulary([str(r.values[m]) for r in manifest.rows if m in r.values])
        for m, c in predictor.artifact.contracts.items()
        if c.kind == "text"
    }
    # each reference text's out-of-vocabulary rate is measured against the others' words
    obs = observe(predictor, manifest, progress=progress)
    source = {"manifest": str(manifest.path), "rows": len(obs)}
    return ReferenceProfile(obs, vocab, source)
