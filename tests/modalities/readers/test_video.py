"""The one video decoder: sniffing, sampling, timestamps, limits, the soundtrack, and typed
errors on corrupt, truncated and oversized containers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from polyfuse.core.errors import InvalidInputError
from polyfuse.modalities.io import detect, sniff
from polyfuse.modalities.readers.video import (
    FrameSampling,
    VideoLimits,
    decode_soundtrack,
    decode_video,
)
from tests.videos import frame_at, write_clip

MALFORMED = Path(__file__).resolve().parents[2] / "data" / "malformed"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """20 frames at 10 fps (a keyframe every 5), 2 s of a 440 Hz tone, in every container;
    MP4s without an audio track and with a silent one; a scene cut at 1 s."""
    d = tmp_path_factory.mktemp("clips")
    out = {fmt: write_clip(d / f"tone.{fmt}", fmt=fmt).read_bytes() for fmt in ("webm", "mkv")}
    out["mp4"] = write_clip(d / "tone.mp4").read_bytes()
    out["avi"] = write_clip(d / "tone.avi", fmt="avi").read_bytes()
    out["none"] = write_clip(d / "none.mp4", audio=None).read_bytes()
    out["long"] = write_clip(d / "long.mp4", frames=80, audio=None).read_bytes()
    out["silent"] = write_clip(d / "silent.mp4", audio="silent").read_bytes()
    dark, bright = np.full((32, 32, 3), 10, np.uint8), np.full((32, 32, 3), 230, np.uint8)
    out["cut"] = write_clip(d / "cut.mp4", pictures=[dark] * 10 + [bright] * 10).read_bytes()
    return out


def _index(frame: np.ndarray) -> int:
    """Which frame of `write_clip` a decoded frame shows (the closest by mean error)."""
    errors = [np.abs(frame.astype(int) - frame_at(i).astype(int)).mean() for i in range(14)]
    return int(np.argmin(errors))


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00", "mov"),
        (b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00", "heif"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "webm"),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", "mkv"),
        (b"RIFF\x00\x10\x00\x00AVI LIST", "avi"),
    ],
)
def test_containers_are_sniffed_by_content(head: bytes, fmt: str) -> None:
    assert sniff(head) == fmt


def test_detect_says_video_for_every_written_container(clips: dict[str, bytes]) -> None:
    found = {k: detect(clips[k]) for k in ("mp4", "webm", "mkv", "avi")}
    assert {k: (d.modality, d.format) for k, d in found.items()} == {k: ("video", k) for k in found}
    with pytest.raises(InvalidInputError, match="HEIF/AVIF image: unknown binary content"):
        detect(b"\x00\x00\x00\x1cftypavif" + b"\x00" * 40)


@pytest.mark.parametrize("fmt", ["mp4", "webm", "mkv", "avi"])
def test_uniform_frames_are_segment_centres_with_their_timestamps(
    clips: dict[str, bytes], fmt: str
) -> None:
    out = decode_video(clips[fmt], sampling=FrameSampling(frames=5))
    assert out.frames.shape == (5, 32, 32, 3) and out.frames.dtype == np.uint8
    # 2 s in 5 segments: centres 0.2, 0.6, 1.0, 1.4, 1.8 s (MKV's header says 2.064 s)
    np.testing.assert_allclose(out.timestamps, [0.2, 0.6, 1.0, 1.4, 1.8], atol=0.11)
    assert [_index(f) for f in out.frames[:3]] == [round(t * 10) for t in out.timestamps[:3]]
    assert (out.info.width, out.info.height, out.info.fps, out.info.has_audio) == (
        32,
        32,
        10.0,
        True,
    )


def test_seeking_finds_the_same_frames_as_decoding_everything(
    clips: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    from polyfuse.modalities.readers import video

    seeks: list[float] = []
    original = video._Walk.seek
    monkeypatch.setattr(video._Walk, "seek", lambda w, t: (seeks.append(t), original(w, t))[1])
    walk = decode_video(clips["long"], sampling=FrameSampling(frames=4, seek=False))
    assert not seeks
    # 8 s, a keyframe every 0.5 s: targets 1, 3, 5, 7 s; once the interval is known, every
    # target 2 s on is reached by a seek
    seek = decode_video(clips["long"], sampling=FrameSampling(frames=4, seek=True))
    assert seeks == [3.0, 5.0, 7.0]
    np.testing.assert_allclose(seek.timestamps, [1.0, 3.0, 5.0, 7.0])
    np.testing.assert_array_equal(seek.timestamps, walk.timestamps)
    np.testing.assert_array_equal(seek.frames, walk.frames)


def test_fps_keyframes_and_scene_sampling(clips: dict[str, bytes]) -> None:
    fps = decode_video(clips["mp4"], sampling=FrameSampling(mode="fps", fps=2, frames=8))
    np.testing.assert_allclose(fps.timestamps, [0.0, 0.5, 1.0, 1.5])
    thinned = decode_video(clips["mp4"], sampling=FrameSampling(mode="fps", fps=10, frames=3))
    np.testing.assert_allclose(thinned.timestamps, [0.0, 1.0, 1.9])  # evenly over the video
    keys = decode_video(clips["mp4"], sampling=FrameSampling(mode="keyframes", frames=8))
    np.testing.assert_allclose(keys.timestamps, [0.0, 0.5, 1.0, 1.5])  # a keyframe every 5
    scenes = decode_video(clips["cut"], sampling=FrameSampling(mode="scenes", frames=4))
    np.testing.assert_allclose(scenes.timestamps, [0.0, 1.0])  # the first frame and the cut
    assert scenes.frames[0].mean() < 50 and scenes.frames[1].mean() > 200


def test_a_short_video_gives_each_frame_once(clips: dict[str, bytes]) -> None:
    out = decode_video(clips["mp4"], sampling=FrameSampling(frames=50))
    assert len(out.timestamps) == 20 and np.all(np.diff(out.timestamps) > 0)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (VideoLimits(max_seconds=1.5), "2.0 s of video is longer than the limit of 1.5 s"),
        (VideoLimits(max_pixels=1000), "32 x 32 frames are larger than the limit of 1000"),
        (VideoLimits(max_frames=10), "declares 20 frames, more than the limit of 10"),
    ],
)
def test_limits_are_checked_from_the_header(
    clips: dict[str, bytes], limits: VideoLimits, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        decode_video(clips["mp4"], limits=limits, name="clip", field="video")
    assert info.value.hint and info.value.field == "video"


def test_frames_are_counted_while_decoding_when_the_header_does_not_say(
    clips: dict[str, bytes],
) -> None:
    with pytest.raises(InvalidInputError, match="more than 10 frames"):
        decode_video(clips["webm"], limits=VideoLimits(max_frames=10))  # WebM declares none


def test_the_soundtrack_is_on_the_pictures_clock_at_the_requested_rate(
    clips: dict[str, bytes],
) -> None:
    for fmt in ("mp4", "webm", "avi"):
        wave = decode_soundtrack(clips[fmt], sample_rate=8000)
        assert wave is not None and wave.dtype == np.float32
        assert 16000 <= wave.size <= 16000 + 1024  # 2 s (AAC pads its last frame)
        peak = np.argmax(np.abs(np.fft.rfft(wave[1000:9000]))) * 8000 / 8000
        assert abs(peak - 440) <= 2
    assert decode_soundtrack(clips["none"], sample_rate=8000) is None
    silent = decode_soundtrack(clips["silent"], sample_rate=8000)
    assert silent is not None and float(np.abs(silent).max()) < 1e-3  # samples, not None
    with pytest.raises(InvalidInputError, match="soundtrack is longer than the limit of 1 s"):
        decode_soundtrack(clips["mp4"], sample_rate=8000, max_seconds=1.0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda b: b"", "empty input"),
        (lambda b: b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40, "content is WAV audio"),
        (lambda b: b[:600], "cannot decode video"),  # the moov box is at the end: cut off
        (lambda b: b[:32], "cannot decode video"),  # the ftyp box and nothing else
    ],
)
def test_corrupt_inputs_raise_typed_errors(
    clips: dict[str, bytes], make: object, message: str
) -> None:
    data = make(clips["mp4"])  # type: ignore[operator]
    with pytest.raises(InvalidInputError, match=message):
        decode_video(data)
    with pytest.raises(InvalidInputError, match=message):
        decode_soundtrack(data, sample_rate=8000)


def test_the_malformed_corpus_videos_are_refused_or_read() -> None:
    manifest = json.loads((MALFORMED / "MANIFEST.json").read_text())
    videos = {n: v for n, v in manifest.items() if Path(n).suffix in (".mp4", ".webm", ".avi")}
    assert len(videos) >= 4
    for name, entry in videos.items():
        data = (MALFORMED / name).read_bytes()
        try:
            out = decode_video(data, limits=VideoLimits(max_seconds=600.0))
        except InvalidInputError:
            continue
        assert entry["expect"] == "any", f"{name} should be refused"
        assert out.frames.ndim == 4 and len(out.frames) >= 1


def test_stream_frames_keeps_a_grid_of_frames_converted_as_decoded(
    clips: dict[str, bytes],
) -> None:
    from polyfuse.modalities.readers.video import stream_frames, video_info

    info = video_info(clips["mp4"])
    assert info.has_audio and info.duration == pytest.approx(2.0, abs=0.15)
    every = list(stream_frames(clips["mp4"], fps=5))
    assert [round(t, 1) for t, _ in every] == [round(0.2 * i, 1) for i in range(10)]
    assert [_index(f) for _, f in every] == [i % 14 for i in range(0, 20, 2)]  # 14: a loop
    small = list(stream_frames(clips["mp4"], fps=100, size=(16, 8), gray=True, until=0.95))
    assert len(small) == 10 and small[0][1].shape == (8, 16) and small[0][1].dtype == np.uint8
    with pytest.raises(InvalidInputError, match="fps"):
        next(stream_frames(clips["mp4"], fps=0))
    with pytest.raises(InvalidInputError, match="not a readable video"):
        video_info(b"RIFF\x00\x00\x00\x00WAVEfmt ")
