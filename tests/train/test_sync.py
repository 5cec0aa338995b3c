"""Training the learned sync model on in-sync clips built here (a square that moves as the
sound swells), then finding known offsets it never saw; saving and loading it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polyfuse.core.errors import ArtifactError, ConfigError, InvalidInputError
from polyfuse.models.sync import LearnedSync, SyncSettings, sync_inputs
from polyfuse.train.sync import SyncClip, SyncTraining, fit_sync
from tests.modalities.test_sync import RATE, clip


@pytest.fixture(scope="module")
def model() -> LearnedSync:
    import torch

    torch.manual_seed(0)
    clips = [SyncClip(*clip(0, seed=s), RATE) for s in range(16)]
    return fit_sync(clips, training=SyncTraining(epochs=15, batch_size=8), progress=False)


@pytest.mark.parametrize("offset", [0, 120, -120, 400, -400])
def test_learned_sync_finds_offsets_on_clips_it_never_saw(model: LearnedSync, offset: int) -> None:
    errors = []
    for seed in (50, 51, 52):
        frames, times, wave = clip(offset, seed=seed)
        est = model.estimate(frames, times, wave, RATE)
        assert est is not None and est.method == "learned"
        errors.append(abs(est.offset_ms - offset))
    assert np.median(errors) <= 40, errors


def test_training_records_metrics_and_the_model_round_trips(
    model: LearnedSync, tmp_path: Path
) -> None:
    assert model.metrics["clips"] == 16 and 0 <= model.metrics["final_lag_accuracy"] <= 1
    frames, times, wave = clip(200, seed=60)
    before = model.estimate(frames, times, wave, RATE)
    loaded = LearnedSync.load(model.save(tmp_path / "sync"))
    after = loaded.estimate(frames, times, wave, RATE)
    assert before is not None and after is not None
    assert after.offset_ms == pytest.approx(before.offset_ms)
    assert loaded.settings == model.settings
    assert model.estimate(frames, times, None, RATE) is None


def test_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no sync model"):
        LearnedSync.load(tmp_path)
    with pytest.raises(ConfigError, match="at least 2"):
        fit_sync([SyncClip(*clip(0), RATE)], progress=False)
    with pytest.raises(ConfigError, match="odd"):
        SyncSettings(kernel=4)
    with pytest.raises(ConfigError):
        SyncTraining(shift_share=2)
    frames, times, wave = clip(0)
    with pytest.raises(InvalidInputError, match="too short"):
        sync_inputs(SyncSettings(), frames, times, wave[:100], RATE)
    with pytest.raises(InvalidInputError, match="timestamp per frame"):
        sync_inputs(SyncSettings(), frames, times[:-1], wave, RATE)
    rate8k = sync_inputs(SyncSettings(), frames, times, wave[::2], RATE // 2)
    assert rate8k.audio.shape[1] == SyncSettings().n_mels
