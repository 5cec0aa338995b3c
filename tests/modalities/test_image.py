"""Image contract: decoding, validation, preprocessing, collation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from polyfuse.core.errors import ConfigError, ContractError, InvalidInputError
from polyfuse.modalities import ImageContract, contract_from_dict, create_contract


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def contract() -> ImageContract:
    return ImageContract.create("photo", {"size": [4, 6], "channels": 3})


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF"])
def test_when_supported_format_then_loads_as_uint8_hwc(
    tmp_path: Path, contract: ImageContract, fmt: str
) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    Image.fromarray(np.full((5, 7, 3), 200, np.uint8)).save(path, format=fmt)
    arr = contract.load(path.name, base_dir=tmp_path)
    assert arr.shape == (5, 7, 3) and arr.dtype == np.uint8


def test_preprocess_resizes_and_normalises_by_hand() -> None:
    c = ImageContract.create("g", {"size": [2, 2], "channels": 1, "mean": [0.5], "std": [0.25]})
    arr = np.array([[0, 255], [255, 0]], np.uint8)[:, :, None]
    x = c.preprocess(arr)
    # (0 - 0.5) / 0.25 = -2 and (1 - 0.5) / 0.25 = 2
    assert torch.allclose(x, torch.tensor([[[-2.0, 2.0], [2.0, -2.0]]]))


def test_collate_stacks_present_items_only(contract: ImageContract) -> None:
    items = [contract.preprocess(np.zeros((3, 3, 3), np.uint8)) for _ in range(2)]
    batch = contract.collate(items, torch.tensor([True, False, True]))
    assert batch.data.shape == (2, 3, 4, 6) and batch.lengths is None
    assert batch.present.tolist() == [True, False, True]


def test_when_grayscale_array_given_to_rgb_contract_then_channels_repeat(
    contract: ImageContract,
) -> None:
    arr = contract.load(np.full((3, 3), 7, np.uint8))
    assert arr.shape == (3, 3, 3) and (arr == 7).all()


def test_when_truncated_png_then_typed_error_names_file(
    tmp_path: Path, contract: ImageContract
) -> None:
    data = _png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError) as err:
        contract.load("cut.png", field="photo", base_dir=tmp_path)
    assert err.value.modality == "photo" and err.value.path.endswith("cut.png")
    assert "decode" in err.value.reason


def test_when_pixels_exceed_limit_then_refused_before_decoding(tmp_path: Path) -> None:
    c = ImageContract.create("photo", {"max_pixels": 10_000})
    Image.new("L", (200, 200)).save(tmp_path / "big.png")  # 40,000 pixels
    with pytest.raises(InvalidInputError, match="decompression bomb"):
        c.load(tmp_path / "big.png")


def test_when_wav_renamed_png_then_error_says_what_it_is(
    tmp_path: Path, contract: ImageContract
) -> None:
    (tmp_path / "x.png").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40))
    with pytest.raises(InvalidInputError, match="WAV audio, not a supported image"):
        contract.load(tmp_path / "x.png")


def test_when_file_missing_then_error_has_hint(tmp_path: Path, contract: ImageContract) -> None:
    with pytest.raises(InvalidInputError, match="file not found") as err:
        contract.load("nope.png", base_dir=tmp_path)
    assert "relative to the manifest" in str(err.value)


def test_when_bad_parameters_then_config_error_names_key() -> None:
    with pytest.raises(ConfigError, match=r"modalities\.photo\.contract\.channels"):
        create_contract("photo", "image", {"channels": 2})
    with pytest.raises(ConfigError, match="did you mean 'size'"):
        create_contract("photo", "image", {"sizes": [3, 3]})


def test_round_trip_and_version_check(contract: ImageContract) -> None:
    saved = contract.to_dict()
    assert contract_from_dict(saved) == contract
    with pytest.raises(ContractError, match="v99"):
        contract_from_dict({**saved, "version": 99})
