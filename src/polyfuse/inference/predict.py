"""User-facing prediction with a trained artifact: one sample, a batch, or a whole manifest.

`Predictor` loads the artifact, builds datasets and loaders from the artifact's contracts,
runs the loop of `polyfuse.inference.collect` and decodes the raw tensors into typed
`Prediction` answers (labels, probabilities, modalities used). Evaluation reuses a
`Predictor` for loading and batching and reads the raw `Collected` tensors instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, overload

from torch.utils.data import DataLoader

from polyfuse.artifacts.classifier import Artifact, load_artifact
from polyfuse.core.device import resolve_device
from polyfuse.core.errors import InvalidInputError
from polyfuse.data.dataset import BadRow, Collator, MultimodalDataset
from polyfuse.data.features import attach_frozen_features
from polyfuse.data.manifest import Manifest, Row
from polyfuse.data.sampler import LengthGroupedBatchSampler
from polyfuse.inference.collect import Collected, collect

log = logging.getLogger("polyfuse.inference.predict")


@dataclass
class Prediction:
    """The answer for one sample.

    Attributes:
        label: predicted label (multiclass), labels (multilabel) or value(s) (regression).
        probabilities: label -> probability (classification) or target -> value.
        modalities_used: modalities the model saw for this sample.
        fusion_weights: modality -> importance from the fusion, when it exposes one.
        unimodal: modality -> the label its auxiliary head predicts alone.
        id: the sample id (manifest ``id`` or row number), when known.
        low_quality: modality -> why its quality gate refused the given input (the model
            answered without it, as serving does).
    """

    label: Any
    probabilities: dict[str, float]
    modalities_used: tuple[str, ...]
    fusion_weights: dict[str, float] | None = None
    unimodal: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    low_quality: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "id": self.id,
            "label": self.label,
            "probabilities": self.probabilities,
            "modalities_used": list(self.modalities_used),
            "fusion_weights": self.fusion_weights,
            "unimodal": self.unimodal,
            "low_quality": self.low_quality,
        }


@dataclass
class PredictionRun:
    """Predictions over a manifest.

    Attributes:
        predictions: one per good row, in manifest order.
        rows: the manifest rows they belong to.
        bad_rows: rows skipped, with reasons.
        collected: raw model outputs (logits, embeddings) for analysis.
    """

    predictions: list[Prediction]
    rows: list[Row]
    bad_rows: list[BadRow]
    collected: Collected


class Predictor:
    """Runs a trained artifact.

    Cheap to construct from a loaded `Artifact`; `Predictor.load` reads one from disk.

    Args:
        artifact: the loaded artifact.
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: samples per forward pass.
    """

    def __init__(self, artifact: Artifact, device: str = "auto", batch_size: int = 32) -> None:
        self.artifact = artifact
        self.device = resolve_device(device)
        self.batch_size = batch_size
        artifact.model.to(self.device).eval()
        self.gates = artifact.quality_gates()

    @classmethod
    def of(cls, artifact: Any, device: str = "auto") -> Predictor:
        """A predictor for an artifact folder, a loaded `Artifact`, or a `Predictor` (as is)."""
        if isinstance(artifact, Predictor):
            return artifact
        if isinstance(artifact, Artifact):
            return cls(artifact, device)
        return cls.load(artifact, device)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", batch_size: int = 32) -> Predictor:
        """Load an artifact folder (verifying versions and contracts)."""
        return cls(load_artifact(path, resolve_device(device)), device, batch_size)

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality names the model accepts."""
        return self.artifact.modalities

    @overload
    def predict(
        self,
        samples: Mapping[str, Any],
        *,
        modalities: Sequence[str] | None = None,
        base_dir: str | Path | None = None,
    ) -> Prediction: ...

    @overload
    def predict(
        self,
        samples: Sequence[Mapping[str, Any]],
        *,
        modalities: Sequence[str] | None = None,
        base_dir: str | Path | None = None,
    ) -> list[Prediction]: ...

    def predict(
        self,
        samples: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        modalities: Sequence[str] | None = None,
        base_dir: str | Path | None = None,
    ) -> Prediction | list[Prediction]:
        """Predict one sample (a mapping) or a batch (a sequence of mappings).

        A sample maps modality names to values: a file path, raw bytes, an
        array (image/audio/series), a PIL image, or a string (text). Any subset
        of modalities may be given. Bad input raises `InvalidInputError`.

        Args:
            samples: one sample or a list of them.
            modalities: feed only these modalities (the rest count as missing).
            base_dir: folder relative paths are resolved against.
        """
        single = isinstance(samples, Mapping)
        records: list[Mapping[str, Any]] = (
            [cast(Mapping[str, Any], samples)] if single else list(cast(Sequence[Any], samples))
        )
        rows = [self._row(i, rec) for i, rec in enumerate(records)]
        manifest = Manifest(Path(base_dir or ".") / "<memory>", rows, [], self.modalities)
        run = self._run(manifest, modalities, on_bad_row="fail", progress=False, cache=False)
        return run.predictions[0] if single else run.predictions

    def _row(self, index: int, record: Mapping[str, Any]) -> Row:
        values = {}
        for key, value in record.items():
            if key == "id":
                continue
            if key not in self.modalities:
                raise InvalidInputError(
                    key,
                    f"the model has no modality '{key}'; it accepts {', '.join(self.modalities)}",
                )
            if value is not None:
                values[key] = value
        return Row(index, str(record.get("id", index)), values, None)

    def predict_manifest(
        self,
        manifest: str | Path | Manifest,
        *,
        modalities: Sequence[str] | None = None,
        on_bad_row: str = "skip",
        progress: bool = True,
        feature_cache: bool = True,
    ) -> PredictionRun:
        """Predict every row of a manifest; bad rows are skipped and reported (or raise,
        with ``on_bad_row="fail"``).

        Args:
            manifest: path or parsed manifest.
            modalities: feed only these modalities (the rest count as missing).
            on_bad_row: ``skip`` or ``fail``.
            progress: show a progress bar.
            feature_cache: read/write frozen-encoder outputs from the disk cache.
        """
        if not isinstance(manifest, Manifest):
            manifest = Manifest.load(manifest, self.modalities, self.artifact.config.label)
        return self._run(manifest, modalities, on_bad_row, progress, feature_cache)

    def dataset(
        self,
        manifest: Manifest,
        modalities: Sequence[str] | None = None,
        on_bad_row: str = "skip",
        labelled: bool = False,
    ) -> MultimodalDataset:
        """A dataset reading only ``modalities`` of ``manifest`` with the artifact's contracts
        and quality gates."""
        keep = self._check_subset(modalities)
        contracts = {m: c for m, c in self.artifact.contracts.items() if m in keep}
        task = self.artifact.task if labelled else None
        return MultimodalDataset(
            manifest,
            contracts,
            task,
            on_bad_row=on_bad_row,
            require_label=labelled,
            allow_empty=modalities is not None,
            gates=self.gates,
        )

    def _check_subset(self, modalities: Sequence[str] | None) -> tuple[str, ...]:
        if modalities is None:
            return self.modalities
        unknown = [m for m in modalities if m not in self.modalities]
        if unknown or not modalities:
            raise InvalidInputError(
                ",".join(unknown) or "<none>",
                f"cannot feed modalities {list(modalities)}; "
                f"the model has {', '.join(self.modalities)}",
            )
        return tuple(modalities)

    def attach_features(self, datasets: Iterable[MultimodalDataset], progress: bool = True) -> None:
        """Serve frozen-encoder outputs of ``datasets`` from the disk feature cache."""
        model = self.artifact.model
        attach_frozen_features(
            {m: model.encoder(m) for m in model.modalities},
            datasets,
            device=self.device,
            batch_size=self.batch_size,
            progress=progress,
        )

    def loader(self, dataset: MultimodalDataset) -> DataLoader[Any]:
        """Batches of ``dataset`` in length-grouped order (least padding)."""
        return DataLoader(
            dataset,
            collate_fn=Collator(dataset.contracts),
            batch_sampler=LengthGroupedBatchSampler(
                dataset.lengths, self.batch_size, shuffle=False
            ),
        )

    def run(self, dataset: MultimodalDataset, progress: bool = True) -> Collected:
        """Model outputs over a dataset."""
        return collect(self.artifact.model, self.loader(dataset), self.device, "fp32", progress)

    def _run(
        self,
        manifest: Manifest,
        modalities: Sequence[str] | None,
        on_bad_row: str,
        progress: bool,
        cache: bool,
    ) -> PredictionRun:
        ds = self.dataset(manifest, modalities, on_bad_row)
        if cache:
            self.attach_features([ds], progress)
        out = self.run(ds, progress)
        preds = self.decode(out, [manifest.rows[i] for i in out.indices])
        for pred, index in zip(preds, out.indices, strict=True):
            pred.low_quality = {m: v.reason for m, v in ds.low_quality(index).items()}
        return PredictionRun(preds, [manifest.rows[i] for i in out.indices], ds.problem_rows(), out)

    def decode(self, out: Collected, rows: Sequence[Row]) -> list[Prediction]:
        """Typed predictions from collected model outputs."""
        task = self.artifact.task
        probs = task.probabilities(out.logits)
        uni = {m: task.probabilities(v) for m, v in out.unimodal.items()}
        preds = []
        for j, row in enumerate(rows):
            used = tuple(m for m in out.modalities if bool(out.present[m][j]))
            weights = None
            if out.weights is not None:
                weights = {
                    m: round(float(out.weights[j, i]), 6) for i, m in enumerate(out.modalities)
                }
            preds.append(
                Prediction(
                    label=task.decode(probs[j]),
                    probabilities={
                        lab: round(float(p), 6)
                        for lab, p in zip(task.labels, probs[j], strict=True)
                    },
                    modalities_used=used,
                    fusion_weights=weights,
                    unimodal={m: task.decode(uni[m][j]) for m in used},
                    id=row.id,
                )
            )
        return preds


def predict(artifact: str | Path, samples: Any, **kwargs: Any) -> Any:
    """One-call prediction: ``predict("out/", {"image": "x.png"})``."""
    return Predictor.load(artifact).predict(samples, **kwargs)


__all__ = ["Prediction", "PredictionRun", "Predictor", "predict"]
