"""Encoders keyed by name; each maps a modality batch to tokens, mask and a pooled vector."""

from __future__ import annotations

from typing import Any

from polyfuse.core.errors import ConfigError
from polyfuse.core.registry import Registry
from polyfuse.encoders.base import Encoder, EncoderOutput, lengths_to_mask, masked_mean
from polyfuse.encoders.cache import FeatureCache, content_hash, default_cache_dir
from polyfuse.encoders.pretrained import EfficientNetLite0, HFTextEncoder, WhisperEncoder
from polyfuse.encoders.trainable import (
    AudioCNN,
    ImageCNN,
    TextTransformer,
    TimeSeriesCNN,
    TimeSeriesGRU,
)
from polyfuse.encoders.video import AGGREGATORS, VideoFrames
from polyfuse.modalities import ModalityContract, create_contract

ENCODERS: Registry[Encoder] = Registry("encoder")
for _name, _cls in {
    "image_cnn": ImageCNN,
    "audio_cnn": AudioCNN,
    "timeseries_cnn": TimeSeriesCNN,
    "timeseries_gru": TimeSeriesGRU,
    "text_transformer": TextTransformer,
    "efficientnet_lite0": EfficientNetLite0,
    "minilm": HFTextEncoder,
    "video_frames": VideoFrames,
    "whisper_base": WhisperEncoder,
}.items():
    ENCODERS.register(_name)(_cls)


def encoder_class(name: str) -> type[Encoder]:
    """The encoder class registered as ``name``."""
    cls: Any = ENCODERS.get(name)
    return cls  # type: ignore[no-any-return]


def resolve_contract(
    modality: str,
    kind: str,
    encoder: str,
    encoder_params: dict[str, Any],
    contract_params: dict[str, Any],
) -> ModalityContract:
    """The modality contract: the encoder's preprocessing defaults, overridden by the config."""
    cls = encoder_class(encoder)
    if cls.kind != kind:
        raise ConfigError(
            f"modalities.{modality}.encoder",
            f"encoder '{encoder}' reads '{cls.kind}' inputs but the modality kind is '{kind}'",
            hint=f"encoders for {kind}: {', '.join(encoders_for(kind))}",
        )
    return create_contract(
        modality, kind, {**cls.contract_defaults(**encoder_params), **contract_params}
    )


def build_encoder(name: str, contract: ModalityContract, params: dict[str, Any]) -> Encoder:
    """Build encoder ``name`` for ``contract``; unknown parameters are config errors."""
    return ENCODERS.build(
        name, contract, where=f"modalities.{contract.name}.encoder", params=params
    )


def encoders_for(kind: str) -> list[str]:
    """Names of the encoders that read ``kind`` inputs."""
    return [n for n in ENCODERS.list() if encoder_class(n).kind == kind]


__all__ = [
    "AGGREGATORS",
    "ENCODERS",
    "AudioCNN",
    "EfficientNetLite0",
    "Encoder",
    "EncoderOutput",
    "FeatureCache",
    "HFTextEncoder",
    "ImageCNN",
    "TextTransformer",
    "TimeSeriesCNN",
    "TimeSeriesGRU",
    "VideoFrames",
    "WhisperEncoder",
    "build_encoder",
    "content_hash",
    "default_cache_dir",
    "encoder_class",
    "encoders_for",
    "lengths_to_mask",
    "masked_mean",
    "resolve_contract",
]
