"""The modality contract: how one kind of input is loaded, validated, preprocessed and batched.

A contract is a small frozen dataclass whose fields are its preprocessing
parameters. It is saved next to the weights of every artifact and checked when
the artifact loads, so training and serving cannot disagree on resizing,
sample rates or tokenisation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import Tensor

from polyfuse.core.errors import ContractError, InvalidInputError

#: Sources a file modality accepts: a path (relative to ``base_dir``) or the raw bytes.
FileValue = str | os.PathLike[str] | bytes


class AbsentInputError(InvalidInputError):
    """The value holds no input of this modality, so the modality is missing for the row
    (as if its key were absent), not a bad row: a video without an audio track read by an
    audio contract with ``source: video``. Callers that do not know the difference see an
    `InvalidInputError`."""


@dataclass(frozen=True)
class ModalityBatch:
    """One modality's inputs for a batch of ``B`` samples, ``P`` of which carry it.

    Only present items are stored, so an encoder never runs on a placeholder.

    Attributes:
        data: ``(P, ...)`` preprocessed inputs, or ``(P, T, D)`` cached encoder
            tokens when ``encoded`` is true.
        present: ``(B,)`` bool, which samples of the batch carry this modality.
        lengths: ``(P,)`` valid length along the padded axis, or ``None`` when
            items are not padded (fixed-size images).
        encoded: ``data`` holds encoder output (from the feature cache).
    """

    data: Tensor
    present: Tensor
    lengths: Tensor | None = None
    encoded: bool = False

    def to(self, device: torch.device | str) -> ModalityBatch:
        """Move tensors to ``device``."""
        lengths = None if self.lengths is None else self.lengths.to(device)
        return dataclasses.replace(
            self, data=self.data.to(device), present=self.present.to(device), lengths=lengths
        )

    @property
    def num_present(self) -> int:
        """Number of samples carrying this modality."""
        return int(self.data.shape[0])


@dataclass(frozen=True)
class ModalityContract(ABC):
    """Base class of modality contracts.

    Subclasses are frozen dataclasses; their fields are the preprocessing
    parameters. ``kind`` and ``version`` identify the contract class; bump
    ``version`` whenever the same parameters would produce different tensors.

    Attributes:
        name: the modality's key in manifests and configs (``image``, ``front_camera``).
    """

    kind: ClassVar[str]
    version: ClassVar[int]
    #: Manifest values are file paths (image, audio, series) rather than inline strings.
    file_based: ClassVar[bool] = True

    name: str

    # ---- serialisation -------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Preprocessing parameters as plain JSON-able values."""
        return {
            f.name: _jsonable(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "name"
        }

    def to_dict(self) -> dict[str, Any]:
        """Serialisable form saved inside artifacts."""
        return {
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "params": self.params(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a contract saved by `to_dict`, refusing another kind or version."""
        if data.get("kind") != cls.kind:
            raise ContractError(f"contract kind '{data.get('kind')}' cannot load as '{cls.kind}'")
        if data.get("version") != cls.version:
            raise ContractError(
                f"modality '{data.get('name')}' was saved with {cls.kind} contract "
                f"v{data.get('version')}, this polyfuse implements v{cls.version}",
                hint="install the polyfuse version that trained the artifact, or retrain it",
            )
        return cls.create(str(data["name"]), data.get("params", {}))

    @classmethod
    def create(cls, name: str, params: dict[str, Any]) -> Self:
        """Build from a parameter mapping, rejecting unknown keys with a clear error."""
        from polyfuse.core.config import check_keys

        fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "name"}
        check_keys(params, fields, where=f"modalities.{name}.contract")
        values = {k: _from_json(fields[k].type, v) for k, v in params.items()}
        contract = cls(name=name, **values)
        contract.check()
        return contract

    def fingerprint(self) -> str:
        """Stable hash of kind, version and parameters (used in cache keys)."""
        blob = json.dumps([self.kind, self.version, self.params()], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def manifest_key(self) -> str:
        """The manifest key this modality's value is read from: its name, unless the
        contract reads another key's file (the audio contract's ``source``)."""
        return self.name

    # ---- the contract ----------------------------------------------------
    def check(self) -> None:  # noqa: B027 - optional hook
        """Validate the parameters themselves; raise `ConfigError` on nonsense."""

    @abstractmethod
    def load(self, value: Any, *, field: str | None = None, base_dir: Path | None = None) -> Any:
        """Read and validate one raw value; raise `InvalidInputError` on bad input."""

    @abstractmethod
    def preprocess(self, obj: Any) -> Tensor:
        """Turn a validated object into the tensor the encoders expect."""

    @abstractmethod
    def collate(self, items: Sequence[Tensor], present: Tensor) -> ModalityBatch:
        """Batch the preprocessed tensors of the present samples."""

    def padded_length(self, x: Tensor) -> int:
        """Size of a preprocessed tensor along the axis `collate` pads (for length bucketing)."""
        return 1

    def noise(self, like: Tensor, rng: np.random.Generator) -> Tensor:
        """A preprocessed input of pure noise shaped like the preprocessed sample ``like``.

        Used for noise substitution in training (``modalities.<name>.noise``): the
        model learns that an uninformative input (a dead microphone, a blank frame)
        carries no evidence. Contracts without a noise model raise `NotImplementedError`.
        """
        raise NotImplementedError(f"{self.kind} inputs have no noise model")

    def substitute(self, obj: Any, like: Tensor, rng: np.random.Generator) -> Tensor:
        """A loaded non-signal input ``obj`` (environmental sound, an empty scene)
        preprocessed into the shape of the preprocessed sample ``like``: a random window
        of it when ``like`` is shorter, repeated when longer.

        Used for non-signal substitution in training (``modalities.<name>.substitute``).
        Contracts whose inputs cannot be fitted to another's shape raise
        `NotImplementedError`.
        """
        raise NotImplementedError(f"{self.kind} inputs have no substitution")

    def sample_view(self, batch: ModalityBatch, row: int) -> Tensor:
        """Unpadded view of data row ``row`` of a collated batch (writes edit the batch)."""
        return batch.data[row]

    def fit(self, objs: Sequence[Any]) -> Self:
        """Return a contract whose data-dependent statistics are fitted on ``objs``."""
        return self

    @property
    def needs_fit(self) -> bool:
        """Whether `fit` must run on training data before the contract is usable."""
        return False

    # ---- helpers for subclasses -------------------------------------------
    def error(
        self,
        reason: str,
        *,
        field: str | None = None,
        path: str | Path | None = None,
        hint: str | None = None,
    ) -> InvalidInputError:
        """An `InvalidInputError` for this modality."""
        return InvalidInputError(self.name, reason, field=field, path=path, hint=hint)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _from_json(annotation: Any, value: Any) -> Any:
    """Lists from JSON/YAML become tuples where the field is a tuple."""
    if isinstance(value, list) and "tuple" in str(annotation):
        return tuple(value)
    return value


def window(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """``length`` consecutive rows of ``x`` from a random start, or ``x`` repeated along its
    first axis up to ``length`` when it is shorter."""
    if x.shape[0] >= length:
        start = int(rng.integers(0, x.shape[0] - length + 1))
        return x[start : start + length]
    reps = -(-length // max(1, x.shape[0]))
    return np.concatenate([x] * reps, axis=0)[:length]


def pad_stack(items: Sequence[Tensor], dim: int = -1, value: float = 0.0) -> tuple[Tensor, Tensor]:
    """Stack tensors that differ only along ``dim``, padding to the longest.

    Returns:
        ``(stacked, lengths)`` where ``stacked`` has a new leading batch axis.
    """
    if not items:
        raise ValueError("pad_stack needs at least one tensor")
    dim = dim % items[0].dim()
    lengths = torch.tensor([t.shape[dim] for t in items], dtype=torch.long)
    longest = int(lengths.max())
    shape = list(items[0].shape)
    shape[dim] = longest
    out = items[0].new_full((len(items), *shape), value)
    for i, t in enumerate(items):
        out[i].narrow(dim, 0, t.shape[dim]).copy_(t)
    return out, lengths
