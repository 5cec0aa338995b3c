"""Pixel boxes shared by the image readers, detectors and redaction: ``(x0, y0, x1, y1)``
with x1/y1 exclusive."""

from __future__ import annotations

import math

Box = tuple[int, int, int, int]


def clip_box(box: tuple[float, float, float, float], w: int, h: int) -> Box:
    """``box`` rounded outwards to whole pixels and clipped to a ``w`` x ``h`` image."""
    x0 = max(0, min(w, math.floor(box[0])))
    y0 = max(0, min(h, math.floor(box[1])))
    x1 = max(x0, min(w, math.ceil(box[2])))
    y1 = max(y0, min(h, math.ceil(box[3])))
    return (x0, y0, x1, y1)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when both are empty)."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def inside(inner: Box, outer: Box, frac: float = 0.6) -> bool:
    """Whether at least ``frac`` of ``inner``'s area lies in ``outer``."""
    ix = max(0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    iy = max(0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = max(1, (inner[2] - inner[0]) * (inner[3] - inner[1]))
    return ix * iy / area >= frac
