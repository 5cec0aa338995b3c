"""Two real tiny image + text artifacts trained once per session: a champion that learned
the synthetic classes and a worse candidate trained on shuffled labels (both carry
monitoring profiles), with the data folder of their rows (the ``models`` fixture of
tests/serve/conftest.py)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from polyfuse.core.config import Config
from polyfuse.train import Trainer
from tests.conftest import SMALL_CONFIG, write_manifest, write_synthetic

CONFIG: dict[str, Any] = {
    **SMALL_CONFIG,
    "modalities": {m: SMALL_CONFIG["modalities"][m] for m in ("image", "text")},
    "train": {**SMALL_CONFIG["train"], "epochs": 6},
}


class Models:
    """The session's artifacts: ``champion``, ``worse``; ``data`` with ``rows``."""

    def __init__(self, folder: Path) -> None:
        self.data = folder / "data"
        self.rows = write_synthetic(self.data, 60, missing=False)
        self.champion = self._train(folder / "champion", self.rows)
        shuffled = [dict(r) for r in self.rows]
        labels = [r["label"] for r in shuffled]
        random.Random(0).shuffle(labels)
        for row, label in zip(shuffled, labels, strict=True):
            row["label"] = label
        self.worse = self._train(folder / "worse", shuffled)

    def _train(self, out: Path, rows: list[dict[str, Any]]) -> Path:
        # manifests beside the files: rows name them relative to the manifest
        train = write_manifest(self.data / f"{out.name}.train.jsonl", rows[:45])
        val = write_manifest(self.data / f"{out.name}.val.jsonl", rows[45:])
        Trainer(Config.from_dict(CONFIG), out, progress=False).fit(train, val)
        return out

    def inputs(self, i: int) -> dict[str, bytes | str]:
        """The inputs of row ``i`` as a client sends them."""
        row = self.rows[i % len(self.rows)]
        return {"image": (self.data / row["image"]).read_bytes(), "text": row["text"]}

    def label(self, i: int) -> str:
        return str(self.rows[i % len(self.rows)]["label"])
