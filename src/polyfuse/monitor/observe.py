"""What the monitor sees of a set of samples: statistics, embeddings and outputs per modality.

`observe` runs a trained classifier once over a manifest and keeps, per sample: each
modality's input statistics (`polyfuse.monitor.statistics`), its adapted encoder features
(pooled), its unimodal head's probabilities, the fused probabilities, the fused
probabilities with each modality left out (the model can answer without any of them),
presence masks and, when the manifest is labelled, the labels. Every detector and
estimator reads `Observations`; the reference profile is `Observations` of the validation
data plus what is fitted on them. `Observations` hold statistics and features only, never
raw content, so they can be stored and shipped.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from polyfuse.core.errors import ArtifactError, DependencyError, InvalidInputError, PolyfuseError
from polyfuse.core.progress import bar
from polyfuse.monitor.outputs import Outputs
from polyfuse.monitor.statistics import (
    STATISTICS,
    HeldOutVocabulary,
    statistics_of,
    word_counts,
)

if TYPE_CHECKING:
    from polyfuse.data.manifest import Manifest
    from polyfuse.inference.predict import Predictor

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass
class ModalityView:
    """One modality of `Observations` (``n`` samples).

    Attributes:
        kind: the contract kind (``image``, ``audio``, ``text``, ``timeseries``).
        present: ``(n,)`` the sample carries this modality.
        statistics: ``(n, S)`` input statistics (NaN where absent); columns ``names``.
        names: statistic names.
        embedding: ``(n, D)`` adapted encoder features (zeros where absent).
        probs: ``(n, K)`` the modality's own head's probabilities (valid where present).
        without: ``(n, K)`` fused probabilities with this modality left out.
        projected: ``embedding`` holds sketches in the reference profile's projection
            (what a service logs) rather than the full adapted features.
    """

    kind: str
    present: BoolArray
    statistics: FloatArray
    names: tuple[str, ...]
    embedding: FloatArray
    probs: FloatArray
    without: FloatArray
    projected: bool = False

    def take(self, index: NDArray[np.intp] | slice) -> ModalityView:
        """The rows ``index``."""
        return replace(
            self,
            present=self.present[index],
            statistics=self.statistics[index],
            embedding=self.embedding[index],
            probs=self.probs[index],
            without=self.without[index],
        )


@dataclass
class Observations:
    """What the monitor keeps of ``n`` samples, in order.

    Attributes:
        ids: sample ids (manifest ``id`` or row number; request ids in a log).
        sources: name -> where each sample's input came from (a path or a short digest),
            for naming atypical samples; ``None`` where unknown.
        modalities: name -> `ModalityView`.
        probs: ``(n, K)`` fused probabilities.
        classes: class names (column order of every ``probs``).
        labels: ``(n,)`` class index (``(n, K)`` 0/1 for a multi-label model), ``-1`` where
            unknown; None when nothing is labelled.
        outputs: how the probabilities read (`Outputs`: softmax or per-label sigmoids).
    """

    ids: list[str]
    modalities: dict[str, ModalityView]
    probs: FloatArray
    classes: tuple[str, ...]
    labels: NDArray[np.int64] | None = None
    sources: dict[str, list[str | None]] = field(default_factory=dict)
    outputs: Outputs = field(default_factory=Outputs)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def predicted(self) -> NDArray[Any]:
        """The fused answer per sample: class index, or label set (``(n, K)`` booleans)."""
        return self.outputs.predicted(self.probs)

    @property
    def correct(self) -> NDArray[np.bool_] | None:
        """Per labelled sample, the fused answer was right (None without labels)."""
        if self.labels is None:
            return None
        keep = self.outputs.labelled(self.labels)
        return self.outputs.correct(self.probs[keep], self.labels[keep])

    def take(self, index: NDArray[np.intp] | slice) -> Observations:
        """The samples ``index`` (a slice for a window)."""
        ids = list(np.asarray(self.ids, dtype=object)[index])
        return Observations(
            ids=[str(i) for i in ids],
            modalities={m: v.take(index) for m, v in self.modalities.items()},
            probs=self.probs[index],
            classes=self.classes,
            labels=None if self.labels is None else self.labels[index],
            sources={m: list(np.asarray(s, dtype=object)[index]) for m, s in self.sources.items()},
            outputs=self.outputs,
        )

    def windows(self, size: int) -> list[tuple[int, int]]:
        """``(start, end)`` of consecutive windows of ``size`` samples (the last may be short,
        and is dropped when under half a window)."""
        if size <= 0:
            raise InvalidInputError("window", f"window size must be positive, got {size}")
        spans = [(s, min(s + size, len(self))) for s in range(0, len(self), size)]
        if len(spans) > 1 and spans[-1][1] - spans[-1][0] < size // 2:
            spans.pop()
        return spans

    # ---- storage ----------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``observations.npz`` + ``observations.json`` into ``folder``."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {"probs": self.probs}
        if self.labels is not None:
            arrays["labels"] = self.labels
        for m, v in self.modalities.items():
            for key in ("present", "statistics", "embedding", "probs", "without"):
                arrays[f"{m}/{key}"] = getattr(v, key)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        (out / "observations.npz").write_bytes(buf.getvalue())
        meta = {
            "ids": self.ids,
            "classes": list(self.classes),
            "multilabel": self.outputs.multilabel,
            "threshold": self.outputs.threshold,
            "sources": self.sources,
            "modalities": {
                m: {"kind": v.kind, "names": list(v.names), "projected": v.projected}
                for m, v in self.modalities.items()
            },
        }
        (out / "observations.json").write_text(json.dumps(meta))
        return out

    @classmethod
    def load(cls, folder: str | Path) -> Observations:
        """Read what `save` wrote."""
        where = Path(folder)
        try:
            meta = json.loads((where / "observations.json").read_text())
            with np.load(where / "observations.npz", allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(
                f"cannot read monitoring observations in {where}: {exc}",
                hint="re-create them with `polyfuse monitor ... --reference MANIFEST` "
                "or retrain the artifact",
            ) from exc
        modalities = {
            m: ModalityView(
                kind=str(info["kind"]),
                names=tuple(info["names"]),
                projected=bool(info.get("projected", False)),
                **{
                    k: arrays[f"{m}/{k}"]
                    for k in ("present", "statistics", "embedding", "probs", "without")
                },
            )
            for m, info in meta["modalities"].items()
        }
        return cls(
            ids=[str(i) for i in meta["ids"]],
            modalities=modalities,
            probs=arrays["probs"],
            classes=tuple(meta["classes"]),
            labels=arrays.get("labels"),
            sources={m: list(v) for m, v in meta.get("sources", {}).items()},
            outputs=Outputs(bool(meta.get("multilabel", False)), float(meta.get("threshold", 0.5))),
        )


def concat(parts: Sequence[Observations]) -> Observations:
    """One `Observations` of ``parts`` in order (same model)."""
    if not parts:
        raise InvalidInputError("observations", "nothing to concatenate")
    first = parts[0]
    labels = None
    if all(p.labels is not None for p in parts):
        labels = np.concatenate([p.labels for p in parts if p.labels is not None])
    return Observations(
        ids=[i for p in parts for i in p.ids],
        modalities={
            m: replace(
                v,
                present=np.concatenate([p.modalities[m].present for p in parts]),
                statistics=np.concatenate([p.modalities[m].statistics for p in parts]),
                embedding=np.concatenate([p.modalities[m].embedding for p in parts]),
                probs=np.concatenate([p.modalities[m].probs for p in parts]),
                without=np.concatenate([p.modalities[m].without for p in parts]),
            )
            for m, v in first.modalities.items()
        },
        probs=np.concatenate([p.probs for p in parts]),
        classes=first.classes,
        labels=labels,
        sources={m: [s for p in parts for s in p.sources.get(m, [])] for m in first.sources},
        outputs=first.outputs,
    )


def require_scipy() -> None:
    """`DependencyError` with the install line when scipy (the statistical tests) is absent."""
    try:
        import scipy  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError("scipy", "drift monitoring", "monitor") from exc


def _statistics(
    kind: str,
    names: tuple[str, ...],
    present: BoolArray,
    load: Callable[[int], Any],
    context: dict[str, Any],
    counts: Counter[str] | None,
    progress: bool,
    modality: str,
) -> FloatArray:
    """``(n, S)`` input statistics of one modality (NaN where absent or unreadable);
    ``counts``: the reference's word counts, to measure each text against the others."""
    stats = np.full((len(present), len(names)), np.nan)
    for i in bar(
        range(len(present)), enabled=progress, desc=f"statistics ({modality})", leave=False
    ):
        if not present[i]:
            continue
        try:
            obj = load(i)
        except PolyfuseError:
            continue
        if counts is not None:
            context = {**context, "vocab": HeldOutVocabulary(counts, str(obj))}
        values = statistics_of(kind, obj, context)
        if values is not None:
            stats[i] = values
    return stats


def observe(
    predictor: Predictor,
    manifest: Manifest,
    *,
    vocab: dict[str, frozenset[str]] | None = None,
    progress: bool = True,
) -> Observations:
    """Run ``predictor``'s model once over ``manifest`` and keep what the monitor needs.

    Args:
        vocab: text modality -> reference vocabulary for the out-of-vocabulary rate; by
            default ``manifest`` is the reference (what a reference profile does) and each
            text is measured against the words of the *other* texts
            (`HeldOutVocabulary`), so its rate is comparable with later data's.

    Raises:
        InvalidInputError: the artifact is not a classifier (single- or multi-label), or
            no row of ``manifest`` could be read.
    """
    import torch

    require_scipy()
    from polyfuse.heads.tasks import MulticlassTask, MultilabelTask
    from polyfuse.inference.collect import collect

    artifact = predictor.artifact
    task = artifact.task
    if not isinstance(task, MulticlassTask | MultilabelTask):
        raise InvalidInputError(
            "artifact",
            f"monitoring needs a classifier; this artifact's task is '{task.name}'",
            hint="monitor a model trained with `task: multiclass` or `task: multilabel`",
        )
    outputs = Outputs(isinstance(task, MultilabelTask), float(getattr(task, "threshold", 0.5)))
    labelled = bool(manifest.rows) and all(r.label is not None for r in manifest.rows)
    dataset = predictor.dataset(manifest, labelled=labelled)
    modalities = predictor.modalities
    leave_out = (
        [[o for o in modalities if o != m] for m in modalities] if len(modalities) > 1 else []
    )
    out = collect(
        artifact.model,
        predictor.loader(dataset),
        predictor.device,
        subsets=leave_out,
        pooled=True,
        progress=progress,
        desc="observing",
    )
    if not len(out):
        raise InvalidInputError(
            "manifest",
            f"no row of {manifest.path} could be read ({len(out.bad_rows)} bad rows)",
            hint="check the manifest with `polyfuse validate`",
        )
    rows = [manifest.rows[i] for i in out.indices]
    held_out = None
    if vocab is None:
        held_out = {
            m: word_counts(str(r.values[m]) for r in manifest.rows if m in r.values)
            for m, c in artifact.contracts.items()
            if c.kind == "text"
        }
        vocab = {}

    def probabilities(logits: torch.Tensor) -> FloatArray:
        p: FloatArray = task.probabilities(logits).double().numpy()
        return p

    probs = probabilities(out.logits)
    views: dict[str, ModalityView] = {}
    sources: dict[str, list[str | None]] = {}
    for m in modalities:
        contract = artifact.contracts[m]
        names = STATISTICS.get(contract.kind, ())
        present = out.present[m].numpy().astype(bool)
        context = {
            "sample_rate": getattr(contract, "sample_rate", 16000),
            "vocab": vocab.get(m, frozenset()),
        }
        counts = None if held_out is None else held_out.get(m)
        load = lambda i, m=m: dataset.load(out.indices[i], m)  # noqa: E731
        stats = _statistics(contract.kind, names, present, load, context, counts, progress, m)
        if len(modalities) > 1:
            others = "+".join(sorted(o for o in modalities if o != m))
            without = probabilities(out.subset_logits[others])
        else:
            without = outputs.uninformative(*probs.shape)
        views[m] = ModalityView(
            kind=contract.kind,
            present=present,
            statistics=stats,
            names=names,
            embedding=out.pooled[m].double().numpy(),
            probs=probabilities(out.unimodal[m]),
            without=without,
        )
        sources[m] = [
            str(r.values[m]) if contract.file_based and m in r.values else None for r in rows
        ]
    labels = None
    if out.targets is not None:
        labels = out.targets.long().numpy().astype(np.int64)
    return Observations(
        ids=[r.id for r in rows],
        modalities=views,
        probs=probs,
        classes=tuple(task.labels),
        labels=labels,
        sources=sources,
        outputs=outputs,
    )
