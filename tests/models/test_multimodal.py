"""The assembled model: staged encode/fuse, missing modalities, gradients, prior answers."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from polyfuse.core.config import Config
from polyfuse.core.errors import InvalidInputError
from polyfuse.data import Collator, Manifest, MultimodalDataset
from polyfuse.fusion import FUSIONS
from polyfuse.heads.tasks import MulticlassTask
from polyfuse.models.build import build_contracts, build_model
from polyfuse.models.multimodal import MultimodalModel
from tests.conftest import SMALL_CONFIG


def _model_and_batch(manifest: Path, fusion: str = "gated") -> tuple[MultimodalModel, object, int]:
    raw = {
        **SMALL_CONFIG,
        "model": {
            "dim": 16,
            "fusion": {"name": fusion, **({"heads": 2} if fusion == "cross_attention" else {})},
        },
    }
    config = Config.from_dict(raw)
    m = Manifest.load(manifest, list(config.modalities))
    task = MulticlassTask.fit([r.label for r in m.rows])
    contracts = build_contracts(config)
    contracts["series"] = contracts["series"].fit(
        [contracts["series"].load(r.values["series"], base_dir=m.base_dir) for r in m.rows]
    )
    ds = MultimodalDataset(m, contracts, task)
    batch = Collator(contracts)([ds[i] for i in range(8)])
    torch.manual_seed(0)
    model = build_model(config, contracts, task, torch.log(torch.tensor([0.5, 0.3, 0.2])))
    return model, batch, task.num_outputs


@pytest.mark.parametrize("fusion", FUSIONS.list())
def test_every_presence_subset_gives_finite_logits(
    synthetic: Callable[..., tuple[Path, Path]], fusion: str
) -> None:
    train, _ = synthetic(20, missing=False)
    model, batch, k = _model_and_batch(train, fusion)
    model.eval()
    encoded = model.encode(batch.inputs, batch.size)  # encoders run once ...
    for keep in itertools.product([False, True], repeat=4):  # ... fusion runs per subset
        present = {
            m: torch.full((batch.size,), k_, dtype=torch.bool)
            for m, k_ in zip(model.modalities, keep, strict=True)
        }
        out = model.fuse(encoded, present)
        assert out.logits.shape == (batch.size, k) and torch.isfinite(out.logits).all()
        if not any(keep):
            assert torch.allclose(out.logits, model.prior_logits.expand(batch.size, -1)), (
                "no modality at all: the model answers with the label prior"
            )


def test_staged_forward_equals_full_forward(synthetic: Callable[..., tuple[Path, Path]]) -> None:
    train, _ = synthetic(20)
    model, batch, _ = _model_and_batch(train)
    model.eval()
    staged = model.fuse(model.encode(batch.inputs, batch.size))
    assert torch.equal(staged.logits, model(batch.inputs, batch.size).logits)


def test_gradients_reach_trainable_parts_only(synthetic: Callable[..., tuple[Path, Path]]) -> None:
    train, _ = synthetic(20)
    model, batch, _ = _model_and_batch(train)
    model.encoders["image"].freeze()
    model.train()
    out = model(batch.inputs, batch.size)
    (out.logits.sum() + sum(v.sum() for v in out.unimodal_logits.values())).backward()
    for name, p in model.named_parameters():
        if name.startswith("encoders.image."):
            assert p.grad is None, f"frozen {name} got a gradient"
        elif p.requires_grad and "placeholder" not in name:
            assert p.grad is not None, f"{name} got no gradient"


def test_unknown_modality_in_batch_is_a_typed_error(
    synthetic: Callable[..., tuple[Path, Path]],
) -> None:
    train, _ = synthetic(20)
    model, batch, _ = _model_and_batch(train)
    with pytest.raises(InvalidInputError, match="no modality 'video'"):
        model.encode({"video": batch.inputs["image"]}, batch.size)
