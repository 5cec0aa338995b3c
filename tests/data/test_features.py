"""Frozen features: computed once, then served from the disk cache."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from polyfuse.data import Collator, Example, FrozenFeatures, Manifest, MultimodalDataset
from polyfuse.encoders import FeatureCache, build_encoder, resolve_contract


def _frozen_image_setup(
    manifest: Path, cache_dir: Path
) -> tuple[MultimodalDataset, FrozenFeatures]:
    contract = resolve_contract(
        "image", "image", "image_cnn", {"widths": [4]}, {"size": [12, 12], "channels": 1}
    )
    torch.manual_seed(0)
    encoder = build_encoder("image_cnn", contract, {"widths": [4]})
    encoder.freeze()
    ds = MultimodalDataset(Manifest.load(manifest, ["image"]), {"image": contract}, None)
    return ds, FrozenFeatures("image", encoder, FeatureCache(cache_dir, encoder.fingerprint()))


def test_prepare_encodes_misses_once_and_matches_direct_encoding(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, _ = synthetic(12)
    ds, source = _frozen_image_setup(train, tmp_path / "cache")
    with_image = sum("image" in r.values for r in ds.rows)
    assert source.prepare(ds, batch_size=4, progress=False) == with_image
    ex = ds[0]
    assert isinstance(ex, Example) and ex.encoded == frozenset({"image"})
    direct = source.encoder(ds.preprocessed(0, "image")[None]).tokens[0]
    assert torch.allclose(ex.inputs["image"], direct, atol=1e-2), "cached tokens (fp16) == direct"
    batch = Collator(ds.contracts)([ds[i] for i in range(3)])
    assert batch.inputs["image"].encoded and batch.inputs["image"].data.dim() == 3

    ds2, source2 = _frozen_image_setup(train, tmp_path / "cache")
    assert source2.prepare(ds2, progress=False) == 0, "second run reads everything from the cache"
    assert source2.encoded_items == 0


def test_changed_file_content_is_a_cache_miss(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, _ = synthetic(12, missing=False)
    ds, source = _frozen_image_setup(train, tmp_path / "cache")
    source.prepare(ds, progress=False)
    (train.parent / "img0.png").write_bytes((train.parent / "img3.png").read_bytes())
    ds2, source2 = _frozen_image_setup(train, tmp_path / "cache")
    assert source2.prepare(ds2, progress=False) == 0  # img0 now equals img3, already cached
    Image.new("L", (12, 12), color=99).save(train.parent / "img1.png")  # new content
    ds3, source3 = _frozen_image_setup(train, tmp_path / "cache")
    assert source3.prepare(ds3, progress=False) == 1 and source3.encoded_items == 1
