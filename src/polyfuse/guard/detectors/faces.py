"""Frontal faces in an image (OpenCV Haar cascade, shipped with opencv-python)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from polyfuse.core.errors import DependencyError
from polyfuse.guard.geometry import Box, clip_box
from polyfuse.guard.models import SHARED_MODELS, ModelCache


def _load_cascade() -> Any:
    import cv2

    cascades = cv2.data.haarcascades  # type: ignore[attr-defined]
    path = str(Path(cascades) / "haarcascade_frontalface_default.xml")
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():  # pragma: no cover - ships with opencv-python
        raise DependencyError("opencv-python-headless", "face detection", "guard")
    return cascade


def cv2_version() -> str:
    """The OpenCV version (the face detector's version)."""
    import cv2

    return str(cv2.__version__)


def detect_faces(
    rgb: NDArray[np.uint8], *, max_side: int = 1024, models: ModelCache | None = None
) -> list[tuple[Box, float]]:
    """Frontal faces by OpenCV's Haar cascade: ``[(box, score)]``.

    The score maps the cascade's level weight ``w`` through ``1 / (1 + exp(-(w - 1)))``
    (a heuristic: weights near 0 are borderline detections, above ~4 confident). The
    cascade is kept in ``models`` (default `SHARED_MODELS`).
    """
    import cv2

    cascade = (SHARED_MODELS if models is None else models).get(("haar-face",), _load_cascade)
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    min_size = max(20, round(min(gray.shape[:2]) * 0.05))
    rects, _levels, weights = cascade.detectMultiScale3(
        gray,
        scaleFactor=1.1,
        minNeighbors=5,
        minSize=(min_size, min_size),
        outputRejectLevels=True,
    )
    out: list[tuple[Box, float]] = []
    for (x, y, bw, bh), wt in zip(
        np.asarray(rects).reshape(-1, 4), np.ravel(weights), strict=False
    ):
        box = clip_box((x / scale, y / scale, (x + bw) / scale, (y + bh) / scale), w, h)
        out.append((box, float(1.0 / (1.0 + math.exp(-(float(wt) - 1.0))))))
    return out
