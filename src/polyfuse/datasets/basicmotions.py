"""BasicMotions (UEA archive): smart-watch accelerometer + gyroscope, 6 channels x 100 steps.

Converts the sktime ``.ts`` files into one ``.npy`` per series (shape ``(T, C)``)
and JSONL manifests with a ``motion`` time-series modality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polyfuse.core.errors import PolyfuseError
from polyfuse.data.manifest import write_jsonl


def read_ts(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """Parse an sktime ``.ts`` file of equal-length multivariate series.

    Returns:
        series as ``(T, C)`` float arrays, and their class labels.
    """
    series, labels = [], []
    in_data = False
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower() == "@data":
            in_data = True
            continue
        if not in_data:
            continue
        *dims, label = line.split(":")
        channels = [np.array([float(v) for v in d.split(",")], dtype=np.float32) for d in dims]
        series.append(np.stack(channels, axis=1))  # (T, C)
        labels.append(label)
    if not series:
        raise PolyfuseError(f"{path}: no @data rows found")
    return series, labels


def build(
    data_dir: str | Path, out_dir: str | Path, val_fraction: float = 0.25, seed: int = 0
) -> dict[str, Path]:
    """Write ``series/*.npy`` and ``train/val/test.jsonl`` (validation split off TRAIN)."""
    src = Path(data_dir) / "basicmotions"
    out = Path(out_dir)
    (out / "series").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = {}
    for part in ("TRAIN", "TEST"):
        series, labels = read_ts(src / f"BasicMotions_{part}.ts")
        rows = []
        for i, (x, y) in enumerate(zip(series, labels, strict=True)):
            name = f"series/{part.lower()}_{i}.npy"
            np.save(out / name, x)
            rows.append({"id": f"{part.lower()}-{i}", "motion": name, "label": y})
        if part == "TEST":
            paths["test"] = write_jsonl(out / "test.jsonl", rows)
            continue
        val = set(rng.permutation(len(rows))[: int(len(rows) * val_fraction)].tolist())
        paths["train"] = write_jsonl(
            out / "train.jsonl", [r for i, r in enumerate(rows) if i not in val]
        )
        paths["val"] = write_jsonl(out / "val.jsonl", [r for i, r in enumerate(rows) if i in val])
    return paths
