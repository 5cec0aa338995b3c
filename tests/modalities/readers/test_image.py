"""The one image decoder: EXIF orientation, transparency, limits, and the same pixels for
the firewall (`load_image`) and the model (`ImageContract.load`)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from polyfuse.core.errors import InvalidInputError
from polyfuse.guard.readers.ocr import load_image
from polyfuse.modalities import ImageContract
from polyfuse.modalities.readers.image import decode_image, pixels_from_array

RED, BLUE = (255, 0, 0), (0, 0, 255)


def _rotated_jpeg(orientation: int) -> bytes:
    """A 40x20 image, left half red and right half blue, stored with an EXIF orientation."""
    img = Image.new("RGB", (40, 20), RED)
    img.paste(BLUE, (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif, quality=95)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("orientation", "shape", "top", "bottom"),
    [
        (1, (20, 40, 3), RED, RED),  # as stored: left red, right blue
        (6, (40, 20, 3), RED, BLUE),  # shown turned 90 degrees clockwise: left side on top
        (8, (40, 20, 3), BLUE, RED),  # shown turned 90 degrees anticlockwise: right side on top
        (3, (20, 40, 3), BLUE, BLUE),  # shown upside down: the right side is on the left
    ],
)
def test_exif_rotated_jpeg_decodes_upright_in_firewall_and_model(
    orientation: int, shape: tuple[int, int, int], top: tuple[int, ...], bottom: tuple[int, ...]
) -> None:
    data = _rotated_jpeg(orientation)
    firewall, _ = load_image(data)
    model = ImageContract.create("photo", {}).load(data)
    np.testing.assert_array_equal(firewall, model)
    assert firewall.shape == shape
    left_top, left_bottom = firewall[1, 1].astype(int), firewall[-2, 1].astype(int)
    assert np.abs(left_top - top).max() < 40 and np.abs(left_bottom - bottom).max() < 40


def test_transparency_is_composited_on_white_for_everyone() -> None:
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque
    rgba[1, 1] = (10, 20, 30, 0)  # fully transparent: shows the white page
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    decoded = decode_image(buf.getvalue(), max_pixels=100).pixels
    assert decoded[0, 0].tolist() == [10, 20, 30] and decoded[1, 1].tolist() == [255, 255, 255]
    np.testing.assert_array_equal(decoded, pixels_from_array(rgba, max_pixels=100))
    np.testing.assert_array_equal(decoded, ImageContract.create("p", {}).load(buf.getvalue()))


def test_grey_contract_takes_pillow_luma_of_the_same_pixels() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 90, 90]]], np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    grey = ImageContract.create("p", {"channels": 1}).load(buf.getvalue())
    # ITU-R 601 luma, L = (R * 19595 + G * 38470 + B * 7471 + 32768) >> 16 as Pillow computes it
    assert grey[:, :, 0].tolist() == [[76, 150, 29, 90]]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty image data"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40), "WAV audio, not a supported image"),
        (b"BMW is a car maker", "text, not a supported image"),
        (b"\x89PNG\r\n\x1a\n" + bytes(20), "cannot decode PNG image"),
    ],
)
def test_undecodable_bytes_raise_one_typed_error(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason) as err:
        decode_image(data, max_pixels=100, name="photo", field="photo")
    assert err.value.modality == "photo"


def test_pixel_limit_is_checked_from_the_header() -> None:
    buf = io.BytesIO()
    Image.new("L", (100, 100)).save(buf, format="PNG")
    with pytest.raises(InvalidInputError, match="max_pixels=9999 \\(possible decompression bomb"):
        decode_image(buf.getvalue(), max_pixels=9_999)
    assert decode_image(buf.getvalue(), max_pixels=10_000).pixels.shape == (100, 100, 3)
