"""One table from a config's ``task`` to the function that trains it.

Each trainer takes the config, the manifests and the artifact folder and returns a
`TrainSummary`; `polyfuse train` looks the task up in `TRAINERS` and prints the summary.
Every trainer runs inside `polyfuse.release.tracking.tracked`, so ``train.tracking: mlflow``
records any task's run (the classifier trainer logs each epoch as it ends, the others
their ``metrics.jsonl`` / loss history once training is done).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyfuse.core.config import Config
from polyfuse.core.errors import ConfigError
from polyfuse.release.tracking import NoTracker, Tracker, tracked
from polyfuse.train.distributed import DDPOptions, world_from_env


@dataclass(frozen=True)
class TrainRequest:
    """What a trainer is asked to do: config, manifests, artifact folder, options
    (``name``: the default tracking experiment, `polyfuse train` passes the config file's;
    ``ddp``: data-parallel options, used when a launcher started several processes)."""

    config: Config
    train: str | Path
    val: str | Path | None
    out: str | Path
    progress: bool = True
    resume: bool = False
    reference: str | Path | None = None
    name: str | None = None
    ddp: DDPOptions | None = None


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
    world = world_from_env()
    main = world.is_main  # in a data-parallel run, rank 0 alone tracks
    with _tracked(req) if main else nullcontext(NoTracker()) as tracker:
        trainer = Trainer(
            req.config,
            req.out,
            progress=req.progress,
            resume=req.resume,
            reference=reference,
            tracker=tracker,
            world=world,
            ddp=req.ddp,
        )
        result = trainer.fit(req.train, req.val)
        summary = TrainSummary(result.path, result.figures())
        tracker.finish(summary.artifact, summary.figures)
    return summary


def contrastive(req: TrainRequest) -> TrainSummary:
    """``contrastive``: alignment adapters on frozen encoders."""
    from polyfuse.retrieval.pipeline import train_alignment

    val = _needs_val(req, "contrastive training picks its epoch on a validation manifest")
    with _tracked(req) as tracker:
        result = train_alignment(req.config, req.train, val, req.out, progress=req.progress)
        figures: dict[str, float | int | str] = {"best_epoch": result.best_epoch}
        for direction, values in result.metrics.items():
            figures.update({f"val {direction} {k}": v for k, v in values.items()})
        summary = TrainSummary(result.path, figures)
        for step, record in alignment_history(result.path):
            tracker.log_epoch(record, step)
        tracker.finish(summary.artifact, summary.figures)
    return summary


def captioning(req: TrainRequest) -> TrainSummary:
    """``captioning``: a caption decoder over frozen image tokens."""
    from polyfuse.train.captioning import train_captioning

    val = _needs_val(req, "captioning reports BLEU / CIDEr on a validation manifest")
    with _tracked(req) as tracker:
        done = train_captioning(req.config, req.train, val, req.out, progress=req.progress)
        figures = {k: v for k, v in done.items() if k != "artifact"}
        summary = TrainSummary(Path(done["artifact"]), figures)
        info = json.loads((summary.artifact / "artifact.json").read_text(encoding="utf-8"))
        for epoch, loss in enumerate(info.get("loss", []), 1):
            tracker.log_epoch({"train_loss": loss}, epoch)
        tracker.finish(summary.artifact, summary.figures)
    return summary


def alignment_history(folder: Path) -> list[tuple[int, dict[str, Any]]]:
    """(epoch, record) of an alignment artifact's ``metrics.jsonl``; with an ensemble the
    keys of member k read ``member<k>/loss``."""
    lines = (folder / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    several = len({r.get("member", 0) for r in records}) > 1
    out = []
    for r in records:
        prefix = f"member{int(r.get('member', 0))}/" if several else ""
        values = {f"{prefix}{k}": v for k, v in r.items() if k not in ("member", "epoch")}
        out.append((int(r.get("epoch", 0)), values))
    return out


def _tracked(req: TrainRequest) -> AbstractContextManager[Tracker]:
    return tracked(req.config, req.out, name=req.name, resume=req.resume)


def _needs_val(req: TrainRequest, why: str) -> str | Path:
    if req.val is None:
        raise ConfigError("--val", why)
    return req.val


#: tasks `Trainer` trains, which alone trains data-parallel (``--nproc``, torchrun, Ray Train)
DATA_PARALLEL = frozenset({"multiclass", "multilabel", "regression"})

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
