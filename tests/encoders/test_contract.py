"""One contract test over every registered encoder: shapes, masks, gradients, determinism."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from polyfuse.encoders import ENCODERS, Encoder, build_encoder, encoder_class, resolve_contract
from polyfuse.modalities import ModalityBatch, ModalityContract

#: Small parameters per encoder so the suite stays fast; pretrained ones keep their defaults.
PARAMS: dict[str, dict[str, Any]] = {
    "image_cnn": {"widths": [4, 8]},
    "audio_cnn": {"widths": [4, 8]},
    "timeseries_cnn": {"width": 8, "depth": 2},
    "timeseries_gru": {"hidden": 4},
    "text_transformer": {"width": 8, "layers": 1, "heads": 2},
    "efficientnet_lite0": {},
    "minilm": {},
    "video_frames": {"frame": "image_cnn", "frame_params": {"widths": [4, 8]}},
    "whisper_base": {"window_seconds": 0.5},
}
CONTRACT_PARAMS: dict[str, dict[str, Any]] = {
    "image": {"size": [16, 16]},
    "audio": {"sample_rate": 8000, "n_mels": 16},
    "text": {},
    "timeseries": {"channels": 3, "normalize": "instance"},
    "video": {"size": [16, 16], "frames": 3},
}
#: Encoders whose pooled output ignores padding exactly (attention masks / packed RNNs,
#: per-frame encoding with a masked mean over frames).
PADDING_INVARIANT = {"text_transformer", "timeseries_gru", "minilm", "video_frames", "whisper_base"}


def test_every_encoder_is_covered() -> None:
    assert set(ENCODERS.list()) == set(PARAMS)


def _build(name: str, seed: int = 0) -> Encoder:
    cls = encoder_class(name)
    # pretrained encoders keep the preprocessing their weights were trained with
    contract_params = {} if cls.pretrained else dict(CONTRACT_PARAMS[cls.kind])
    contract = resolve_contract("m", cls.kind, name, PARAMS[name], contract_params)
    torch.manual_seed(seed)
    return build_encoder(name, contract, PARAMS[name])


def _batch(contract: ModalityContract) -> ModalityBatch:
    """Three samples of different lengths (where the modality has lengths)."""
    rng = np.random.default_rng(0)
    kind = contract.kind
    if kind == "image":
        raw: list[Any] = [rng.integers(0, 255, (20, 24, 3), dtype=np.uint8) for _ in range(3)]
    elif kind == "audio":
        raw = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (4000, 2500, 1200)]
    elif kind == "text":
        raw = ["a dog runs on the beach today", "a cat sleeps", "hello"]
    elif kind == "video":
        raw = [rng.integers(0, 255, (n, 20, 24, 3), dtype=np.uint8) for n in (3, 2, 1)]
    else:
        raw = [rng.standard_normal((n, 3)).astype(np.float32) for n in (12, 7, 3)]
    items = [contract.preprocess(contract.load(r)) for r in raw]
    return contract.collate(items, torch.ones(3, dtype=torch.bool))


@pytest.fixture(scope="module", params=sorted(PARAMS))
def encoder(request: pytest.FixtureRequest) -> Encoder:
    enc = _build(request.param)
    enc.registry_name = request.param  # type: ignore[assignment]
    return enc


def test_shapes_and_pooled_consistency(encoder: Encoder) -> None:
    encoder.eval()
    batch = _batch(encoder.contract)
    out = encoder(batch.data, batch.lengths)
    b, t, d = out.tokens.shape
    assert (b, d) == (3, encoder.out_dim) and t >= 1
    assert out.mask.shape == (3, t) and out.mask.dtype == torch.bool
    assert out.pooled.shape == (3, encoder.out_dim)
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()
    assert torch.allclose(encoder.pool(out.tokens, out.mask), out.pooled, atol=1e-6)


def test_masks_follow_lengths(encoder: Encoder) -> None:
    encoder.eval()
    batch = _batch(encoder.contract)
    out = encoder(batch.data, batch.lengths)
    valid = out.mask.sum(1)
    assert bool(out.mask[:, 0].all()), "every sample keeps at least its first token"
    if batch.lengths is not None:
        order = torch.argsort(batch.lengths, descending=True)
        assert (valid[order][:-1] >= valid[order][1:]).all(), "longer inputs keep more tokens"
        assert bool(out.mask[order[0]].all()), "the longest sample is never masked"
    if encoder.registry_name in PADDING_INVARIANT and batch.lengths is not None:
        short = int(batch.lengths.argmin())
        alone = encoder(
            batch.data[short : short + 1, ..., : int(batch.lengths[short])]
            if encoder.kind == "audio"
            else batch.data[short : short + 1, : int(batch.lengths[short])],
            batch.lengths[short : short + 1],
        )
        assert torch.allclose(alone.pooled[0], out.pooled[short], atol=1e-4), (
            "padding must not change a sample's pooled vector"
        )


def test_gradients_reach_trainable_encoders_only(encoder: Encoder) -> None:
    encoder.train()
    for p in encoder.parameters():
        p.grad = None
    batch = _batch(encoder.contract)
    out = encoder(batch.data, batch.lengths)
    if encoder.frozen:
        assert not any(p.requires_grad for p in encoder.parameters())
        assert not out.pooled.requires_grad
        assert not encoder.training, "frozen encoders stay in eval mode"
        return
    out.pooled.sum().backward()
    missing = [n for n, p in encoder.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


def test_deterministic_under_seed() -> None:
    for name in ("image_cnn", "audio_cnn", "timeseries_cnn", "timeseries_gru", "text_transformer"):
        a, b = _build(name, seed=3).eval(), _build(name, seed=3).eval()
        batch = _batch(a.contract)
        assert torch.equal(a(batch.data, batch.lengths).pooled, b(batch.data, batch.lengths).pooled)
        c = _build(name, seed=4).eval()
        assert not torch.equal(
            a(batch.data, batch.lengths).pooled, c(batch.data, batch.lengths).pooled
        )


def test_fingerprint_tracks_parameters_and_contract() -> None:
    a = _build("image_cnn")
    assert a.fingerprint() == _build("image_cnn").fingerprint()
    contract = resolve_contract("m", "image", "image_cnn", {}, {"size": [8, 8]})
    other = build_encoder("image_cnn", contract, {"widths": [4, 8]})
    assert other.fingerprint() != a.fingerprint()
