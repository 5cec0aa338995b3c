"""Which frames mattered: each frame of a real MP4 left out in turn through a small video +
text model (untrained weights: the arithmetic, not the model, is under test)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polyfuse.core.config import Config
from polyfuse.core.errors import InvalidInputError
from polyfuse.heads.tasks import MulticlassTask
from polyfuse.inference.frames import frame_effects
from polyfuse.models.build import build_contracts, build_model
from tests.videos import frame_at, write_clip

CONFIG = {
    "task": "multiclass",
    "modalities": {
        "video": {
            "kind": "video",
            "encoder": {"name": "video_frames", "frame_params": {"widths": [4, 8]}},
            "contract": {"frames": 4, "size": [16, 16]},
        },
        "text": {
            "kind": "text",
            "encoder": {"name": "text_transformer", "width": 16, "layers": 1, "heads": 2},
        },
    },
    "model": {"dim": 16, "fusion": "concat"},
}


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, ...]:
    torch.manual_seed(0)
    config = Config.from_dict(CONFIG)
    contracts = build_contracts(config)
    contracts = {m: c.fit(["a cat", "a dog"]) if c.needs_fit else c for m, c in contracts.items()}
    task = MulticlassTask.fit(["cat", "dog", "cow"])
    model = build_model(config, contracts, task)
    d = tmp_path_factory.mktemp("v")
    moving = write_clip(d / "moving.mp4", audio=None).read_bytes()
    still = write_clip(d / "still.mp4", pictures=[frame_at(3)] * 20, audio=None).read_bytes()
    return model, contracts, task, moving, still


def test_each_frame_left_out_gives_its_effect_on_the_answer(parts: tuple[object, ...]) -> None:
    model, contracts, task, moving, still = parts
    fx = frame_effects(model, contracts, task, {"video": moving, "text": "a cat"}, "video")  # type: ignore[arg-type]
    assert len(fx.times) == len(fx.effects) == 4
    assert fx.times == sorted(fx.times) and 0 <= fx.times[0] < fx.times[-1] < 2.0
    assert fx.label in ("cat", "dog", "cow") and 0 < fx.probability <= 1
    assert any(abs(e) > 0 for e in fx.effects)  # different frames, different effects
    same = frame_effects(model, contracts, task, {"video": still}, "video")  # type: ignore[arg-type]
    assert np.allclose(same.effects, 0.0, atol=1e-6)  # leaving out one of equal frames: no change
    body = fx.to_dict()
    assert set(body) == {"label", "probability", "frames"} and len(body["frames"]) == 4


def test_errors_name_the_video_modalities(parts: tuple[object, ...]) -> None:
    model, contracts, task, *_ = parts
    with pytest.raises(InvalidInputError, match="not a video modality"):
        frame_effects(model, contracts, task, {"text": "a cat"}, "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="no video"):
        frame_effects(model, contracts, task, {"text": "a cat"}, "video")  # type: ignore[arg-type]
