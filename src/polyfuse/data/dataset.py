"""Turning manifest rows into tensors: loading, validation, bad-row handling, caching.

Bad inputs never crash a run: `MultimodalDataset` returns a `BadRow` for a row
that fails (or raises, under ``on_bad_row="fail"``), the collator drops it and
hands it to the caller to report.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from polyfuse.core.errors import InvalidInputError, ManifestError, PolyfuseError
from polyfuse.data.manifest import Manifest, Row, read_from
from polyfuse.heads.tasks import Task
from polyfuse.modalities.base import AbsentInputError, ModalityBatch, ModalityContract, pad_stack
from polyfuse.modalities.quality import QualityGate, QualityVerdict


@dataclass(frozen=True)
class BadRow:
    """A row that failed loading, with the typed error that says why."""

    index: int
    id: str
    error: PolyfuseError

    def describe(self) -> str:
        """One line for reports."""
        return f"row {self.index + 1} (id {self.id}): {self.error.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form for bad-row reports."""
        err = self.error
        return {
            "row": self.index + 1,
            "id": self.id,
            "error": type(err).__name__,
            "modality": getattr(err, "modality", None),
            "path": getattr(err, "path", None),
            "reason": getattr(err, "reason", err.message),
        }


@dataclass
class Example:
    """One loaded sample.

    Attributes:
        index: manifest row index.
        inputs: modality -> preprocessed tensor, or cached encoder tokens
            ``(T, D)`` for modalities in ``encoded``.
        encoded: modalities whose input is cached encoder output.
        target: encoded label, or None when the row has none.
    """

    index: int
    inputs: dict[str, Tensor]
    encoded: frozenset[str] = frozenset()
    target: Tensor | None = None


@dataclass
class Batch:
    """A collated batch.

    Attributes:
        inputs: modality -> `ModalityBatch` (only modalities present in some sample).
        size: number of samples ``B``.
        indices: manifest row index of each sample.
        targets: stacked targets, or None.
        bad_rows: rows dropped from this batch.
    """

    inputs: dict[str, ModalityBatch]
    size: int
    indices: list[int]
    targets: Tensor | None = None
    bad_rows: list[BadRow] = field(default_factory=list)

    def to(self, device: torch.device | str) -> Batch:
        """Move tensors to ``device``."""
        return Batch(
            {m: b.to(device) for m, b in self.inputs.items()},
            self.size,
            self.indices,
            None if self.targets is None else self.targets.to(device),
            self.bad_rows,
        )


class FeatureSource:
    """Where a dataset gets cached frozen-encoder tokens for one modality.

    Implemented by `polyfuse.data.features.FrozenFeatures`.
    """

    def tokens(self, dataset: MultimodalDataset, index: int) -> Tensor:
        """Tokens ``(T, D)`` of row ``index``."""
        raise NotImplementedError


class MultimodalDataset(Dataset[Example | BadRow]):
    """Rows of a manifest as `Example` objects.

    Args:
        manifest: the parsed manifest.
        contracts: modality name -> contract (only these modalities are read).
        task: label encoder; None for unlabelled prediction.
        on_bad_row: ``skip`` returns `BadRow`, ``fail`` raises.
        memory_cache_mb: RAM budget for preprocessed tensors kept between epochs.
        require_label: rows without a label are bad rows.
        allow_empty: a row with none of ``contracts``' modalities is a valid sample
            with every modality missing (used when feeding a subset of modalities),
            instead of a bad row.
        transforms: modality -> ``fn(raw_object, row_index) -> raw_object`` applied
            after loading and before preprocessing (corruption analysis). A
            transformed modality is never served from the frozen-feature cache.
        gates: modality -> quality gate (`polyfuse.modalities.quality`), run on the
            loaded (and transformed) object: a failing input is left out of the row,
            as serving leaves it out of a request. Verdicts are kept (`low_quality`).
    """

    def __init__(
        self,
        manifest: Manifest,
        contracts: Mapping[str, ModalityContract],
        task: Task | None = None,
        *,
        on_bad_row: str = "skip",
        memory_cache_mb: int = 0,
        require_label: bool = True,
        allow_empty: bool = False,
        transforms: Mapping[str, Callable[[Any, int], Any]] | None = None,
        gates: Mapping[str, QualityGate] | None = None,
    ) -> None:
        self.manifest = manifest
        self.transforms = dict(transforms or {})
        self.gates = {m: g for m, g in (gates or {}).items() if m in contracts}
        self.verdicts: dict[tuple[int, str], QualityVerdict] = {}
        keys = {m: c.manifest_key for m, c in contracts.items() if c.manifest_key != m}
        self.rows: list[Row] = read_from(manifest.rows, keys) if keys else manifest.rows
        self.contracts = dict(contracts)
        self.task = task
        self.on_bad_row = on_bad_row
        self.require_label = require_label and task is not None
        self.allow_empty = allow_empty
        self.features: dict[str, FeatureSource] = {}
        self.lengths = [0] * len(self.rows)
        self._budget = memory_cache_mb * 2**20
        self._used = 0
        self._memo: dict[tuple[int, str, str], Tensor] = {}
        self._known_bad: dict[int, BadRow] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def raise_on_problems(self) -> None:
        """Under ``fail``, unparseable manifest rows are fatal."""
        if self.on_bad_row == "fail" and self.manifest.problems:
            p = self.manifest.problems[0]
            raise ManifestError(self.manifest.path, p.message, row=p.index + 1)

    def load(self, index: int, modality: str) -> Any:
        """Validated raw object of one modality of one row."""
        contract = self.contracts[modality]
        obj = contract.load(
            self.rows[index].values[modality], field=modality, base_dir=self.manifest.base_dir
        )
        transform = self.transforms.get(modality)
        return obj if transform is None else transform(obj, index)

    def preprocessed(self, index: int, modality: str) -> Tensor:
        """Preprocessed tensor, memoised in RAM within the budget (the quality gate is not
        applied: see `gated`)."""
        return self._memoised(
            (index, modality, "raw"),
            lambda: self.contracts[modality].preprocess(self.load(index, modality)),
        )

    def gated(self, index: int, modality: str) -> Tensor | None:
        """The preprocessed tensor, or None when the modality's quality gate refuses the
        input (the verdict is computed once per row and kept; the input loads once)."""
        gate, key = self.gates.get(modality), (index, modality)
        if gate is not None and key not in self.verdicts:
            obj = self.load(index, modality)
            self.verdicts[key] = gate(obj)
            if not self.verdicts[key].ok:
                return None
            contract = self.contracts[modality]
            return self._memoised((index, modality, "raw"), lambda: contract.preprocess(obj))
        return self.preprocessed(index, modality) if self.passes(index, modality) else None

    def passes(self, index: int, modality: str) -> bool:
        """Whether the row's input of ``modality`` passes its quality gate (True without
        a gate); loads the input the first time."""
        if modality not in self.gates:
            return True
        key = (index, modality)
        if key not in self.verdicts:
            self.verdicts[key] = self.gates[modality](self.load(index, modality))
        return self.verdicts[key].ok

    def low_quality(self, index: int) -> dict[str, QualityVerdict]:
        """Modality -> verdict of the row's inputs its gates refused (so far evaluated)."""
        return {m: v for (i, m), v in self.verdicts.items() if i == index and not v.ok}

    def _memoised(self, key: tuple[int, str, str], compute: Callable[[], Tensor]) -> Tensor:
        if key in self._memo:
            return self._memo[key]
        x = compute()
        size = x.numel() * x.element_size()
        if self._used + size <= self._budget:
            self._memo[key] = x
            self._used += size
        return x

    def __getitem__(self, index: int) -> Example | BadRow:
        if index in self._known_bad:
            return self._known_bad[index]
        row = self.rows[index]
        try:
            return self._example(index, row)
        except PolyfuseError as err:
            if self.on_bad_row == "fail":
                raise
            bad = BadRow(index, row.id, err)
            self._known_bad[index] = bad
            return bad

    def mark_bad(self, index: int, err: PolyfuseError) -> None:
        """Record a failure found outside `__getitem__` (e.g. during feature extraction)."""
        if self.on_bad_row == "fail":
            raise err
        self._known_bad[index] = BadRow(index, self.rows[index].id, err)

    @property
    def bad_rows(self) -> list[BadRow]:
        """Bad rows found so far, in row order."""
        return [self._known_bad[i] for i in sorted(self._known_bad)]

    def problem_rows(self) -> list[BadRow]:
        """Every row to report: unparseable manifest lines, then rows that failed loading."""
        path = self.manifest.path
        unparsed = [
            BadRow(p.index, str(p.index), ManifestError(path, p.message, row=p.index + 1))
            for p in self.manifest.problems
        ]
        return unparsed + self.bad_rows

    def _example(self, index: int, row: Row) -> Example:
        target = None
        if self.task is not None and row.label is not None:
            target = self.task.encode(row.label)
        elif self.require_label:
            raise InvalidInputError(
                "label",
                f"row has no '{self.manifest.label_key}' value",
                field=self.manifest.label_key,
            )
        inputs, encoded, length = {}, set(), 0
        for m in self.contracts:
            if m not in row.values:
                continue
            try:
                x = self._input(index, m)
            except AbsentInputError:  # e.g. a video without a soundtrack: the modality is missing
                continue
            if x is None:
                continue
            if m in self.features:
                encoded.add(m)
                length += int(x.shape[0])
            else:
                length += self.contracts[m].padded_length(x)
            inputs[m] = x
        if not inputs and not self.allow_empty:
            raise self._empty_row_error(index)
        self.lengths[index] = length
        return Example(index, inputs, frozenset(encoded), target)

    def _input(self, index: int, m: str) -> Tensor | None:
        """Cached tokens (a modality with a feature source) or the gated preprocessed
        tensor of one modality of a row; None when its quality gate refuses it."""
        if m in self.features:
            if not self.passes(index, m):
                return None
            return self._memoised(
                (index, m, "tokens"), functools.partial(self.features[m].tokens, self, index)
            )
        return self.gated(index, m)

    def _empty_row_error(self, index: int) -> InvalidInputError:
        refused = self.low_quality(index)
        if refused:
            listed = "; ".join(f"{m}: {v.reason}" for m, v in refused.items())
            return InvalidInputError(
                ",".join(refused),
                f"every given modality failed its quality gate ({listed})",
                hint="send inputs that carry signal, or relax modalities.<name>.quality",
            )
        return InvalidInputError(
            ",".join(self.contracts),
            "row has none of the model's modalities",
            hint=f"the model reads {', '.join(self.contracts)}; check the manifest keys",
        )


class Collator:
    """Batches examples per modality (present samples only) and sets bad rows aside.

    Args:
        contracts: modality name -> contract (its `collate` pads).
    """

    def __init__(self, contracts: Mapping[str, ModalityContract]) -> None:
        self.contracts = dict(contracts)

    def __call__(self, items: Sequence[Example | BadRow]) -> Batch:
        good = [x for x in items if isinstance(x, Example)]
        bad = [x for x in items if isinstance(x, BadRow)]
        inputs: dict[str, ModalityBatch] = {}
        for m, contract in self.contracts.items():
            present = torch.tensor([m in ex.inputs for ex in good], dtype=torch.bool)
            if not bool(present.any()):
                continue
            tensors = [ex.inputs[m] for ex in good if m in ex.inputs]
            if any(m in ex.encoded for ex in good):
                data, lengths = pad_stack(tensors, dim=0)  # (P, T, D)
                inputs[m] = ModalityBatch(data, present, lengths, encoded=True)
            else:
                inputs[m] = contract.collate(tensors, present)
        targets = None
        if good and all(ex.target is not None for ex in good):
            targets = torch.stack([ex.target for ex in good])  # type: ignore[misc]
        return Batch(inputs, len(good), [ex.index for ex in good], targets, bad)
