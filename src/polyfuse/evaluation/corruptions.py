"""Per-modality input corruptions at increasing severity (1 = mild ... 5 = severe).

A corruption acts on the validated raw object a contract's ``load`` returns
(image: uint8 ``(H, W, C)``; audio: float32 mono wave at the contract's rate;
text: ``str``; time series: float32 ``(T, C)``), before preprocessing, so the
model sees the corrupted input exactly as it would in production. Randomness is
seeded per row, corruption and severity: curves are reproducible.

Severity scales follow ImageNet-C where it has an equivalent (noise, blur, JPEG).
Register a new one with ``@CORRUPTIONS.register("kind/name")``.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyfuse.core.registry import Registry

SEVERITIES = (1, 2, 3, 4, 5)
CorruptFn = Callable[[Any, int, np.random.Generator], Any]
CORRUPTIONS: Registry[Any] = Registry("corruption")


def _level(values: tuple[float, ...], severity: int) -> float:
    if not 1 <= severity <= len(values):
        raise ValueError(f"severity must be 1..{len(values)}, got {severity}")
    return values[severity - 1]


@dataclass(frozen=True)
class Corruption:
    """One corruption of one modality kind at one severity, callable as a dataset transform.

    Attributes:
        name: registered name, ``kind/corruption`` (e.g. ``image/jpeg``).
        severity: 1..5.
        seed: base seed; each row draws from its own stream.
    """

    name: str
    severity: int
    seed: int = 0

    def __call__(self, obj: Any, row: int) -> Any:
        fn: CorruptFn = CORRUPTIONS.get(self.name)
        key = zlib.crc32(self.name.encode())
        rng = np.random.default_rng([self.seed, row, self.severity, key])
        return fn(obj, self.severity, rng)


def corruptions_for(kind: str) -> list[str]:
    """Registered corruption names for a modality kind."""
    return [n for n in CORRUPTIONS.list() if n.split("/")[0] == kind]


# --- image -----------------------------------------------------------------


@CORRUPTIONS.register("image/gaussian_noise")
def image_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise, sigma 0.08 ... 0.38 of the range (ImageNet-C)."""
    sigma = _level((0.08, 0.12, 0.18, 0.26, 0.38), severity)
    x = img.astype(np.float32) / 255 + rng.normal(0, sigma, img.shape).astype(np.float32)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


@CORRUPTIONS.register("image/blur")
def image_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur; radius 0.5 ... 3 pixels per 64 pixels of the shorter side."""
    from PIL import Image, ImageFilter

    scale = max(1.0, min(img.shape[:2]) / 64)
    radius = _level((0.5, 1.0, 1.5, 2.0, 3.0), severity) * scale
    pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    out = np.asarray(pil.filter(ImageFilter.GaussianBlur(radius)))
    return np.asarray(out.reshape(img.shape), dtype=np.uint8)


@CORRUPTIONS.register("image/jpeg")
def image_jpeg(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """JPEG re-encoding at quality 25 ... 7 (ImageNet-C)."""
    from PIL import Image

    quality = int(_level((25, 18, 15, 10, 7), severity))
    pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    return np.asarray(Image.open(buf), dtype=np.uint8).reshape(img.shape)


@CORRUPTIONS.register("image/colour_shift")
def image_colour_shift(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Per-channel offset of 5 ... 40% of the range in a random direction (brightness for grey)."""
    amount = _level((0.05, 0.1, 0.2, 0.3, 0.4), severity) * 255
    shift = rng.choice([-1.0, 1.0], size=img.shape[2]) * amount
    shifted = np.clip(img.astype(np.float32) + shift, 0, 255)
    return np.asarray(shifted, dtype=np.uint8)


# --- audio -----------------------------------------------------------------


@CORRUPTIONS.register("audio/noise")
def audio_noise(wave: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """White noise at 20, 10, 5, 0, -5 dB signal-to-noise ratio."""
    snr = _level((20, 10, 5, 0, -5), severity)
    power = float(np.mean(wave.astype(np.float64) ** 2)) or 1e-8
    noise = rng.standard_normal(wave.shape) * np.sqrt(power / 10 ** (snr / 10))
    return np.asarray(wave + noise, dtype=np.float32)


@CORRUPTIONS.register("audio/resample")
def audio_resample(wave: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Down-sample to 3/4 ... 3/16 of the rate and back (a telephone-like band limit)."""
    from scipy.signal import resample_poly

    _level((1, 2, 3, 4, 5), severity)  # validates the severity
    up, down = ((3, 4), (1, 2), (3, 8), (1, 4), (3, 16))[severity - 1]
    low = resample_poly(wave, up, down)
    back = resample_poly(low, down, up)[: wave.shape[0]]
    out = np.zeros_like(wave)
    out[: back.shape[0]] = back
    return out.astype(np.float32)


@CORRUPTIONS.register("audio/clipping")
def audio_clipping(wave: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Hard clipping at 50 ... 5% of the peak amplitude."""
    peak = float(np.max(np.abs(wave))) or 1.0
    level = _level((0.5, 0.3, 0.2, 0.1, 0.05), severity) * peak
    return np.asarray(np.clip(wave, -level, level), dtype=np.float32)


# --- text ------------------------------------------------------------------


@CORRUPTIONS.register("text/typos")
def text_typos(text: str, severity: int, rng: np.random.Generator) -> str:
    """Each letter mistyped (swapped, dropped, doubled or replaced) with probability 2 ... 30%."""
    p = _level((0.02, 0.05, 0.1, 0.2, 0.3), severity)
    letters = "abcdefghijklmnopqrstuvwxyz"
    chars = list(text)
    out: list[str] = []
    i = 0
    while i < len(chars):
        c = chars[i]
        if c.isalpha() and rng.random() < p:
            op = int(rng.integers(4))
            if op == 0 and i + 1 < len(chars):  # swap with the next character
                out += [chars[i + 1], c]
                i += 2
                continue
            if op == 1:  # drop
                i += 1
                continue
            if op == 2:  # double
                out += [c, c]
            else:  # replace
                out.append(letters[int(rng.integers(len(letters)))])
        else:
            out.append(c)
        i += 1
    return "".join(out)


@CORRUPTIONS.register("text/truncation")
def text_truncation(text: str, severity: int, rng: np.random.Generator) -> str:
    """Keep the first 80 ... 10% of the words (at least one)."""
    keep = _level((0.8, 0.6, 0.4, 0.2, 0.1), severity)
    words = text.split()
    return " ".join(words[: max(1, round(len(words) * keep))])


# --- time series -----------------------------------------------------------


@CORRUPTIONS.register("timeseries/noise")
def series_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of 0.1 ... 2 times each channel's standard deviation."""
    scale = _level((0.1, 0.25, 0.5, 1.0, 2.0), severity)
    std = x.std(axis=0, keepdims=True) + 1e-8
    noisy = x + rng.standard_normal(x.shape) * std * scale
    return np.asarray(noisy, dtype=np.float32)


@CORRUPTIONS.register("timeseries/dropped_steps")
def series_dropped(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Remove 10 ... 70% of the time steps at random (at least one step stays)."""
    frac = _level((0.1, 0.2, 0.35, 0.5, 0.7), severity)
    keep: np.ndarray = np.asarray(rng.random(x.shape[0]) >= frac)
    if not keep.any():
        keep[int(rng.integers(x.shape[0]))] = True
    return np.asarray(x[keep])
