"""Non-signal substitution in training (``modalities.<name>.substitute``): real recordings or
pictures that carry no evidence (environmental sound in place of speech) replace a sample's
input now and then while its label stays, so the fusion learns to discount such inputs
instead of trusting them. Synthetic noise (``modalities.<name>.noise``) teaches the same for
white/pink/brown noise and flat frames; real non-signal is what a broken or misplaced sensor
actually sends.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from polyfuse.core.config import SubstituteConfig
from polyfuse.core.errors import ConfigError, PolyfuseError, TrainingError
from polyfuse.modalities.base import ModalityContract

log = logging.getLogger("polyfuse.train")


def source_files(source: Path, max_files: int, where: str = "substitute.source") -> list[Path]:
    """The files a ``substitute.source`` names: a folder's files (recursively, sorted), or
    the paths listed one per line in a text file (relative to it; ``#`` starts a comment);
    a source that is neither is a `ConfigError` at ``where``."""
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file())
    elif source.is_file():
        lines = source.read_text(encoding="utf-8").splitlines()
        entries = [ln.split("#", 1)[0].strip() for ln in lines]
        files = [source.parent / e for e in entries if e]
    else:
        raise ConfigError(
            where,
            f"{source} is neither a folder nor a list file",
            hint="paths are relative to the training manifest's folder",
        )
    return files[:max_files]


class NonSignalPool:
    """The loaded non-signal inputs of one modality, drawn at random for substitution.

    Args:
        contract: the modality's contract (loads the files, fits a draw to a sample).
        items: loaded inputs (what ``contract.load`` returns).
        p: substitution probability per eligible training sample.
    """

    def __init__(self, contract: ModalityContract, items: list[Any], p: float) -> None:
        if not items:
            raise ValueError("a non-signal pool needs at least one input")
        self.contract = contract
        self.items = items
        self.p = p

    @classmethod
    def load(
        cls, contract: ModalityContract, config: SubstituteConfig, base_dir: Path
    ) -> NonSignalPool:
        """Read ``config.source`` (relative to ``base_dir``); unreadable files are skipped."""
        source = base_dir / config.source
        where = f"modalities.{contract.name}.substitute.source"
        files = source_files(source, config.max_files, where)
        items = []
        for path in files:
            try:
                items.append(contract.load(path, field=contract.name))
            except PolyfuseError:
                continue
        if not items:
            raise TrainingError(
                f"{where}: none of the {len(files)} files under {source} reads as {contract.kind}",
                hint="point it at a folder or list of non-signal files of that kind",
            )
        log.info(
            "%s: %d non-signal inputs for substitution (%d unreadable files skipped)",
            contract.name,
            len(items),
            len(files) - len(items),
        )
        return cls(contract, items, config.p)

    def draw(self, like: Tensor, rng: np.random.Generator) -> Tensor:
        """A random non-signal input preprocessed into the shape of ``like``."""
        obj = self.items[int(rng.integers(len(self.items)))]
        return self.contract.substitute(obj, like, rng)
