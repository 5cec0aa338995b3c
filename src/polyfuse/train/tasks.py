"""One table from a config's ``task`` to the function that trains it.

Each trainer takes the config, the manifests and the artifact folder and returns a
`TrainSummary`; `polyfuse train` looks the task up in `TRAINERS` and prints the summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from polyfuse.core.config import Config
from polyfuse.core.errors import ConfigError


@dataclass(frozen=True)
class TrainRequest:
    """What a trainer is asked to do: config, manifests, artifact folder, options."""

    config: Config
    train: str | Path
    val: str | Path | None
    out: str | Path
    progress: bool = True
    resume: bool = False
    reference: str | Path | None = None


@dataclass(frozen=True)
class TrainSummary:
    """What a trainer reports: the artifact folder and named figures to print."""

    artifact: Path
    figures: dict[str, float | int | str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, float | int | str]:
        """``{"artifact": ..., **figures}`` for ``--json``."""
        return {"artifact": str(self.artifact), **self.figures}


TrainFn = Callable[[TrainRequest], TrainSummary]


def classify(req: TrainRequest) -> TrainSummary:
    """``multiclass``, ``multilabel``, ``regression``: the fusion `Trainer`."""
    from polyfuse.train.trainer import Trainer

    reference: str | Path | bool = True if req.reference is None else req.reference
    trainer = Trainer(
        req.config, req.out, progress=req.progress, resume=req.resume, reference=reference
    )
    result = trainer.fit(req.train, req.val)
    kept = ("accuracy", "macro_f1", "rmse")
    figures: dict[str, float | int | str] = {"best_epoch": result.best_epoch}
    figures.update({k: result.metrics[k] for k in kept if k in result.metrics})
    figures["bad_rows"] = len(result.bad_rows)
    return TrainSummary(result.path, figures)


def contrastive(req: TrainRequest) -> TrainSummary:
    """``contrastive``: alignment adapters on frozen encoders."""
    from polyfuse.retrieval.pipeline import train_alignment

    val = _needs_val(req, "contrastive training picks its epoch on a validation manifest")
    result = train_alignment(req.config, req.train, val, req.out, progress=req.progress)
    figures: dict[str, float | int | str] = {"best_epoch": result.best_epoch}
    for direction, values in result.metrics.items():
        figures.update({f"val {direction} {k}": v for k, v in values.items()})
    return TrainSummary(result.path, figures)


def captioning(req: TrainRequest) -> TrainSummary:
    """``captioning``: a caption decoder over frozen image tokens."""
    from polyfuse.train.captioning import train_captioning

    val = _needs_val(req, "captioning reports BLEU / CIDEr on a validation manifest")
    done = train_captioning(req.config, req.train, val, req.out, progress=req.progress)
    figures = {k: v for k, v in done.items() if k != "artifact"}
    return TrainSummary(Path(done["artifact"]), figures)


def _needs_val(req: TrainRequest, why: str) -> str | Path:
    if req.val is None:
        raise ConfigError("--val", why)
    return req.val


#: task -> trainer. A new task is one function and one line here.
TRAINERS: dict[str, TrainFn] = {
    "multiclass": classify,
    "multilabel": classify,
    "regression": classify,
    "contrastive": contrastive,
    "captioning": captioning,
}


def trainer_for(task: str) -> TrainFn:
    """The trainer of ``task``, or a `ConfigError` naming the known tasks."""
    if task not in TRAINERS:
        raise ConfigError("task", f"no trainer for {task!r}; known: {', '.join(sorted(TRAINERS))}")
    return TRAINERS[task]
