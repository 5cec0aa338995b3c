"""Audio redaction: the time ranges of findings replaced by a tone."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from polyfuse.core.errors import ConfigError
from polyfuse.guard.findings import Finding
from polyfuse.guard.readers.asr import invalid_audio

#: Frequency and amplitude (of full scale) of the bleep tone.
BLEEP_HZ = 1000.0


BLEEP_LEVEL = 0.2


def redact_audio(
    samples: np.ndarray,
    sr: int,
    findings: Sequence[Finding],
    mode: Literal["silence", "bleep"] = "silence",
    pad: float = 0.1,
) -> np.ndarray:
    """A copy of ``samples`` with every finding's time range (widened by ``pad`` seconds
    on each side) silenced or replaced by a 1 kHz tone. Findings without
    ``location.seconds`` are ignored. Write the result with ``soundfile.write``.

    Args:
        samples: ``(frames,)`` or ``(frames, channels)`` at ``sr`` (the original audio,
            not the 16 kHz copy: times are in seconds, so any rate works).
        sr: sample rate of ``samples``.
        findings: findings from `AudioScanner.scan`.
        mode: ``"silence"`` (zeros) or ``"bleep"`` (a 1 kHz tone).
        pad: seconds added before and after each range.
    """
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise invalid_audio(f"sample rate must be a positive integer, got {sr!r}")
    if mode not in ("silence", "bleep"):
        raise ConfigError(
            "guard.audio.redact_mode", f"unknown mode {mode!r}", hint="silence or bleep"
        )
    if not pad >= 0:
        raise ConfigError("guard.audio.pad", f"must be >= 0, got {pad}")
    x = np.array(samples, copy=True)
    if x.ndim not in (1, 2) or x.dtype.kind not in "fiu":
        raise invalid_audio(f"samples must be a 1-D or 2-D numeric array, got {x.dtype} {x.shape}")
    n = x.shape[0]
    full = float(np.iinfo(x.dtype).max) if x.dtype.kind in "iu" else 1.0
    zero = (np.iinfo(x.dtype).max // 2 + 1) if x.dtype.kind == "u" else 0
    for f in findings:
        if f.location.seconds is None:
            continue
        start, end = f.location.seconds
        i0 = max(0, math.floor((start - pad) * sr))
        i1 = min(n, math.ceil((end + pad) * sr))
        if i1 <= i0:
            continue
        if mode == "silence":
            x[i0:i1] = zero
        else:
            t = np.arange(i0, i1) / sr
            tone = zero + BLEEP_LEVEL * full * np.sin(2 * np.pi * BLEEP_HZ * t)
            x[i0:i1] = (tone[:, None] if x.ndim == 2 else tone).astype(x.dtype)
    return x
