"""Evaluating an artifact on a labelled manifest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyfuse.core.errors import PolyfuseError
from polyfuse.data.dataset import BadRow
from polyfuse.data.manifest import Manifest
from polyfuse.evaluation.metrics import task_metrics
from polyfuse.inference.collect import Collected


@dataclass
class EvaluationResult:
    """Metrics of one evaluation.

    Attributes:
        metrics: the task's metric set (accuracy, macro_f1, confusion matrix ...).
        modalities: the modalities fed to the model.
        bad_rows: rows skipped, with reasons.
        collected: raw model outputs for further analysis.
    """

    metrics: dict[str, Any]
    modalities: tuple[str, ...]
    bad_rows: list[BadRow] = field(default_factory=list)
    collected: Collected | None = None

    @property
    def n(self) -> int:
        """Number of evaluated samples."""
        return int(self.metrics.get("n", 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the metrics plus ``modalities`` and ``bad_rows``."""
        return {
            **self.metrics,
            "modalities": list(self.modalities),
            "bad_rows": [b.to_dict() for b in self.bad_rows],
        }


def evaluate(
    artifact: Any,
    data: str | Path | Manifest,
    *,
    modalities: Sequence[str] | None = None,
    progress: bool = True,
    device: str = "auto",
) -> EvaluationResult:
    """Evaluate an artifact (path, `Artifact` or `Predictor`) on a labelled manifest.

    Args:
        artifact: artifact folder, loaded `Artifact`, or `Predictor`.
        data: labelled manifest.
        modalities: feed only these; the rest count as missing.
        progress: show progress bars.
        device: where to run.
    """
    from polyfuse.inference.predict import Predictor

    predictor = Predictor.of(artifact, device)
    manifest = (
        data
        if isinstance(data, Manifest)
        else Manifest.load(data, predictor.modalities, predictor.artifact.config.label)
    )
    ds = predictor.dataset(manifest, modalities, on_bad_row="skip", labelled=True)
    predictor.attach_features([ds], progress)
    out = predictor.run(ds, progress)
    if out.targets is None or not len(out):
        raise PolyfuseError(
            f"{manifest.path}: no labelled row could be evaluated",
            hint="check the label column and run `polyfuse validate`",
        )
    task = predictor.artifact.task
    metrics = task_metrics(task, task.probabilities(out.logits), out.targets)
    return EvaluationResult(metrics, tuple(ds.contracts), ds.problem_rows(), out)
