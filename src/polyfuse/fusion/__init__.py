"""Fusions keyed by name. Each takes ``Mapping[str, Tensor]`` features plus presence."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from polyfuse.core.registry import Registry
from polyfuse.fusion.base import Fusion, FusionOutput, masked_softmax, mlp
from polyfuse.fusion.modules import (
    ConcatFusion,
    CrossAttentionFusion,
    GatedFusion,
    LateFusion,
    SetFusion,
)

FUSIONS: Registry[Fusion] = Registry("fusion")
for _name, _cls in {
    "concat": ConcatFusion,
    "late": LateFusion,
    "gated": GatedFusion,
    "cross_attention": CrossAttentionFusion,
    "set": SetFusion,
}.items():
    FUSIONS.register(_name)(_cls)


def build_fusion(
    name: str, modalities: Sequence[str], dim: int, num_outputs: int, params: dict[str, Any]
) -> Fusion:
    """Build fusion ``name``; unknown parameters are config errors naming the valid ones."""
    return FUSIONS.build(name, modalities, dim, num_outputs, where="model.fusion", params=params)


__all__ = [
    "FUSIONS",
    "ConcatFusion",
    "CrossAttentionFusion",
    "Fusion",
    "FusionOutput",
    "GatedFusion",
    "LateFusion",
    "SetFusion",
    "build_fusion",
    "masked_softmax",
    "mlp",
]
