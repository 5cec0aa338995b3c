"""The artifact at work inside a stage: what each kind of artifact reads, encodes and answers.

A `ModelSpec` is the small, picklable description a stage receives (artifact folder, kind,
device, modalities); `ModelSpec.open` loads the artifact in the worker. `ClassifierModel`
runs a classifier through the `Predictor` (its dataset for loading and quality gates, the
model's ``encode``/``fuse``, its decoding); `AlignmentModel` embeds with an alignment
artifact's frozen encoders and adapters, as `Aligner.embed` does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from polyfuse.artifacts.format import read_info
from polyfuse.core.errors import ArtifactError
from polyfuse.data.dataset import MultimodalDataset
from polyfuse.data.manifest import Manifest, Row
from polyfuse.inference.collect import Collected
from polyfuse.inference.predict import Prediction, Predictor
from polyfuse.modalities.base import ModalityBatch, ModalityContract
from polyfuse.retrieval.pipeline import Aligner

KINDS = ("classifier", "alignment")


class Features(NamedTuple):
    """One modality's encoder + adapter output for the ``P`` rows that have it.

    Attributes:
        pooled: ``(P, D)`` pooled features in the shared space.
        tokens: ``(P, T, D)`` adapted tokens, when the fusion reads tokens.
        masks: ``(P, T)`` valid-token masks, matching ``tokens``.
    """

    pooled: Tensor
    tokens: Tensor | None = None
    masks: Tensor | None = None


@dataclass(frozen=True)
class ModelSpec:
    """What a stage needs to load the artifact (picklable; sent to every worker).

    Attributes:
        path: the artifact folder (the same path on every node).
        kind: ``classifier`` or ``alignment`` (from ``artifact.json``).
        device: ``auto``, ``cpu`` or ``cuda``, resolved in the worker.
        modalities: feed only these modalities (classifiers; None: all).
        threads: torch threads in the worker (0: torch's default).
    """

    path: str
    kind: str
    device: str = "cpu"
    modalities: tuple[str, ...] | None = None
    threads: int = 0

    @classmethod
    def of(
        cls, path: str | Path, device: str = "cpu", modalities: Sequence[str] | None = None
    ) -> ModelSpec:
        """The spec of an artifact folder; its kind is read (and checked) from disk."""
        info = read_info(Path(path))
        kind = str(info.get("kind"))
        if kind not in KINDS:
            raise ArtifactError(
                f"{path}: batch jobs run classifier and alignment artifacts, not '{kind}'",
                hint="predict and embed take a trained classifier; index an alignment artifact",
            )
        subset = None if modalities is None else tuple(modalities)
        return cls(str(Path(path).resolve()), kind, device, subset)

    def open(self) -> BatchModel:
        """Load the artifact (in the worker that runs the stage)."""
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        if self.kind == "alignment":
            return AlignmentModel(Aligner.load(self.path))
        return ClassifierModel(Predictor.load(self.path, self.device), self.modalities)


class BatchModel(ABC):
    """An artifact as the stages use it."""

    @property
    @abstractmethod
    def modalities(self) -> tuple[str, ...]:
        """The modalities the job reads and encodes."""

    @abstractmethod
    def dataset(self, manifest: Manifest) -> MultimodalDataset:
        """A dataset that loads, checks and preprocesses ``manifest``'s rows."""

    @abstractmethod
    def contract(self, modality: str) -> ModalityContract:
        """The contract that collates ``modality``'s preprocessed tensors."""

    @abstractmethod
    def encode(self, modality: str, batch: ModalityBatch, tokens: bool = False) -> Features:
        """Encoder + adapter of ``modality`` on a batch whose every sample is present."""


class ClassifierModel(BatchModel):
    """A classifier artifact through its `Predictor`.

    Args:
        predictor: the loaded predictor.
        modalities: feed only these (None: every modality of the model).
    """

    def __init__(self, predictor: Predictor, modalities: Sequence[str] | None = None) -> None:
        self.predictor = predictor
        self.subset = None if modalities is None else tuple(modalities)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The model's modalities, or the subset fed."""
        return self.predictor.modalities if self.subset is None else self.subset

    @property
    def uses_tokens(self) -> bool:
        """Whether the fusion reads tokens (then encoder stages pass them on)."""
        return bool(self.predictor.artifact.model.fusion.uses_tokens)

    def dataset(self, manifest: Manifest) -> MultimodalDataset:
        """The predictor's dataset: its contracts, quality gates and bad-row handling."""
        return self.predictor.dataset(manifest, self.subset, on_bad_row="skip")

    def contract(self, modality: str) -> ModalityContract:
        """The artifact's contract of ``modality``."""
        return self.predictor.artifact.contracts[modality]

    @torch.no_grad()
    def encode(self, modality: str, batch: ModalityBatch, tokens: bool = False) -> Features:
        """`MultimodalModel.encode` on this modality alone."""
        n = int(batch.present.shape[0])
        out = self.predictor.artifact.model.encode({modality: batch.to(self.device)}, n)
        if not tokens:
            return Features(out.pooled[modality].float().cpu())
        return Features(
            out.pooled[modality].float().cpu(),
            out.tokens[modality].float().cpu(),
            out.masks[modality].cpu(),
        )

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.predictor.device

    @torch.no_grad()
    def predict(
        self, rows: Sequence[Row], features: dict[str, list[Features | None]]
    ) -> list[Prediction]:
        """Fusion and heads over rows whose modalities were encoded one by one, decoded
        by the predictor.

        Args:
            rows: the manifest rows (ids for the answers).
            features: modality -> per row its `Features` (``P = 1``), or None where absent.
        """
        model = self.predictor.artifact.model
        n = len(rows)
        encoded = model.encode({}, n)  # every modality absent; present ones filled below
        for m, per_row in features.items():
            present = torch.tensor([f is not None for f in per_row], dtype=torch.bool)  # (B,)
            if not bool(present.any()):
                continue
            encoded.present[m] = present.to(self.device)
            encoded.pooled[m] = _stack([f.pooled[0] if f else None for f in per_row]).to(
                self.device
            )
            if model.fusion.uses_tokens:
                tok, msk = _pad(per_row, n)
                encoded.tokens[m], encoded.masks[m] = tok.to(self.device), msk.to(self.device)
        out = model.fuse(encoded)
        collected = Collected(
            indices=[r.index for r in rows],
            logits=out.logits.float().cpu(),
            unimodal={m: v.float().cpu() for m, v in out.unimodal_logits.items()},
            present={m: v.cpu() for m, v in out.present.items()},
            weights=None if out.fusion.weights is None else out.fusion.weights.float().cpu(),
            embedding=out.embedding.float().cpu(),
            targets=None,
            modalities=model.modalities,
        )
        return self.predictor.decode(collected, rows)


def _stack(rows: Sequence[Tensor | None]) -> Tensor:
    """``(B, D)`` from per-row ``(D,)`` vectors, zeros where None."""
    like = next(r for r in rows if r is not None)
    return torch.stack([torch.zeros_like(like) if r is None else r for r in rows])


def _pad(rows: Sequence[Features | None], n: int) -> tuple[Tensor, Tensor]:
    """``(B, T, D)`` tokens and ``(B, T)`` masks from per-row ``(1, T_i, D)`` tokens
    (zeros and False where a row is absent or shorter)."""
    present = [(i, f.tokens, f.masks) for i, f in enumerate(rows) if f and f.tokens is not None]
    t = max(int(tok.shape[1]) for _, tok, _ in present)
    tokens = torch.zeros(n, t, int(present[0][1].shape[2]))
    masks = torch.zeros(n, t, dtype=torch.bool)
    for i, tok, msk in present:
        k = int(tok.shape[1])
        tokens[i, :k] = tok[0]
        masks[i, :k] = True if msk is None else msk[0]
    return tokens, masks


class AlignmentModel(BatchModel):
    """An alignment artifact: unit vectors in the shared space, as `Aligner.embed` makes.

    Args:
        aligner: the loaded aligner.
    """

    def __init__(self, aligner: Aligner) -> None:
        self.aligner = aligner

    @property
    def modalities(self) -> tuple[str, ...]:
        """The two aligned modalities."""
        return tuple(self.aligner.encoders)

    def dataset(self, manifest: Manifest) -> MultimodalDataset:
        """Rows read with the frozen encoders' contracts (no labels, no quality gates)."""
        contracts = {m: e.contract for m, e in self.aligner.encoders.items()}
        return MultimodalDataset(manifest, contracts, None, require_label=False)

    def contract(self, modality: str) -> ModalityContract:
        """The frozen encoder's contract of ``modality``."""
        return self.aligner.encoders[modality].contract

    @torch.no_grad()
    def encode(self, modality: str, batch: ModalityBatch, tokens: bool = False) -> Features:
        """Frozen encoder, then the adapters (`AlignmentEnsemble.embed`)."""
        enc = self.aligner.encoders[modality]
        return Features(self.aligner.model.embed(modality, enc(batch.data, batch.lengths).pooled))
