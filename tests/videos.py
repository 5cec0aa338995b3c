"""Tiny real videos for tests, written with PyAV: a bright square moving over a dark frame
(frame ``i`` has the square at column ``2 * i``, so a frame's content tells its index) and,
optionally, a tone or a silent audio track."""

from __future__ import annotations

import fractions
from pathlib import Path

import numpy as np

#: container format -> (PyAV muxer, video codec, audio codec)
CODECS = {
    "mp4": ("mp4", "libx264", "aac"),
    "webm": ("webm", "libvpx", "libopus"),
    "mkv": ("matroska", "mpeg4", "aac"),
    "avi": ("avi", "mpeg4", "pcm_s16le"),
}


def frame_at(i: int, size: int = 32) -> np.ndarray:
    """The uint8 RGB frame ``i`` of `write_clip`."""
    img = np.full((size, size, 3), 16, np.uint8)
    col = (2 * i) % (size - 4)
    img[size // 4 : size // 4 + 8, col : col + 4] = 240
    return img


def write_clip(
    path: Path,
    *,
    frames: int = 20,
    fps: int = 10,
    size: int = 32,
    audio: str | np.ndarray | None = "tone",
    fmt: str = "mp4",
    rate: int = 16000,
    gop: int = 5,
    pictures: list[np.ndarray] | None = None,
) -> Path:
    """Write a clip: ``audio`` is ``tone`` (440 Hz), ``silent`` (zeros), float samples at
    ``rate`` (the track then lasts as long as they do) or None (no track);
    ``pictures`` replaces the moving square (``size`` x ``size`` RGB frames)."""
    import av

    muxer, vcodec, acodec = CODECS[fmt]
    with av.open(str(path), "w", format=muxer) as out:
        video = out.add_stream(vcodec, rate=fps)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        video.options = {"threads": "1", "g": str(gop)}
        if vcodec == "libx264":
            video.options = {**video.options, "preset": "ultrafast"}
        track = None
        if audio is not None:
            arate = 48000 if acodec == "libopus" else rate
            track = out.add_stream(acodec, rate=arate)
            track.layout = "mono"
        pictures = pictures or [frame_at(i, size) for i in range(frames)]
        frames = len(pictures)
        for picture in pictures:
            out.mux(video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        out.mux(video.encode())
        if track is not None and isinstance(audio, np.ndarray):
            _mux_audio(out, track, audio.astype(np.float32), track.rate, acodec)
        elif track is not None:
            n = round(frames / fps * track.rate)
            t = np.arange(n) / track.rate
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            if audio == "silent":
                wave[:] = 0.0
            _mux_audio(out, track, wave, track.rate, acodec)
    return path


def _mux_audio(out: object, stream: object, wave: np.ndarray, rate: int, codec: str) -> None:
    import av

    chunk = 960 if codec == "libopus" else 1024
    fmt = "s16" if codec == "pcm_s16le" else "fltp"
    for start in range(0, wave.size, chunk):
        piece = wave[None, start : start + chunk]
        if fmt == "s16":
            piece = (piece * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(piece, format=fmt, layout="mono")
        frame.sample_rate, frame.pts = rate, start
        frame.time_base = fractions.Fraction(1, rate)
        out.mux(stream.encode(frame))  # type: ignore[attr-defined]
    out.mux(stream.encode())  # type: ignore[attr-defined]
