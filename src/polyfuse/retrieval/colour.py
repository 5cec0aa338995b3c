"""Colour-name tokens of an image: which basic colours each spatial cell shows.

ImageNet-trained features keep object identity but much less colour, so a swapped
colour word ("red shirt" -> "blue shirt") is hard to catch from them alone. These tokens
give the consistency scorer direct evidence: the image is resized to ``size``, cut into a
``grid`` x ``grid`` map like the encoder's, and each cell gets the share of its pixels in
each of the basic colour names below (HSV thresholds), plus one whole-image token.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Basic colour names, in token order.
NAMES = (
    "black",
    "white",
    "grey",
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
)


def colour_names(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> ``(H, W)`` index into `NAMES` for every pixel."""
    x = rgb.astype(np.float32) / 255.0
    mx, mn = x.max(-1), x.min(-1)
    v, delta = mx, mx - mn
    s = np.where(mx > 0, delta / np.maximum(mx, 1e-6), 0.0)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    d = np.maximum(delta, 1e-6)
    h = np.where(mx == r, ((g - b) / d) % 6, np.where(mx == g, (b - r) / d + 2, (r - g) / d + 4))
    h = h * 60.0  # degrees
    out = np.full(rgb.shape[:2], NAMES.index("grey"), dtype=np.int64)
    chroma = s >= 0.2
    hue = np.select(
        [h < 15, h < 40, h < 70, h < 170, h < 260, h < 300, h < 340],
        [3, 4, 5, 6, 7, 8, 9],
        default=3,
    )
    # dark oranges and reds read as brown, pale reds as pink
    hue = np.where((hue == 4) & (v < 0.65), NAMES.index("brown"), hue)
    hue = np.where((hue == 3) & (v < 0.45), NAMES.index("brown"), hue)
    hue = np.where((hue == 3) & (s < 0.45) & (v > 0.7), NAMES.index("pink"), hue)
    out = np.where(chroma, hue, out)
    out = np.where(~chroma & (v > 0.8), NAMES.index("white"), out)
    out = np.where(v < 0.2, NAMES.index("black"), out)
    return out


def colour_tokens(image: Any, grid: int = 7, size: int = 112) -> np.ndarray:
    """``(grid * grid + 1, len(NAMES))`` colour shares per cell and for the whole image.

    ``image``: a PIL image or an ``(H, W, 3)`` uint8 array.
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        pil = image
    else:
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        pil = Image.fromarray(arr)
    arr = np.asarray(pil.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
    names = colour_names(arr)
    k = len(NAMES)
    cell = size // grid
    cut = names[: cell * grid, : cell * grid].reshape(grid, cell, grid, cell)
    cells = cut.transpose(0, 2, 1, 3).reshape(grid * grid, cell * cell)
    counts = np.stack([(cells == c).mean(1) for c in range(k)], axis=1)
    whole = np.bincount(names.ravel(), minlength=k) / names.size
    return np.concatenate([counts, whole[None]], 0).astype(np.float32)
