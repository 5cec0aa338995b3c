"""The registry of artifact kinds: name -> how to load one.

A kind names its loader as ``"module:attribute"`` so that this layer does not import
the layers above it (retrieval, models' captioner); the loader is imported on first use.
Adding a kind (a monitoring reference, a model card) is one `register_kind` call::

    register_kind("model-card", "polyfuse.cards:load_card", "a model card")
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyfuse.artifacts.format import DEFAULT_KIND, read_info
from polyfuse.core.errors import ArtifactError


@dataclass(frozen=True)
class ArtifactKind:
    """One kind of artifact: its name, its loader (``module:attribute``), a description."""

    name: str
    loader: str
    description: str

    def load(self, path: str | Path) -> Any:
        """Load the artifact at ``path`` with this kind's loader."""
        module, _, attr = self.loader.partition(":")
        target: Any = importlib.import_module(module)
        for part in attr.split("."):
            target = getattr(target, part)
        loader: Callable[[str | Path], Any] = target
        return loader(path)


KINDS: dict[str, ArtifactKind] = {}


def register_kind(name: str, loader: str, description: str) -> ArtifactKind:
    """Register a kind (a name registered twice is a programming error)."""
    if name in KINDS:
        raise ValueError(f"artifact kind {name!r} is already registered")
    KINDS[name] = ArtifactKind(name, loader, description)
    return KINDS[name]


def get_kind(name: str) -> ArtifactKind:
    """The registered kind ``name``, or an `ArtifactError` listing the known ones."""
    if name not in KINDS:
        close = difflib.get_close_matches(name, list(KINDS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ArtifactError(
            f"artifact kind {name!r} is unknown to this polyfuse",
            hint=f"{hint}known kinds: {', '.join(sorted(KINDS))}; "
            "install the polyfuse version that wrote it",
        )
    return KINDS[name]


def kind_of(path: str | Path) -> ArtifactKind:
    """The kind of the artifact at ``path`` (after the shared format checks)."""
    return get_kind(str(read_info(path).get("kind", DEFAULT_KIND)))


def load(path: str | Path) -> Any:
    """Load whatever artifact ``path`` holds, through its kind's loader."""
    return kind_of(path).load(path)


register_kind(
    "classifier",
    "polyfuse.artifacts.classifier:load_artifact",
    "a trained multimodal model (task multiclass, multilabel or regression)",
)
register_kind(
    "alignment",
    "polyfuse.retrieval.pipeline:Aligner.load",
    "alignment adapters on frozen encoders (task contrastive)",
)
register_kind(
    "captioning",
    "polyfuse.inference.captioner:Captioner",
    "a caption decoder over frozen image tokens (task captioning)",
)
register_kind(
    "onnx",
    "polyfuse.artifacts.classifier:load_artifact",
    "a classifier exported as ONNX graphs, fp32 or int8 (`polyfuse export`)",
)
