"""The video encoder: an image encoder per frame, temporal aggregators over a frame mask, and
frozen frame features through the feature cache as ``(P, T, D)`` tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polyfuse.core.errors import ConfigError
from polyfuse.data import Collator, Manifest, MultimodalDataset
from polyfuse.data.features import attach_frozen_features
from polyfuse.encoders import AGGREGATORS, VideoFrames, build_encoder, resolve_contract
from polyfuse.heads.tasks import MulticlassTask
from tests.videos import write_clip

FRAME = {"frame": "image_cnn", "frame_params": {"widths": [4, 8]}}


def _encoder(aggregator: str = "mean") -> VideoFrames:
    params = {**FRAME, "aggregator": aggregator}
    contract = resolve_contract("clip", "video", "video_frames", params, {"size": [8, 8]})
    torch.manual_seed(0)
    return build_encoder("video_frames", contract, params).eval()  # type: ignore[return-value]


def test_mean_is_the_average_of_the_real_frames() -> None:
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [99.0, 99.0]]])  # (1, 3, 2)
    mask = torch.tensor([[True, True, False]])
    out = AGGREGATORS.build("mean", 2, where="a", params={})(tokens, mask)
    assert torch.equal(out, torch.tensor([[2.0, 3.0]]))


def test_attention_gives_padding_no_weight_and_equal_frames_equal_weight() -> None:
    attention = AGGREGATORS.build("attention", 2, where="a", params={})
    tokens = torch.tensor([[[1.0, 2.0], [3.0, 5.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    out = attention(tokens, mask)
    padded = tokens.clone()
    padded[0, 2] = 1000.0
    assert torch.allclose(attention(padded, mask), out)
    same = torch.tensor([[[1.0, 2.0], [1.0, 2.0]]])
    assert torch.allclose(attention(same, torch.ones(1, 2, dtype=torch.bool)), same[:, 0])
    assert torch.equal(attention(tokens, torch.zeros(1, 3, dtype=torch.bool)), torch.zeros(1, 2))


def test_transformer_ignores_padding_and_sees_frame_order() -> None:
    torch.manual_seed(0)
    transformer = AGGREGATORS.build("transformer", 8, where="a", params={}).eval()
    torch.nn.init.normal_(transformer.position)
    tokens, mask = torch.randn(1, 4, 8), torch.tensor([[True, True, True, False]])
    padded = tokens.clone()
    padded[0, 3] = 1000.0
    assert torch.allclose(transformer(padded, mask), transformer(tokens, mask), atol=1e-5)
    swapped = tokens[:, [1, 0, 2, 3]]
    assert not torch.allclose(transformer(swapped, mask), transformer(tokens, mask))
    with pytest.raises(ValueError, match="max_frames"):
        transformer(torch.randn(1, 65, 8), torch.ones(1, 65, dtype=torch.bool))


def test_frames_are_encoded_one_by_one_and_padding_is_never_encoded() -> None:
    enc = _encoder()
    clips = torch.randn(2, 3, 3, 8, 8)  # (B, T, C, H, W)
    lengths = torch.tensor([3, 1])
    with torch.no_grad():
        out = enc(clips, lengths)
    assert out.tokens.shape == (2, 3, enc.out_dim) and out.mask.tolist()[1] == [True, False, False]
    with torch.no_grad():
        single = enc.frame(clips[0]).pooled  # the image encoder on each frame alone
    assert torch.allclose(out.tokens[0], single, atol=1e-5)
    assert float(out.tokens[1, 1:].abs().sum()) == 0.0
    assert torch.allclose(out.pooled[1], out.tokens[1, 0], atol=1e-6)  # the mean of one frame


def test_unknown_frame_encoders_and_aggregators_are_config_errors() -> None:
    contract = resolve_contract("clip", "video", "video_frames", FRAME, {"size": [8, 8]})
    with pytest.raises(ConfigError, match="unknown frame encoder 'audio_cnn'"):
        build_encoder("video_frames", contract, {"frame": "audio_cnn"})
    with pytest.raises(ConfigError, match="aggregator"):
        build_encoder("video_frames", contract, {**FRAME, "aggregator": "median"})


def test_frozen_frame_features_are_cached_as_frame_tokens(tmp_path: Path) -> None:
    enc = _encoder("attention")
    assert not enc.cacheable
    enc.frame.freeze()
    assert enc.cacheable and any(p.requires_grad for p in enc.parameters())  # aggregator trains
    write_clip(tmp_path / "long.mp4", frames=6, audio=None)
    write_clip(tmp_path / "short.mp4", frames=2, audio=None)  # fewer frames than sampled
    (tmp_path / "m.jsonl").write_text(
        '{"clip": "long.mp4", "label": "x"}\n{"clip": "short.mp4", "label": "x"}\n'
    )
    contract = resolve_contract(
        "clip", "video", "video_frames", FRAME, {"size": [8, 8], "frames": 3}
    )
    ds = MultimodalDataset(
        Manifest.load(tmp_path / "m.jsonl", ["clip"]), {"clip": contract}, MulticlassTask.fit(["x"])
    )
    enc.contract = contract
    encoded = attach_frozen_features({"clip": enc}, [ds], cache_dir=tmp_path, progress=False)
    assert encoded == {"clip": 2}
    batch = Collator(ds.contracts)([ds[0], ds[1]])
    tokens = batch.inputs["clip"]
    assert tokens.encoded and tokens.data.shape == (2, 3, enc.out_dim)  # (P, T, D)
    assert tokens.lengths is not None and tokens.lengths.tolist() == [3, 2]
    direct = enc(contract.preprocess(contract.load(tmp_path / "short.mp4"))[None])
    assert torch.allclose(tokens.data[1, :2], direct.tokens[0], atol=1e-2)  # stored as float16
    again = attach_frozen_features({"clip": enc}, [ds], cache_dir=tmp_path, progress=False)
    assert again == {"clip": 0}  # the second epoch reads the cache
