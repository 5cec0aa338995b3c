"""Cheap input statistics per modality kind: what an operator would look at first.

Each function reads the object a contract's ``load`` returns (before preprocessing, so
an image keeps its own size and an audio clip its own loudness) and returns a fixed set
of named floats. The set per kind is `STATISTICS[kind]`; the reference profile stores one
row per sample and the drift detectors compare the columns.

- image (``(H, W, C)`` uint8): size, aspect, brightness, contrast, per-channel means,
  saturation, colour temperature (blue minus red), sharpness (variance of the Laplacian
  on a fixed-size grey copy, so it does not depend on resolution), JPEG blockiness, and a
  six-bin hue histogram;
- audio (mono float wave at the contract's rate): duration, RMS level, peak, clipping and
  silence ratios, zero-crossing rate, spectral centroid, 95 % roll-off, high-band energy
  share, spectral flatness, and the effective sample rate (twice the frequency below which
  99.5 % of the energy lies: a clip resampled from 8 kHz shows 8 kHz here);
- text: characters, words, word length, out-of-vocabulary rate (against the reference
  vocabulary), shares of digits, upper case, punctuation, non-ASCII characters, and of
  English function words (a language proxy);
- series (``(T, C)`` float): length, mean, standard deviation, missing-step share, flat
  share (steps equal to the previous one), range and lag-1 autocorrelation.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

IMAGE_STATS = (
    "height",
    "width",
    "aspect",
    "brightness",
    "contrast",
    "red",
    "green",
    "blue",
    "saturation",
    "colour_temperature",
    "sharpness",
    "blockiness",
    *(f"hue_{i}" for i in range(6)),
)
AUDIO_STATS = (
    "duration_s",
    "rms_db",
    "peak",
    "clipping_ratio",
    "silence_ratio",
    "zero_crossing_rate",
    "spectral_centroid_hz",
    "rolloff_hz",
    "high_band_ratio",
    "spectral_flatness",
    "effective_rate_hz",
)
TEXT_STATS = (
    "chars",
    "words",
    "word_length",
    "oov_rate",
    "digit_ratio",
    "upper_ratio",
    "punct_ratio",
    "non_ascii_ratio",
    "function_word_ratio",
)
SERIES_STATS = (
    "length",
    "mean",
    "std",
    "missing_ratio",
    "flat_ratio",
    "range",
    "autocorrelation",
)

#: Names of the statistics each modality kind reports, in column order.
STATISTICS: dict[str, tuple[str, ...]] = {
    "image": IMAGE_STATS,
    "audio": AUDIO_STATS,
    "text": TEXT_STATS,
    "timeseries": SERIES_STATS,
}

# Common English function words: their share is a cheap language/domain signal.
_FUNCTION_WORDS = (
    "a an the and or but of in on at to for with from by is are was were be been "
    "it its this that these those he she they we you i his her their our my your "
    "not no as if so than then there here what which who when where how"
)
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (letters and digits)."""
    return _WORD.findall(text.lower())


#: A word belongs to the reference vocabulary when the reference uses it this often.
MIN_COUNT = 2


def word_counts(texts: Iterable[str]) -> Counter[str]:
    """How often each word occurs in ``texts``."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(words(text))
    return counts


def vocabulary(texts: Collection[str], min_count: int = MIN_COUNT) -> frozenset[str]:
    """Words seen at least ``min_count`` times in ``texts`` (the reference vocabulary)."""
    return frozenset(w for w, c in word_counts(texts).items() if c >= min_count)


class HeldOutVocabulary(Collection[str]):
    """The reference vocabulary as one of the reference's own texts must see it: the words
    the *other* texts use ``min_count`` times.

    Measured against a vocabulary that contains it, a reference text has no unknown words
    by construction, while every later text has some: the out-of-vocabulary rate would
    drift on unshifted data. Leaving the text out makes both sides comparable.
    """

    def __init__(self, counts: Counter[str], text: str, min_count: int = MIN_COUNT) -> None:
        self._counts = counts
        self._own = Counter(words(text))
        self._min = min_count

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self._counts[word] - self._own[word] >= self._min

    def __iter__(self) -> Iterator[str]:
        return (w for w in self._counts if w in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return bool(self._counts)


def image_statistics(pixels: NDArray[Any]) -> FloatArray:
    """Statistics of an ``(H, W, C)`` uint8 image (C = 1 or 3), in `IMAGE_STATS` order."""
    arr = np.asarray(pixels)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    h, w = int(arr.shape[0]), int(arr.shape[1])
    rgb = arr.astype(np.float64) / 255.0
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    rgb = rgb[:, :, :3]
    grey = rgb @ np.array([0.299, 0.587, 0.114])
    mx, mn = rgb.max(axis=2), rgb.min(axis=2)
    chroma = mx - mn
    saturation = np.where(mx > 0, chroma / np.maximum(mx, 1e-12), 0.0)
    small = _resize_grey(grey, 128)
    lap = (
        -4.0 * small[1:-1, 1:-1]
        + small[:-2, 1:-1]
        + small[2:, 1:-1]
        + small[1:-1, :-2]
        + small[1:-1, 2:]
    )
    means = rgb.reshape(-1, 3).mean(axis=0)
    return np.array(
        [
            h,
            w,
            w / max(h, 1),
            grey.mean(),
            grey.std(),
            means[0],
            means[1],
            means[2],
            saturation.mean(),
            means[2] - means[0],
            float(lap.var()) * 1000.0,
            _blockiness(grey),
            *_hue_histogram(rgb, chroma, mx),
        ],
        dtype=np.float64,
    )


def _resize_grey(grey: FloatArray, side: int) -> FloatArray:
    """Area-average ``grey`` onto a ``side x side`` grid (nearest for small images)."""
    h, w = grey.shape
    rows = np.minimum((np.arange(side) * h) // side, h - 1)
    cols = np.minimum((np.arange(side) * w) // side, w - 1)
    if h >= side and w >= side:
        # box filter: mean of each cell via cumulative sums
        r_edges = np.linspace(0, h, side + 1).astype(int)
        c_edges = np.linspace(0, w, side + 1).astype(int)
        cs = np.pad(grey.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        r0, r1 = r_edges[:-1], np.maximum(r_edges[1:], r_edges[:-1] + 1)
        c0, c1 = c_edges[:-1], np.maximum(c_edges[1:], c_edges[:-1] + 1)
        total = cs[np.ix_(r1, c1)] - cs[np.ix_(r0, c1)] - cs[np.ix_(r1, c0)] + cs[np.ix_(r0, c0)]
        area = np.outer(r1 - r0, c1 - c0)
        out: FloatArray = total / area
        return out
    nearest: FloatArray = grey[np.ix_(rows, cols)]
    return nearest


def _blockiness(grey: FloatArray) -> float:
    """Mean jump across 8-pixel block borders over the mean jump elsewhere (JPEG artefacts)."""
    if grey.shape[1] < 17:
        return 1.0
    jumps = np.abs(np.diff(grey, axis=1)).mean(axis=0)
    border = jumps[7::8]
    inside = np.delete(jumps, np.arange(7, jumps.size, 8))
    return float(border.mean() / max(inside.mean(), 1e-6))


def _hue_histogram(rgb: FloatArray, chroma: FloatArray, mx: FloatArray) -> FloatArray:
    """Share of coloured pixels (chroma > 0.1) in six hue sectors, weighted by chroma."""
    coloured = chroma > 0.1
    if not coloured.any():
        return np.zeros(6)
    r, g, b = (rgb[:, :, i][coloured] for i in range(3))
    c, m = chroma[coloured], mx[coloured]
    hue = np.where(
        m == r, ((g - b) / c) % 6.0, np.where(m == g, (b - r) / c + 2.0, (r - g) / c + 4.0)
    )
    hist = np.bincount(np.minimum(hue.astype(int), 5), weights=c, minlength=6)[:6]
    out: FloatArray = hist / max(float(c.sum()), 1e-12)
    return out


def audio_statistics(wave: NDArray[Any], sample_rate: int) -> FloatArray:
    """Statistics of a mono float wave at ``sample_rate``, in `AUDIO_STATS` order."""
    x = np.asarray(wave, dtype=np.float64).reshape(-1)
    n = max(x.size, 1)
    peak = float(np.abs(x).max()) if x.size else 0.0
    rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    frame = max(1, sample_rate // 50)  # 20 ms
    usable = (x.size // frame) * frame
    if usable:
        frames = x[:usable].reshape(-1, frame)
        frame_db = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        silence = float(np.mean(frame_db < max(frame_db.max() - 40.0, -70.0)))
    else:
        silence = 1.0
    spectrum = _power_spectrum(x, sample_rate)
    freqs = np.linspace(0.0, sample_rate / 2.0, spectrum.size)
    total = float(spectrum.sum())
    if total > 0:
        share = np.cumsum(spectrum) / total
        centroid = float((freqs * spectrum).sum() / total)
        rolloff = float(freqs[min(int(np.searchsorted(share, 0.95)), freqs.size - 1)])
        effective = 2.0 * float(freqs[min(int(np.searchsorted(share, 0.995)), freqs.size - 1)])
        high = float(spectrum[freqs >= sample_rate / 4.0].sum() / total)
        flatness = float(np.exp(np.mean(np.log(spectrum + 1e-20))) / max(np.mean(spectrum), 1e-20))
    else:
        centroid = rolloff = effective = high = 0.0
        flatness = 1.0
    return np.array(
        [
            x.size / sample_rate,
            20.0 * np.log10(rms + 1e-9),
            peak,
            float(np.mean(np.abs(x) >= 0.999)) if x.size else 0.0,
            silence,
            float(np.mean(np.abs(np.diff(np.signbit(x).astype(np.int8))))) if n > 1 else 0.0,
            centroid,
            rolloff,
            high,
            flatness,
            effective,
        ],
        dtype=np.float64,
    )


def _power_spectrum(x: FloatArray, sample_rate: int, window: int = 512) -> FloatArray:
    """Welch-style mean power spectrum over Hann windows (half overlap)."""
    if x.size < window:
        x = np.pad(x, (0, window - x.size))
    hop = window // 2
    count = 1 + (x.size - window) // hop
    idx = np.arange(window)[None, :] + hop * np.arange(count)[:, None]
    frames = x[idx] * np.hanning(window)
    power: FloatArray = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)
    return power


def text_statistics(text: str, vocab: Collection[str] = frozenset()) -> FloatArray:
    """Statistics of one text, in `TEXT_STATS` order; OOV against ``vocab`` (0 when empty)."""
    toks = words(text)
    chars = max(len(text), 1)
    n_words = max(len(toks), 1)
    return np.array(
        [
            len(text),
            len(toks),
            sum(len(t) for t in toks) / n_words,
            (sum(t not in vocab for t in toks) / n_words) if vocab else 0.0,
            sum(ch.isdigit() for ch in text) / chars,
            sum(ch.isupper() for ch in text) / chars,
            sum((not ch.isalnum()) and (not ch.isspace()) for ch in text) / chars,
            sum(ord(ch) > 127 for ch in text) / chars,
            sum(t in FUNCTION_WORDS for t in toks) / n_words,
        ],
        dtype=np.float64,
    )


def series_statistics(values: NDArray[Any]) -> FloatArray:
    """Statistics of a ``(T, C)`` series (NaN = missing step), in `SERIES_STATS` order."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    missing = float(np.isnan(x).mean()) if x.size else 0.0
    finite = np.where(np.isfinite(x), x, np.nan)
    with np.errstate(all="ignore"):
        mean = float(np.nanmean(finite)) if np.isfinite(finite).any() else 0.0
        std = float(np.nanstd(finite)) if np.isfinite(finite).any() else 0.0
        rng = float(np.nanmax(finite) - np.nanmin(finite)) if np.isfinite(finite).any() else 0.0
        steps = np.diff(finite, axis=0)
        flat = float(np.mean(steps == 0)) if steps.size else 1.0
        filled = np.nan_to_num(finite - np.nanmean(finite, axis=0), nan=0.0)
        num = (filled[1:] * filled[:-1]).sum()
        den = (filled**2).sum()
    return np.array(
        [x.shape[0], mean, std, missing, flat, rng, float(num / den) if den > 0 else 0.0],
        dtype=np.float64,
    )


def statistics_of(kind: str, obj: Any, context: Mapping[str, Any]) -> FloatArray | None:
    """Statistics of one loaded input of modality ``kind``, or None for an unknown kind.

    Args:
        context: what some kinds need: ``sample_rate`` (audio), ``vocab`` (text).
    """
    if kind == "image":
        return image_statistics(obj)
    if kind == "audio":
        return audio_statistics(obj, int(context.get("sample_rate", 16000)))
    if kind == "text":
        return text_statistics(str(obj), context.get("vocab", frozenset()))
    if kind == "timeseries":
        return series_statistics(obj)
    return None
