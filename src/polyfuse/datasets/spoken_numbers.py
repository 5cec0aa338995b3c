"""Spoken numbers from real voices: Free Spoken Digit Dataset recordings put together into
phone, card and SSN numbers, digit by digit, with the pauses people make.

The Free Spoken Digit Dataset (``../shared/data/fsdd``, files ``{digit}_{speaker}_{take}.wav``,
8 kHz mono) holds single digits said by five people. `DigitRecordings` indexes a folder of
them; `assemble_number` cuts the silence around each recording, brings every digit to the
same loudness, and joins them at 16 kHz with a short gap inside a digit group and a longer
pause between groups (drawn from ranges measured in people reading numbers aloud: about a
tenth of a second between digits, a third to two thirds of a second between groups),
after an optional lead-in (a spoken context phrase, which may come from another voice).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyfuse.core.errors import InvalidInputError

__all__ = ["DigitRecordings", "SpokenNumber", "assemble_number", "trim_silence"]

#: Sample rate of assembled numbers (Whisper's).
SAMPLE_RATE = 16_000
#: Seconds between two digits of one group, and between two groups (uniform ranges).
DIGIT_GAP = (0.03, 0.15)
GROUP_GAP = (0.30, 0.70)
_NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z]+)_(?P<take>\d+)\.wav$")


@dataclass(frozen=True)
class SpokenNumber:
    """An assembled spoken number.

    Attributes:
        samples: float32 mono samples at `SAMPLE_RATE`, lead-in included. # (T,)
        digits: the digits said, groups joined by ``-``.
        start: second at which the first digit starts.
        end: second at which the last digit ends.
        speaker: who said the digits.
    """

    samples: np.ndarray
    digits: str
    start: float
    end: float
    speaker: str


def trim_silence(
    x: np.ndarray, sr: int, threshold: float = 0.08, margin: float = 0.02
) -> np.ndarray:
    """``x`` without the leading and trailing stretch quieter than ``threshold`` times its
    peak (10 ms frames), keeping ``margin`` seconds on each side."""
    frame = max(1, sr // 100)
    n = x.size // frame
    if n == 0:
        return x
    energy = np.abs(x[: n * frame]).reshape(n, frame).max(axis=1)  # (n,)
    loud = np.flatnonzero(energy >= threshold * float(energy.max() or 1.0))
    if loud.size == 0:
        return x
    pad = int(margin * sr)
    return x[max(0, loud[0] * frame - pad) : min(x.size, (loud[-1] + 1) * frame + pad)]


class DigitRecordings:
    """The recordings of a Free Spoken Digit Dataset folder, by digit and speaker.

    Args:
        folder: the folder that holds ``{digit}_{speaker}_{take}.wav``.

    Raises:
        InvalidInputError: the folder holds no such recordings.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._files: dict[tuple[int, str], list[Path]] = {}
        for path in sorted(self.folder.glob("*_*_*.wav")):
            m = _NAME.match(path.name)
            if m is not None:
                key = (int(m.group("digit")), m.group("speaker"))
                self._files.setdefault(key, []).append(path)
        if not self._files:
            raise InvalidInputError(
                "audio",
                "no {digit}_{speaker}_{take}.wav recordings",
                path=str(self.folder),
                hint="point it at the Free Spoken Digit Dataset folder (../shared/data/fsdd)",
            )

    @property
    def speakers(self) -> list[str]:
        """Speakers who said every digit, sorted."""
        names = {s for _, s in self._files}
        return sorted(s for s in names if all((d, s) in self._files for d in range(10)))

    def digit(self, digit: int, speaker: str, rng: np.random.Generator) -> np.ndarray:
        """One take of ``digit`` by ``speaker`` drawn with ``rng``: trimmed, at
        `SAMPLE_RATE`, scaled to an RMS of 0.1."""
        import soundfile as sf

        from polyfuse.modalities.readers.audio import resample, to_mono

        takes = self._files.get((digit, speaker))
        if not takes:
            raise InvalidInputError(
                "audio", f"no recording of {digit} by {speaker!r}", path=str(self.folder)
            )
        wave, sr = sf.read(takes[int(rng.integers(len(takes)))], dtype="float32", always_2d=True)
        x = trim_silence(resample(to_mono(wave), int(sr), SAMPLE_RATE), SAMPLE_RATE)
        rms = float(np.sqrt(np.mean(x**2))) or 1.0
        return (0.1 * x / rms).astype(np.float32)


def assemble_number(
    recordings: DigitRecordings,
    groups: Sequence[str],
    speaker: str,
    rng: np.random.Generator,
    *,
    lead: np.ndarray | None = None,
    tail_seconds: float = 0.4,
) -> SpokenNumber:
    """``groups`` of digits ("415", "555", "0132") said by ``speaker``, after ``lead``
    (samples at `SAMPLE_RATE`; a context phrase) and a group pause.

    Raises:
        InvalidInputError: a group holds something other than digits.
    """
    if not groups or not all(g.isdigit() for g in groups):
        raise InvalidInputError("audio", f"digit groups must be digits, got {list(groups)}")
    parts: list[np.ndarray] = []
    if lead is not None and lead.size:
        parts.append(lead.astype(np.float32))
        parts.append(_silence(rng.uniform(*GROUP_GAP)))
    start = sum(p.size for p in parts) / SAMPLE_RATE
    for k, group in enumerate(groups):
        if k:
            parts.append(_silence(rng.uniform(*GROUP_GAP)))
        for j, ch in enumerate(group):
            if j:
                parts.append(_silence(rng.uniform(*DIGIT_GAP)))
            parts.append(recordings.digit(int(ch), speaker, rng))
    end = sum(p.size for p in parts) / SAMPLE_RATE
    parts.append(_silence(tail_seconds))
    return SpokenNumber(np.concatenate(parts), "-".join(groups), start, end, speaker)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)
