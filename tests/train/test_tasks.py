"""TRAINERS: every task a config accepts has exactly one trainer."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfuse.core.config import Config
from polyfuse.core.errors import ConfigError
from polyfuse.train import TRAINERS, TrainRequest, trainer_for
from polyfuse.train.tasks import captioning, classify, contrastive


@pytest.mark.parametrize(
    ("task", "trainer"),
    [
        ("multiclass", classify),
        ("multilabel", classify),
        ("regression", classify),
        ("contrastive", contrastive),
        ("captioning", captioning),
    ],
)
def test_each_task_has_its_trainer(task: str, trainer: object) -> None:
    assert trainer_for(task) is trainer


def test_unknown_task_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="task: no trainer for 'clasify'; known: captioning"):
        trainer_for("clasify")
    assert len(TRAINERS) == 5


@pytest.mark.parametrize("task", ["contrastive", "captioning"])
def test_tasks_that_need_val_say_so_before_training(task: str, tmp_path: Path) -> None:
    config = Config.from_dict(
        {
            "task": task,
            "modalities": {
                "image": {"kind": "image", "encoder": "efficientnet_lite0"},
                "text": {"kind": "text", "encoder": "minilm"},
            },
        }
    )
    with pytest.raises(ConfigError, match="--val"):
        trainer_for(task)(TrainRequest(config, tmp_path / "t.jsonl", None, tmp_path / "out"))
