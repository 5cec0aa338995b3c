"""Modality contracts keyed by kind: ``image``, ``audio``, ``text``, ``timeseries``, ``video``."""

from __future__ import annotations

from typing import Any

from polyfuse.core.errors import ContractError
from polyfuse.core.registry import Registry
from polyfuse.modalities.audio import AudioContract
from polyfuse.modalities.base import ModalityBatch, ModalityContract, pad_stack
from polyfuse.modalities.image import ImageContract
from polyfuse.modalities.text import TextContract
from polyfuse.modalities.timeseries import TimeSeriesContract
from polyfuse.modalities.video import VideoClip, VideoContract

CONTRACTS: Registry[ModalityContract] = Registry("modality kind")
for _cls in (ImageContract, AudioContract, TextContract, TimeSeriesContract, VideoContract):
    CONTRACTS.register(_cls.kind)(_cls)


def create_contract(name: str, kind: str, params: dict[str, Any] | None = None) -> ModalityContract:
    """Build the contract of modality ``name`` of the given ``kind``."""
    cls: Any = CONTRACTS.get(kind)
    contract: ModalityContract = cls.create(name, dict(params or {}))
    return contract


def contract_from_dict(data: dict[str, Any]) -> ModalityContract:
    """Rebuild a contract saved in an artifact, checking kind and version."""
    kind = data.get("kind")
    if kind not in CONTRACTS:
        raise ContractError(
            f"modality '{data.get('name')}' uses contract kind '{kind}', unknown to this polyfuse",
            hint="install the polyfuse version that trained the artifact",
        )
    cls: Any = CONTRACTS.get(str(kind))
    contract: ModalityContract = cls.from_dict(data)
    return contract


__all__ = [
    "CONTRACTS",
    "AudioContract",
    "ImageContract",
    "ModalityBatch",
    "ModalityContract",
    "TextContract",
    "TimeSeriesContract",
    "VideoClip",
    "VideoContract",
    "contract_from_dict",
    "create_contract",
    "pad_stack",
]
