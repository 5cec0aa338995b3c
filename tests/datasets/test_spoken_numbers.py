"""Spoken numbers assembled from Free Spoken Digit Dataset recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from polyfuse.core.errors import InvalidInputError
from polyfuse.datasets.spoken_numbers import (
    GROUP_GAP,
    SAMPLE_RATE,
    DigitRecordings,
    assemble_number,
    trim_silence,
)


def test_trim_silence_keeps_the_loud_part_and_a_margin() -> None:
    sr = 8000
    x = np.zeros(sr, np.float32)
    x[3200:4800] = 0.5  # whole 10 ms frames
    out = trim_silence(x, sr, margin=0.02)
    assert out.size == 1600 + 2 * 160
    assert np.all(trim_silence(np.zeros(800, np.float32), sr) == 0)


def fake_folder(folder: Path) -> Path:
    """Ten 0.2 s tones (one per digit, its own pitch) with silence around, 8 kHz."""
    t = np.arange(1600) / 8000
    for d in range(10):
        tone = 0.4 * np.sin(2 * np.pi * (200 + 50 * d) * t)
        sf.write(
            folder / f"{d}_ann_0.wav", np.concatenate([np.zeros(800), tone, np.zeros(800)]), 8000
        )
    sf.write(folder / "3_bob_0.wav", np.zeros(800), 8000)  # bob said only one digit
    return folder


def test_a_number_is_its_digits_in_groups_after_the_lead(tmp_path: Path) -> None:
    recordings = DigitRecordings(fake_folder(tmp_path))
    assert recordings.speakers == ["ann"]
    lead = np.full(SAMPLE_RATE // 2, 0.05, np.float32)
    n = assemble_number(recordings, ["415", "55"], "ann", np.random.default_rng(0), lead=lead)
    assert n.digits == "415-55" and n.speaker == "ann"
    assert n.samples.dtype == np.float32
    # the digits start after the lead and a group pause
    assert 0.5 + GROUP_GAP[0] <= n.start <= 0.5 + GROUP_GAP[1] + 1e-3
    # five trimmed 0.24 s digits, three short gaps, one group pause
    assert 5 * 0.24 + GROUP_GAP[0] < n.end - n.start < 5 * 0.24 + 3 * 0.15 + GROUP_GAP[1]
    digits = n.samples[int(n.start * SAMPLE_RATE) : int(n.end * SAMPLE_RATE)]
    assert float(np.abs(digits).max()) > 0.1  # every digit is brought to the same loudness


def test_bad_groups_and_empty_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="fsdd"):
        DigitRecordings(tmp_path)
    recordings = DigitRecordings(fake_folder(tmp_path))
    with pytest.raises(InvalidInputError, match="must be digits"):
        assemble_number(recordings, ["41a"], "ann", np.random.default_rng(0))
    with pytest.raises(InvalidInputError, match="no recording of 4 by 'bob'"):
        assemble_number(recordings, ["4"], "bob", np.random.default_rng(0))


def test_the_shared_fsdd_recordings_make_numbers_of_every_speaker(shared_data: Path) -> None:
    recordings = DigitRecordings(shared_data / "fsdd")
    assert recordings.speakers == ["george", "jackson", "nicolas", "theo", "yweweler"]
    n = assemble_number(recordings, ["219", "09", "1937"], "theo", np.random.default_rng(1))
    assert n.start == 0.0 and 9 * 0.15 < n.end < 9 * 0.9
