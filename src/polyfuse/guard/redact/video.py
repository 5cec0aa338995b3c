"""Write a redacted copy of a video: boxes filled (or blurred) in the frames that show them,
and the soundtrack's ranges bleeped (or silenced), as a new MP4 (H.264 + AAC).

Frame findings (``location.source`` ``frame:...``) carry a box and the time range of the
frames it was seen in; every decoded frame whose time falls in a range (widened by
``pad`` seconds each way, so the frames between two scanned ones are covered) gets the
box. Soundtrack findings (``soundtrack:...``) carry a time range of the audio. The copy
carries no metadata of the original (no title, no GPS atom): only the two streams.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from polyfuse.core.errors import ConfigError, InvalidInputError
from polyfuse.guard.findings import Finding


def redact_video(
    data: bytes,
    findings: Sequence[Finding],
    *,
    mode: Literal["fill", "blur"] = "fill",
    audio_mode: Literal["silence", "bleep"] = "bleep",
    pad: float = 0.5,
    max_pixels: int = 40_000_000,
) -> bytes:
    """The redacted video as MP4 bytes (see the module docstring).

    Args:
        data: the original video (already scanned, so readable and within limits).
        findings: the findings to redact (those whose action is ``redact``).
        mode: how boxes are removed from frames.
        audio_mode: how soundtrack ranges are removed.
        pad: seconds each finding's range is widened by, both ways.
        max_pixels: largest frame accepted.

    Raises:
        ConfigError: an unknown mode or a negative pad.
        InvalidInputError: the video cannot be decoded.
    """
    import av

    from polyfuse.guard.redact.audio import redact_audio
    from polyfuse.guard.redact.image import redact_image
    from polyfuse.modalities.readers.video import decode_soundtrack

    if mode not in ("fill", "blur"):
        raise ConfigError("mode", f"video frames are redacted by fill or blur, not {mode!r}")
    if audio_mode not in ("silence", "bleep"):
        raise ConfigError(
            "mode", f"soundtracks are redacted by silence or bleep, not {audio_mode!r}"
        )
    if not pad >= 0:
        raise ConfigError("pad", f"must be >= 0, got {pad}")
    boxes = [f for f in findings if f.location.source.startswith("frame:") and f.location.box]
    heard = [f for f in findings if f.location.source.startswith("soundtrack:")]
    out = io.BytesIO()
    try:
        with av.open(io.BytesIO(data), "r") as src, av.open(out, "w", format="mp4") as dst:
            vin = src.streams.video[0]
            rate = vin.average_rate or Fraction(25)
            vout = dst.add_stream("libx264", rate=rate)
            vout.width, vout.height = (
                _even(vin.codec_context.width),
                _even(vin.codec_context.height),
            )
            vout.pix_fmt = "yuv420p"
            vout.options = {"preset": "veryfast", "crf": "18"}
            aout = None
            wave = None
            if src.streams.audio:
                ain = src.streams.audio[0]
                sr = int(ain.codec_context.sample_rate or 16_000)
                wave = decode_soundtrack(data, sample_rate=sr, name="video")
                if wave is not None:
                    aout = dst.add_stream("aac", rate=sr)
                    aout.layout = "mono"
                    wave = redact_audio(wave, sr, heard, mode=audio_mode, pad=0.1)
            for index, frame in enumerate(src.decode(vin)):
                t = float(frame.time) if frame.time is not None else index / float(rate)
                rgb: np.ndarray = frame.to_ndarray(format="rgb24").astype(np.uint8, copy=False)
                now = [f for f in boxes if _covers(f, t, pad)]
                if now:
                    rgb = np.asarray(redact_image(rgb, now, mode=mode, max_pixels=max_pixels))
                rgb = rgb[: vout.height, : vout.width]
                for packet in vout.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    dst.mux(packet)
            for packet in vout.encode():
                dst.mux(packet)
            if aout is not None and wave is not None:
                _mux_audio(dst, aout, wave)
    except (ConfigError, InvalidInputError):
        raise
    except Exception as exc:  # FFmpeg's errors come as av.error.* classes
        raise InvalidInputError(
            "video", f"cannot rewrite the video: {exc}", hint="check that the file plays"
        ) from exc
    return out.getvalue()


def _even(n: int) -> int:
    return n - n % 2  # H.264 with 4:2:0 chroma needs even sides


def _covers(f: Finding, t: float, pad: float) -> bool:
    if f.location.seconds is None:
        return True
    start, end = f.location.seconds
    return start - pad <= t <= end + pad


def _mux_audio(dst: Any, stream: Any, wave: np.ndarray) -> None:
    import av

    samples = np.ascontiguousarray(np.clip(wave.astype(np.float32), -1.0, 1.0))
    rate = int(stream.codec_context.sample_rate)
    for start in range(0, len(samples), 1024):
        frame = av.AudioFrame.from_ndarray(
            samples[None, start : start + 1024], format="fltp", layout="mono"
        )
        frame.sample_rate, frame.pts = rate, start
        frame.time_base = Fraction(1, rate)
        dst.mux(stream.encode(frame))
    dst.mux(stream.encode())
