"""Datasets and collation: bad rows, presence masks, memoisation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from polyfuse.core.errors import InvalidInputError
from polyfuse.data import BadRow, Collator, Example, Manifest, MultimodalDataset
from polyfuse.heads.tasks import MulticlassTask
from polyfuse.modalities import create_contract


def _dataset(manifest: Path, **kwargs: object) -> MultimodalDataset:
    contracts = {
        "image": create_contract("image", "image", {"size": [12, 12], "channels": 1}),
        "audio": create_contract("audio", "audio", {"sample_rate": 8000, "n_mels": 16}),
    }
    m = Manifest.load(manifest, list(contracts))
    return MultimodalDataset(m, contracts, MulticlassTask.fit([r.label for r in m.rows]), **kwargs)  # type: ignore[arg-type]


def test_collate_keeps_present_items_and_masks(synthetic: Callable[..., tuple[Path, Path]]) -> None:
    train, _ = synthetic(20)
    ds = _dataset(train)
    items = [ds[i] for i in range(8)]
    batch = Collator(ds.contracts)(items)
    assert batch.size == 8 and batch.targets is not None and batch.targets.shape == (8,)
    for m, mb in batch.inputs.items():
        assert mb.present.shape == (8,)
        assert mb.data.shape[0] == int(mb.present.sum())
        assert mb.present.tolist() == [m in it.inputs for it in items if isinstance(it, Example)]
    assert batch.inputs["audio"].lengths is not None


def test_bad_row_is_returned_then_collated_aside(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    train, _ = synthetic(10)
    (train.parent / "img0.png").write_bytes(b"not an image at all")
    ds = _dataset(train)
    first = ds[0]
    assert isinstance(first, BadRow) and first.index == 0
    assert "not a supported image" in first.describe()
    batch = Collator(ds.contracts)([ds[i] for i in range(4)])
    assert batch.size == 3 and [b.index for b in batch.bad_rows] == [0]
    assert ds.bad_rows == [first]


def test_fail_policy_raises_the_typed_error(synthetic: Callable[..., tuple[Path, Path]]) -> None:
    train, _ = synthetic(10)
    (train.parent / "img0.png").unlink()
    ds = _dataset(train, on_bad_row="fail")
    with pytest.raises(InvalidInputError, match="file not found"):
        ds[0]


def test_memoised_items_are_reused_within_budget(
    synthetic: Callable[..., tuple[Path, Path]],
) -> None:
    train, _ = synthetic(10)
    ds = _dataset(train, memory_cache_mb=1)
    a = ds[3]
    b = ds[3]
    assert isinstance(a, Example) and isinstance(b, Example)
    assert a.inputs["image"] is b.inputs["image"]
    none = _dataset(train, memory_cache_mb=0)
    x, y = none[3], none[3]
    assert isinstance(x, Example) and isinstance(y, Example)
    assert x.inputs["image"] is not y.inputs["image"] and torch.equal(
        x.inputs["image"], y.inputs["image"]
    )


def test_lengths_are_learned_while_loading(synthetic: Callable[..., tuple[Path, Path]]) -> None:
    train, _ = synthetic(10, missing=False)
    ds = _dataset(train)
    assert ds.lengths[2] == 0
    ds[2]
    assert ds.lengths[2] > 1


def test_audio_from_a_videos_track_is_missing_when_the_video_has_none(tmp_path: Path) -> None:
    from tests.videos import write_clip

    write_clip(tmp_path / "tone.mp4", frames=6)
    write_clip(tmp_path / "mute.mp4", frames=6, audio=None)
    manifest_path = tmp_path / "m.jsonl"
    manifest_path.write_text(
        '{"video": "tone.mp4", "label": "a"}\n{"video": "mute.mp4", "label": "b"}\n{"label": "a"}\n'
    )
    contracts = {
        "audio": create_contract("audio", "audio", {"sample_rate": 8000, "source": "video"}),
        "video": create_contract("video", "video", {"frames": 2, "size": [8, 8]}),
    }
    task = MulticlassTask.fit(["a", "b"])
    for names in (("audio", "video"), ("audio",)):  # the video key may be metadata only
        manifest = Manifest.load(manifest_path, names)
        ds = MultimodalDataset(manifest, {m: contracts[m] for m in names}, task)
        first, second, third = ds[0], ds[1], ds[2]
        assert isinstance(first, Example) and set(first.inputs) == set(names)
        if names == ("audio",):  # no modality left: a bad row, as for an absent key
            assert isinstance(second, BadRow) and isinstance(third, BadRow)
            assert "none of the model's modalities" in second.error.message
        else:  # a missing modality, not a bad row
            assert isinstance(second, Example) and set(second.inputs) == {"video"}
            assert isinstance(third, BadRow)
        assert "audio" in ds.rows[0].values and "audio" not in ds.rows[2].values
