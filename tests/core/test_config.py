"""Configs: parsing, defaults, errors that name the key, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyfuse.core.config import Config
from polyfuse.core.errors import ConfigError, RegistryError
from polyfuse.models.build import build_contracts
from tests.conftest import SMALL_CONFIG


def test_round_trip_and_sorted_modalities() -> None:
    config = Config.from_dict(SMALL_CONFIG)
    assert list(config.modalities) == ["audio", "image", "series", "text"]
    assert Config.from_dict(config.to_dict()) == config


def test_bare_names_and_yaml_scientific_strings(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "task: multiclass\nmodalities:\n  text: {kind: text, encoder: text_transformer}\n"
        "model: {fusion: late}\ntrain: {lr: 1e-3}\n"
    )  # PyYAML reads 1e-3 as a string
    config = Config.from_file(path)
    assert config.modalities["text"].encoder.name == "text_transformer"
    assert config.model.fusion.name == "late" and config.train.lr == 0.001


@pytest.mark.parametrize(
    ("patch", "key"),
    [
        ({"task": "ranking"}, "task"),
        ({"train": {"lr": -1}}, "train.lr"),
        ({"train": {"precison": "bf16"}}, "train.precison"),
        ({"train": {"epochs": "many"}}, "train.epochs"),
        ({"model": {"adapter": "conv"}}, "model.adapter"),
        ({"label": "image"}, "label"),
        ({"modalities": {}}, "modalities"),
        (
            {"modalities": {"x": {"kind": "image", "encoder": "image_cnn", "dropout": 1.5}}},
            "modalities.x.dropout",
        ),
    ],
)
def test_invalid_values_name_their_key(patch: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        Config.from_dict({**SMALL_CONFIG, **patch})
    assert err.value.key == key


def test_unknown_component_lists_choices() -> None:
    raw = {**SMALL_CONFIG, "modalities": {"x": {"kind": "image", "encoder": "resnet"}}}
    with pytest.raises(RegistryError, match="unknown encoder 'resnet'; known: audio_cnn"):
        build_contracts(Config.from_dict(raw))


def test_encoder_of_the_wrong_kind_is_refused() -> None:
    raw = {**SMALL_CONFIG, "modalities": {"x": {"kind": "audio", "encoder": "image_cnn"}}}
    with pytest.raises(ConfigError, match="reads 'image' inputs"):
        build_contracts(Config.from_dict(raw))


def test_encoder_defaults_fill_the_contract_and_config_overrides() -> None:
    raw = {
        **SMALL_CONFIG,
        "modalities": {
            "photo": {"kind": "image", "encoder": "efficientnet_lite0"},
            "thumb": {
                "kind": "image",
                "encoder": "efficientnet_lite0",
                "contract": {"size": [96, 96]},
            },
        },
    }
    contracts = build_contracts(Config.from_dict(raw))
    assert contracts["photo"].size == (224, 224) and contracts["photo"].channels == 3  # type: ignore[attr-defined]
    assert contracts["thumb"].size == (96, 96)  # type: ignore[attr-defined]
