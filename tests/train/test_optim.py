"""Per-modality parameter groups and the warm-up + cosine schedule."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

from polyfuse.core.config import Config
from polyfuse.heads.tasks import MulticlassTask
from polyfuse.models.build import build_contracts, build_model
from polyfuse.train.optim import param_groups, warmup_cosine
from tests.conftest import SMALL_CONFIG


def test_groups_carry_per_modality_rates_and_skip_frozen() -> None:
    raw = {
        **SMALL_CONFIG,
        "modalities": {
            **SMALL_CONFIG["modalities"],
            "image": {
                **SMALL_CONFIG["modalities"]["image"],
                "encoder_lr": 1e-4,
                "adapter_lr": 2e-4,
            },
        },
    }
    config = Config.from_dict(raw)
    contracts = build_contracts(config)
    model = build_model(config, contracts, MulticlassTask(["a", "b"]))
    model.encoders["audio"].freeze()
    groups = {g["name"]: g for g in param_groups(model, config)}
    assert groups["image/encoder"]["lr"] == 1e-4 and groups["image/adapter"]["lr"] == 2e-4
    assert groups["fusion"]["lr"] == config.train.lr
    assert "audio/encoder" not in groups and "audio/adapter" in groups
    assert all(g["weight_decay"] == 0 for n, g in groups.items() if n.endswith("no_decay"))
    grouped = {id(p) for g in groups.values() for p in g["params"]}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert grouped == trainable, "every trainable parameter is in exactly one group"


def test_an_encoder_rate_of_zero_keeps_its_weights_as_initialised(tmp_path: Path) -> None:
    """``encoder_lr: 0`` leaves the encoder out of the optimiser: after training its weights
    are still the initial ones, while its adapter learned."""
    from polyfuse.core.device import seed_everything
    from polyfuse.train import Trainer
    from tests.conftest import write_manifest, write_synthetic

    raw = copy.deepcopy(SMALL_CONFIG)
    raw["modalities"]["audio"]["encoder_lr"] = 0.0
    config = Config.from_dict(raw)
    model = build_model(config, build_contracts(config), MulticlassTask(["a", "b"]))
    groups = {g["name"] for g in param_groups(model, config)}
    assert "audio/encoder" not in groups and "audio/adapter" in groups

    rows = write_synthetic(tmp_path / "data", 40)
    train = write_manifest(tmp_path / "data" / "train.jsonl", rows[:30])
    val = write_manifest(tmp_path / "data" / "val.jsonl", rows[30:])
    torch.manual_seed(config.train.seed)
    trainer = Trainer(config, tmp_path / "art", progress=False)
    result = trainer.fit(train, val)
    fresh = Config.from_dict(raw)
    seed_everything(fresh.train.seed)
    initial = build_model(fresh, result.artifact.contracts, result.artifact.task)
    trained = result.artifact.model
    for (name, p0), (_, p1) in zip(
        initial.encoders["audio"].named_parameters(),
        trained.encoders["audio"].named_parameters(),
        strict=True,
    ):
        assert torch.equal(p0, p1.cpu()), name
    moved = [
        not torch.equal(a, b.cpu())
        for a, b in zip(
            initial.encoders["image"].parameters(),
            trained.encoders["image"].parameters(),
            strict=True,
        )
    ]
    assert any(moved), "the image encoder, at the shared rate, did train"


def test_schedule_warms_up_then_decays_to_floor() -> None:
    f = warmup_cosine(total_steps=100, warmup_fraction=0.1, min_ratio=0.05)
    assert f(0) == 0.1 and f(9) == 1.0
    assert math.isclose(f(10), 1.0) and f(55) < f(30) < 1.0
    assert math.isclose(f(100), 0.05)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, f)
    assert math.isclose(sched.get_last_lr()[0], 0.1)
