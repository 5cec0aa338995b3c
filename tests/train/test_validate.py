"""``polyfuse validate`` on video rows: the sound/picture offset of each video, reported
as a warning (videos without sound counted, not flagged), with the signal baseline or a
saved learned model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polyfuse.models.sync import LearnedSync, SyncNet, SyncSettings
from polyfuse.train.validate import validate_manifest
from tests.modalities.test_sync import RATE, clip
from tests.videos import write_clip


def _square(frames: np.ndarray) -> list[np.ndarray]:
    """(T, 32, 48) grey -> 48 x 48 RGB pictures."""
    out = np.zeros((len(frames), 48, 48, 3), np.uint8)
    out[:, 8:40] = frames[..., None]
    return list(out)


def write_videos(d: Path) -> dict[str, Path]:
    """3 s MP4s (25 fps) of a square that moves as the sound swells: ``in_sync``, ``late``
    (the sound 300 ms late) and ``mute`` (no audio stream)."""
    out = {}
    for name, offset, sound in (("in_sync", 0, True), ("late", 300, True), ("mute", 0, False)):
        frames, _, wave = clip(offset, seed=4)
        out[name] = write_clip(
            d / f"{name}.mp4",
            pictures=_square(frames),
            fps=25,
            size=48,
            audio=(wave / np.abs(wave).max() * 0.8) if sound else None,
            rate=RATE,
        )
    return out


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("videos")
    rows = [{"id": name, "video": p.name, "label": 1} for name, p in write_videos(d).items()]
    path = d / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_validate_reports_each_videos_offset(manifest: Path) -> None:
    report = validate_manifest(manifest, modalities=["video=video"], progress=False)
    assert not report.bad_rows
    sync = report.sync
    assert sync is not None and sync.method == "signal"
    assert (sync.checked, sync.no_sound) == (2, 1)
    offsets = {o["id"]: o["av_offset_ms"] for o in sync.offsets}
    assert abs(offsets["in_sync"]) < 60 and abs(offsets["late"] - 300) < 60, offsets
    assert [o["id"] for o in sync.out_of_sync] == ["late"]
    assert "1 out of sync (>= 120 ms)" in report.render()
    assert "late (confidence" in report.render()
    assert report.to_dict()["sync"]["out_of_sync"] == 1


def test_validate_with_a_saved_model_or_without_sync(manifest: Path, tmp_path: Path) -> None:
    model = LearnedSync(SyncNet(SyncSettings())).save(tmp_path / "sync")
    report = validate_manifest(
        manifest, modalities=["video=video"], progress=False, sync_model=model
    )
    assert report.sync is not None and report.sync.method == "learned"
    assert report.sync.checked == 2
    off = validate_manifest(manifest, modalities=["video=video"], progress=False, sync=False)
    assert off.sync is None and "sync" not in off.to_dict()
