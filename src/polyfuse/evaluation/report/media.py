"""Embedding inputs in a report as data URIs: image thumbnails, audio players, text, series."""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from polyfuse.evaluation.report.svg import line_chart


def _data_uri(mime: str, payload: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def image_tag(img: np.ndarray, size: int = 96, overlay: np.ndarray | None = None) -> str:
    """``<img>`` of a uint8 ``(H, W, C)`` array scaled to ``size`` px on its longer side.

    Args:
        overlay: optional non-negative ``(h, w)`` map (e.g. saliency) blended in red.
    """
    from PIL import Image

    arr = img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img
    pil = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB")
    if overlay is not None:
        heat = overlay.astype(np.float32)
        heat = heat / (float(heat.max()) or 1.0)
        hmap = Image.fromarray((heat * 255).astype(np.uint8)).resize(
            pil.size, Image.Resampling.BILINEAR
        )
        red = np.zeros((pil.size[1], pil.size[0], 3), dtype=np.uint8)
        red[..., 0] = 255
        alpha = np.asarray(hmap, dtype=np.float32)[..., None] / 255 * 0.7
        base = np.asarray(pil, dtype=np.float32)
        pil = Image.fromarray((base * (1 - alpha) + red * alpha).astype(np.uint8))
    scale = size / max(pil.size)
    resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.BILINEAR
    pil = pil.resize(
        (max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), resample
    )
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return f'<img src="{_data_uri("image/png", buf.getvalue())}" width="{pil.width}" alt="input">'


def frames_tag(frames: np.ndarray, timestamps: np.ndarray, size: int = 48) -> str:
    """A film strip of a video's sampled uint8 ``(T, H, W, C)`` frames, each captioned
    with its time in seconds."""
    cells = [
        f'<figure style="display:inline-block;margin:0 2px">{image_tag(f, size)}'
        f"<figcaption>{t:.2f} s</figcaption></figure>"
        for f, t in zip(frames, timestamps, strict=True)
    ]
    return "".join(cells)


def heatmap_tag(values: np.ndarray, height: int = 80) -> str:
    """``<img>`` of a 2-D map (rows bottom-up, e.g. a spectrogram), normalised, dark = high."""
    from PIL import Image

    v = values.astype(np.float32)
    v = v - v.min()
    v = v / (float(v.max()) or 1.0)
    pil = Image.fromarray(((1 - v[::-1]) * 255).astype(np.uint8))
    scale = height / pil.height
    pil = pil.resize((max(1, round(pil.width * max(scale, 1.0))), height), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return f'<img src="{_data_uri("image/png", buf.getvalue())}" height="{height}" alt="map">'


def audio_tag(wave: np.ndarray, rate: int, max_seconds: float = 6.0) -> str:
    """``<audio controls>`` with the clip as an embedded 16-bit WAV."""
    import soundfile as sf

    clip = np.asarray(wave, dtype=np.float32)[: int(rate * max_seconds)]
    peak = float(np.max(np.abs(clip))) if clip.size else 0.0
    if peak > 1.0:
        clip = clip / peak
    buf = io.BytesIO()
    sf.write(buf, clip, rate, format="WAV", subtype="PCM_16")
    return f'<audio controls preload="none" src="{_data_uri("audio/wav", buf.getvalue())}"></audio>'


def text_tag(text: str, limit: int = 300) -> str:
    """Escaped text, cut at ``limit`` characters."""
    short = text if len(text) <= limit else text[:limit] + "..."
    return f'<span class="text">{html.escape(short)}</span>'


def series_tag(series: np.ndarray) -> str:
    """Small line chart of a ``(T, C)`` series (first 4 channels)."""
    t = list(range(series.shape[0]))
    lines = {f"ch{c}": (t, series[:, c].tolist()) for c in range(min(4, series.shape[1]))}
    return line_chart(lines, "series", width=220, height=110)
