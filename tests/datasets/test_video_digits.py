"""The video-digits builder: speaker-disjoint splits, unseen test images, known offsets,
clips without a track and with a silent one, and H.264 + AAC MP4s the video reader reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polyfuse.core.errors import PolyfuseError
from polyfuse.datasets import video_digits
from polyfuse.datasets.video_digits import VideoDigitsSpec, build, parse_offsets
from polyfuse.modalities.readers.video import FrameSampling, decode_soundtrack, decode_video

SPEC = VideoDigitsSpec(takes=2, offsets_ms=(0, 200, -200), no_audio=0.2, silent=0.2)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data folder at {SHARED_DATA}")
    out = tmp_path_factory.mktemp("video_digits")
    mnist = SHARED_DATA / "mnist" / "mnist_test_0_8000.npz"
    return build(mnist, SHARED_DATA / "fsdd", out, SPEC, progress=False)


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_splits_are_speaker_disjoint_with_unseen_test_images(built: dict[str, Path]) -> None:
    rows = {s: _rows(p) for s, p in built.items()}
    assert {s: len(r) for s, r in rows.items()} == {"train": 40, "val": 40, "test": 20}
    speakers = {s: {r["speaker"] for r in rs} for s, rs in rows.items()}
    assert speakers["test"] == {"theo"} and "theo" not in speakers["train"] | speakers["val"]
    assert all(int(r["mnist_index"]) >= video_digits.TRAIN_IMAGES for r in rows["test"])  # type: ignore[call-overload]
    assert all(int(r["mnist_index"]) < video_digits.TRAIN_IMAGES for r in rows["train"])  # type: ignore[call-overload]
    every = [r for rs in rows.values() for r in rs]
    assert {r["offset_ms"] for r in every} == {0, 200, -200}
    assert {r["audio_track"] for r in every} == {"speech", "silent", "none"}
    assert set(every[0]) >= {"video", "label", "offset_ms"}


def test_clips_are_h264_aac_mp4s_with_the_digit_and_its_speech(built: dict[str, Path]) -> None:
    by_track: dict[str, dict[str, object]] = {}
    for r in _rows(built["train"]):
        by_track.setdefault(str(r["audio_track"]), r)
    base = built["train"].parent
    speech = (base / str(by_track["speech"]["video"])).read_bytes()
    clip = decode_video(speech, sampling=FrameSampling(frames=16))
    assert (clip.info.format, clip.info.codec, clip.info.width) == ("mp4", "h264", 56)
    shown = clip.frames.reshape(16, -1).max(axis=1) > 128
    onset = clip.timestamps[shown][0]
    assert SPEC.onset - 0.1 <= onset <= SPEC.onset + 0.1  # the digit appears at the onset
    wave = decode_soundtrack(speech, sample_rate=8000)
    assert wave is not None
    loud = np.flatnonzero(np.abs(wave) > 0.5 * np.abs(wave).max())
    heard = loud[0] / 8000 - int(by_track["speech"]["offset_ms"]) / 1000  # type: ignore[call-overload]
    assert SPEC.onset - 0.05 <= heard <= SPEC.onset + 0.6  # speech starts at onset + offset
    none = (base / str(by_track["none"]["video"])).read_bytes()
    assert decode_soundtrack(none, sample_rate=8000) is None
    silent = decode_soundtrack(
        (base / str(by_track["silent"]["video"])).read_bytes(), sample_rate=8000
    )
    assert silent is not None and float(np.abs(silent).max()) < 1e-3


def test_a_second_build_is_reused_and_bad_arguments_are_refused(
    built: dict[str, Path], tmp_path: Path
) -> None:
    from tests.conftest import SHARED_DATA

    mnist = SHARED_DATA / "mnist" / "mnist_test_0_8000.npz"
    before = built["test"].stat().st_mtime_ns
    assert build(mnist, SHARED_DATA / "fsdd", built["test"].parent, SPEC, progress=False) == built
    assert built["test"].stat().st_mtime_ns == before
    assert parse_offsets("0, 40,-40") == (0, 40, -40)
    with pytest.raises(PolyfuseError, match="comma-separated"):
        parse_offsets("0,forty")
    with pytest.raises(PolyfuseError, match="within"):
        build(mnist, SHARED_DATA / "fsdd", tmp_path, VideoDigitsSpec(offsets_ms=(900,)))
    with pytest.raises(PolyfuseError, match="unknown speaker"):
        build(mnist, SHARED_DATA / "fsdd", tmp_path, VideoDigitsSpec(test_speaker="ada"))
    assert video_digits.main(["--mnist", str(tmp_path / "x.npz"), "--fsdd", str(tmp_path),
                              "--out", str(tmp_path / "o")]) == 2  # fmt: skip
