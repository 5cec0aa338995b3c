"""Manifests, datasets, collation, length-grouped sampling and frozen-feature caching."""

from polyfuse.data.dataset import BadRow, Batch, Collator, Example, MultimodalDataset
from polyfuse.data.features import FrozenFeatures
from polyfuse.data.manifest import Manifest, Row, RowProblem, write_jsonl
from polyfuse.data.sampler import LengthGroupedBatchSampler

__all__ = [
    "BadRow",
    "Batch",
    "Collator",
    "Example",
    "FrozenFeatures",
    "LengthGroupedBatchSampler",
    "Manifest",
    "MultimodalDataset",
    "Row",
    "RowProblem",
    "write_jsonl",
]
