"""The video scanner over fake frame and speech scanners (the boundary): which frames are
scanned, the time ranges findings get, the soundtrack's findings, a video without sound;
and the engine's verdict and redacted MP4 for a video."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from polyfuse.core.errors import ConfigError
from polyfuse.guard.engine import Guard
from polyfuse.guard.findings import Finding, Location
from polyfuse.guard.scanners.video import VideoScanner
from tests.videos import write_clip

RATE = 16_000
BOX = (8, 8, 24, 20)


class Shown:
    """Finds an "SSN" (with a box) on bright frames; counts the frames it is shown."""

    def __init__(self) -> None:
        self.calls = 0

    def scan(self, frame: np.ndarray) -> list[Finding]:
        self.calls += 1
        if frame.mean() < 100:
            return []
        where = Location(span=(0, 11), box=BOX, source="ocr")
        return [Finding("US_SSN", 0.9, "image", where, "fake", "1", "***-**-**37", "", "x")]


class Heard:
    """Hears an SSN from 1.0 to 1.5 s of whatever it is given."""

    def __init__(self) -> None:
        self.given: list[Any] = []

    def scan(self, audio: Any) -> list[Finding]:
        self.given.append(audio)
        where = Location(span=(0, 11), seconds=(1.0, 1.5), source="asr")
        return [Finding("US_SSN", 0.9, "audio", where, "fake", "1", "***-**-**37", "", "x")]


def pictures() -> list[np.ndarray]:
    """1 s dark, then 1 s bright (the bright frames "show" the SSN), 10 fps, 32 x 32."""
    dark, bright = np.full((32, 32, 3), 10, np.uint8), np.full((32, 32, 3), 230, np.uint8)
    return [dark] * 10 + [bright] * 10


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("video")
    return {
        "tone": write_clip(d / "tone.mp4", pictures=pictures()).read_bytes(),
        "none": write_clip(d / "none.mp4", pictures=pictures(), audio=None).read_bytes(),
    }


def test_frames_are_scanned_once_per_picture_with_time_ranges(clips: dict[str, bytes]) -> None:
    shown, heard = Shown(), Heard()
    found = VideoScanner(shown, heard, fps=4).scan(clips["tone"])
    assert shown.calls == 2  # one dark and one bright picture: repeats are covered
    frame, speech = found
    assert frame.modality == speech.modality == "video"
    assert frame.location.source == "frame:ocr" and frame.location.box == BOX
    start, end = frame.location.seconds or (0, 0)
    assert start == pytest.approx(1.0, abs=0.11) and end == pytest.approx(2.0, abs=0.11)
    assert speech.location.source == "soundtrack:asr"
    assert speech.location.seconds == (1.0, 1.5)
    ((wave, rate),) = heard.given
    assert rate == RATE and abs(len(wave) / RATE - 2.0) < 0.1


def test_a_video_without_sound_has_no_speech_findings(clips: dict[str, bytes]) -> None:
    heard = Heard()
    found = VideoScanner(Shown(), heard, fps=2).scan(clips["none"])
    assert [f.location.source for f in found] == ["frame:ocr"]
    assert heard.given == []


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="fps"):
        VideoScanner(Shown(), fps=0)
    with pytest.raises(ConfigError, match="max_frames"):
        VideoScanner(Shown(), max_frames=0)


def test_guard_decides_and_writes_a_redacted_video(clips: dict[str, bytes], tmp_path: Path) -> None:
    from polyfuse.modalities.readers.video import FrameSampling, decode_soundtrack, decode_video

    guard = Guard(image_scanner=Shown(), audio_scanner=Heard())
    result = guard.scan(clips["tone"], name="call.mp4")
    assert (result.modality, result.format, result.action) == ("video", "mp4", "redact")
    assert {f.location.source for f, _ in result.findings} == {"frame:ocr", "soundtrack:asr"}
    out = guard.redact(clips["tone"], result, tmp_path)
    assert out is not None and out.name == "call.mp4"
    data = out.read_bytes()
    every = decode_video(data, sampling=FrameSampling(mode="fps", fps=10, frames=100))
    assert len(every.frames) == 20
    x0, y0, x1, y1 = BOX
    inside = every.frames[:, y0:y1, x0:x1].mean(axis=(1, 2, 3))
    assert (inside[:4] < 30).all()  # dark frames before the finding's range stay as they were
    assert (inside[12:] < 30).all()  # the bright frames that show it are filled black
    assert every.frames[15, 28:, 28:].mean() > 200  # outside the box the picture stays
    before = decode_soundtrack(clips["tone"], sample_rate=RATE)
    after = decode_soundtrack(data, sample_rate=RATE)
    assert before is not None and after is not None
    spectrum = lambda w: np.abs(np.fft.rfft(w[int(1.1 * RATE) : int(1.4 * RATE)]))  # noqa: E731
    hz = np.fft.rfftfreq(int(0.3 * RATE), 1 / RATE)
    assert hz[np.argmax(spectrum(before))] == pytest.approx(440, abs=5)
    assert hz[np.argmax(spectrum(after))] == pytest.approx(1000, abs=5)  # bleeped
    np.testing.assert_allclose(after[: int(0.5 * RATE)], before[: int(0.5 * RATE)], atol=0.05)
