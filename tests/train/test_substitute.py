"""Non-signal substitution: real environmental sound replaces speech now and then in training,
label kept; and training leaves out inputs its quality gates refuse, as serving does."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from polyfuse.core.config import Config, SubstituteConfig
from polyfuse.core.errors import ConfigError, TrainingError
from polyfuse.data.dataset import Collator, MultimodalDataset
from polyfuse.data.manifest import Manifest
from polyfuse.modalities.audio import AudioContract
from polyfuse.modalities.image import ImageContract
from polyfuse.modalities.text import TextContract
from polyfuse.modalities.timeseries import TimeSeriesContract
from polyfuse.models.build import build_contracts
from polyfuse.train import Trainer
from polyfuse.train.substitute import NonSignalPool, source_files
from polyfuse.train.trainer import _Run
from tests.conftest import SMALL_CONFIG

RNG = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("contract", "obj", "like"),
    [
        (
            ImageContract("image", size=(12, 12), channels=1),
            RNG.integers(0, 255, (40, 30, 1), dtype=np.uint8),
            torch.zeros(1, 12, 12),
        ),
        (  # 5 s of sound into a 0.37 s spectrogram, and 0.1 s repeated into it
            AudioContract("audio", sample_rate=8000, n_mels=24),
            RNG.standard_normal(40000).astype(np.float32),
            torch.zeros(24, 37),
        ),
        (
            AudioContract("audio", sample_rate=8000, n_mels=24),
            RNG.standard_normal(800).astype(np.float32),
            torch.zeros(24, 37),
        ),
        (TimeSeriesContract("series"), RNG.standard_normal((100, 2)), torch.zeros(15, 2)),
        (TimeSeriesContract("series"), RNG.standard_normal((5, 2)), torch.zeros(15, 2)),
    ],
)
def test_a_drawn_input_has_the_shape_of_the_sample(
    contract: Any, obj: np.ndarray, like: torch.Tensor
) -> None:
    pool = NonSignalPool(contract, [obj], p=0.5)
    x = pool.draw(like, np.random.default_rng(0))
    assert x.shape == like.shape and x.dtype == torch.float32 and torch.isfinite(x).all()
    if isinstance(contract, AudioContract):  # normalised on its own window like any input
        assert x.mean(dim=1).abs().max() < 1e-4


def test_text_has_no_substitution() -> None:
    with pytest.raises(NotImplementedError):
        TextContract("text").substitute("a", torch.zeros(3, dtype=torch.long), RNG)
    cfg = copy.deepcopy(SMALL_CONFIG)
    cfg["modalities"]["text"]["substitute"] = {"source": "x"}
    with pytest.raises(ConfigError, match="text has no non-signal") as err:
        Config.from_dict(cfg)
    assert err.value.key == "modalities.text.substitute"


def test_noise_and_substitution_leave_room_for_the_real_input() -> None:
    cfg = copy.deepcopy(SMALL_CONFIG)
    cfg["modalities"]["audio"].update(noise=0.5, substitute={"source": "x", "p": 0.5})
    with pytest.raises(ConfigError, match="must stay below 1") as err:
        Config.from_dict(cfg)
    assert err.value.key == "modalities.audio.substitute.p"
    cfg["modalities"]["audio"]["substitute"] = {"source": "x", "q": 0.5}
    with pytest.raises(ConfigError, match="valid keys: max_files, p, source"):
        Config.from_dict(cfg)


def _noise_wavs(folder: Path, n: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(folder / f"n{i}.wav", 0.2 * RNG.standard_normal(4000).astype(np.float32), 8000)
    (folder / "meta.csv").write_text("filename,category\n")  # not audio: skipped
    return folder


def test_sources_are_folders_or_lists(tmp_path: Path) -> None:
    folder = _noise_wavs(tmp_path / "sounds")
    assert [p.name for p in source_files(folder, 10)] == ["meta.csv", "n0.wav", "n1.wav", "n2.wav"]
    listing = tmp_path / "list.txt"
    listing.write_text("# training side\nsounds/n2.wav\n\nsounds/n0.wav  # a comment\n")
    assert source_files(listing, 10) == [tmp_path / "sounds/n2.wav", tmp_path / "sounds/n0.wav"]
    assert len(source_files(listing, 1)) == 1
    with pytest.raises(ConfigError, match="neither a folder nor a list file") as err:
        source_files(tmp_path / "absent", 10, "modalities.audio.substitute.source")
    assert err.value.key == "modalities.audio.substitute.source"


def test_a_pool_skips_unreadable_files_and_refuses_an_empty_source(tmp_path: Path) -> None:
    contract = AudioContract("audio", sample_rate=8000)
    pool = NonSignalPool.load(
        contract, SubstituteConfig("sounds"), _noise_wavs(tmp_path / "sounds").parent
    )
    assert len(pool.items) == 3 and pool.p == 0.2
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "a.txt").write_text("not audio")
    with pytest.raises(TrainingError, match=r"none of the 1 files .* reads as audio"):
        NonSignalPool.load(contract, SubstituteConfig("texts"), tmp_path)


def test_substitution_replaces_only_where_evidence_remains(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    cfg = copy.deepcopy(SMALL_CONFIG)
    cfg["modalities"] = {m: cfg["modalities"][m] for m in ("image", "audio")}
    cfg["modalities"]["audio"]["substitute"] = {"source": "sounds", "p": 0.9}
    train, _ = synthetic(40)
    config = Config.from_dict(cfg)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    manifest = Manifest.load(train, ("image", "audio"), config.label)
    ds = MultimodalDataset(manifest, build_contracts(config), None, require_label=False)
    pools = trainer._pools(ds.contracts, _noise_wavs(train.parent / "sounds").parent)
    batch = Collator(ds.contracts)([ds[i] for i in range(len(ds))])
    before = batch.inputs["audio"].data.clone()
    run = _Run(None, None, None, None, ds, noise_rng=np.random.default_rng(0), pools=pools)  # type: ignore[arg-type]
    trainer._substitute_noise(run, batch)
    audio = batch.inputs["audio"]
    rows = audio.present.nonzero().flatten()
    alone = ~batch.inputs["image"].present[rows]
    changed = (audio.data != before).flatten(1).any(1)
    assert changed[~alone].float().mean() > 0.7, "p = 0.9: most eligible rows are replaced"
    assert not changed[alone].any(), "a sample's only modality is never replaced"
    for j in changed.nonzero().flatten().tolist():  # padding past a row's length is untouched
        length = int(audio.lengths[j])  # type: ignore[index]
        assert torch.equal(audio.data[j, :, length:], before[j, :, length:])


def test_training_saves_gates_and_substitution_and_drops_refused_inputs(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    cfg = copy.deepcopy(SMALL_CONFIG)
    cfg["modalities"] = {m: cfg["modalities"][m] for m in ("image", "audio")}
    cfg["modalities"]["audio"].update(
        quality={"speech": False}, substitute={"source": "sounds", "p": 0.3}
    )
    cfg["modalities"]["image"]["quality"] = True
    cfg["train"]["epochs"] = 1
    train, val = synthetic(32, missing=False)
    _noise_wavs(train.parent / "sounds")
    sf.write(train.parent / "a0.wav", np.zeros(2000, np.float32), 8000)  # a dead microphone
    result = Trainer(Config.from_dict(cfg), tmp_path / "art", progress=False).fit(train, val)
    saved = Config.from_file(tmp_path / "art" / "config.yaml").modalities["audio"]
    assert saved.quality is not None and saved.quality.params == {"speech": False}
    assert saved.substitute == SubstituteConfig("sounds", 0.3)
    assert set(result.artifact.quality_gates()) == {"image", "audio"}
    gates = result.artifact.quality_gates()
    manifest = Manifest.load(train, ("image", "audio"), "label")
    ds = MultimodalDataset(
        manifest, result.artifact.contracts, None, require_label=False, gates=gates
    )
    example = ds[0]
    assert set(example.inputs) == {"image"}  # type: ignore[union-attr]
    assert ds.low_quality(0)["audio"].check == "silence" and ds.low_quality(1) == {}
