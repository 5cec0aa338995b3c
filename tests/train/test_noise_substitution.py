"""Noise substitution: inputs replaced by pure noise in training, only where evidence remains."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from polyfuse.core.config import Config
from polyfuse.core.errors import ConfigError
from polyfuse.data.dataset import Collator, MultimodalDataset
from polyfuse.data.manifest import Manifest
from polyfuse.modalities.audio import AudioContract
from polyfuse.modalities.image import ImageContract
from polyfuse.modalities.text import TextContract
from polyfuse.modalities.timeseries import TimeSeriesContract
from polyfuse.models.build import build_contracts
from polyfuse.train import Trainer
from polyfuse.train.trainer import _Run
from tests.conftest import SMALL_CONFIG


@pytest.mark.parametrize(
    ("contract", "like"),
    [
        (ImageContract("image", size=(12, 12), channels=1), torch.zeros(1, 12, 12)),
        (AudioContract("audio", sample_rate=8000, n_mels=24), torch.zeros(24, 37)),
        (TimeSeriesContract("series"), torch.zeros(15, 2)),
    ],
)
def test_noise_has_the_shape_of_the_input(contract: object, like: torch.Tensor) -> None:
    rng = np.random.default_rng(0)
    x = contract.noise(like, rng)  # type: ignore[attr-defined]
    assert x.shape == like.shape and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert not torch.equal(x, contract.noise(like, rng))  # type: ignore[attr-defined]


def test_text_has_no_noise_model() -> None:
    with pytest.raises(NotImplementedError):
        TextContract("text").noise(torch.zeros(4, dtype=torch.long), np.random.default_rng(0))
    cfg = copy.deepcopy(SMALL_CONFIG)
    cfg["modalities"]["text"]["noise"] = 0.1
    with pytest.raises(ConfigError, match="text"):
        Config.from_dict(cfg)
    cfg["modalities"]["text"]["noise"] = 0.0
    cfg["modalities"]["audio"]["noise"] = 1.0
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        Config.from_dict(cfg)


def test_only_samples_with_another_modality_are_substituted(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    cfg = copy.deepcopy(SMALL_CONFIG)
    cfg["modalities"] = {m: cfg["modalities"][m] for m in ("image", "audio")}
    cfg["modalities"]["audio"]["noise"] = 0.9
    train, _ = synthetic(40)
    config = Config.from_dict(cfg)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    manifest = Manifest.load(train, ("image", "audio"), config.label)
    ds = MultimodalDataset(manifest, build_contracts(config), None, require_label=False)
    batch = Collator(ds.contracts)([ds[i] for i in range(len(ds))])
    before = batch.inputs["audio"].data.clone()
    run = _Run(None, None, None, None, ds, noise_rng=np.random.default_rng(0))  # type: ignore[arg-type]
    trainer._substitute_noise(run, batch)
    audio = batch.inputs["audio"]
    rows = audio.present.nonzero().flatten()
    alone = ~batch.inputs["image"].present[rows]  # audio is the sample's only modality
    changed = (audio.data != before).flatten(1).any(1)
    assert changed.any(), "p = 0.9: most eligible rows are replaced"
    assert not changed[alone].any(), "a sample's only modality is never replaced"
