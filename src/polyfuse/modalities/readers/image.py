"""Images: one Pillow decoder for the model, the firewall and serving.

Every encoded image is sniffed (`polyfuse.modalities.io.sniff`), its declared size checked
against ``max_pixels`` from the header before any pixel is decoded, decoded once, turned
upright by its EXIF orientation (phone photos store rotation there) and composited on
white when it has transparency (what a person sees), then returned as RGB uint8.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from polyfuse.core.errors import DependencyError, InvalidInputError
from polyfuse.modalities.readers.formats import describe, sniff

#: Encoded formats the image decoder reads.
IMAGE_FORMATS = frozenset({"png", "jpeg", "gif", "bmp", "tiff", "webp"})

RGBArray = NDArray[np.uint8]


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyError("pillow", "image decoding", "image") from exc
    return Image


@dataclass(frozen=True)
class DecodedImage:
    """One decoded image.

    Attributes:
        pixels: ``(H, W, 3)`` RGB uint8, upright, transparency composited on white.
        image: the `PIL.Image.Image` as stored (before the EXIF rotation), for readers of
            its metadata.
        format: the sniffed format (``png``, ``jpeg`` ...).
    """

    pixels: RGBArray
    image: Any
    format: str


def check_pixels(
    width: int,
    height: int,
    max_pixels: int,
    *,
    name: str = "image",
    field: str | None = None,
    path: Path | str | None = None,
) -> None:
    """Refuse an image with no pixels or more than ``max_pixels`` (a decompression bomb)."""
    if width <= 0 or height <= 0:
        raise InvalidInputError(
            name, f"image has no pixels ({width}x{height})", field=field, path=path
        )
    if width * height > max_pixels:
        raise InvalidInputError(
            name,
            f"image declares {width}x{height} = {width * height} pixels, more than "
            f"max_pixels={max_pixels} (possible decompression bomb)",
            field=field,
            path=path,
            hint="a tiny file declaring a huge size is a decompression bomb; "
            "raise max_pixels only for trusted large images",
        )


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    name: str = "image",
    field: str | None = None,
    path: Path | str | None = None,
) -> DecodedImage:
    """Decode an encoded image (PNG, JPEG, GIF, BMP, TIFF, WebP) to upright RGB.

    Raises:
        InvalidInputError: empty, not an image format, too many pixels, or undecodable.
    """
    if not data:
        raise InvalidInputError(name, "empty image data (0 bytes)", field=field, path=path)
    fmt = sniff(bytes(data[:64]))
    if fmt not in IMAGE_FORMATS:
        raise InvalidInputError(
            name,
            f"cannot decode the image: content is {describe(fmt)}, not a supported image "
            f"({', '.join(sorted(IMAGE_FORMATS))})",
            field=field,
            path=path,
        )
    pil = _pil()
    try:
        with warnings.catch_warnings():
            # Decoder warnings (corrupt EXIF, bomb warnings below max_pixels) are noise:
            # the pixel limit is checked from the header below.
            warnings.simplefilter("ignore")
            img = pil.open(io.BytesIO(bytes(data)))
            check_pixels(img.width, img.height, max_pixels, name=name, field=field, path=path)
            img.load()
            from PIL import ImageOps

            upright = ImageOps.exif_transpose(img) or img
            pixels = pixels_from_pil(upright, max_pixels=max_pixels, name=name, path=path)
    except InvalidInputError:
        raise
    except pil.DecompressionBombError as exc:
        raise InvalidInputError(
            name, f"image is too large (decompression bomb?): {exc}", field=field, path=path
        ) from exc
    except MemoryError as exc:
        raise InvalidInputError(
            name, "image is too large to decode", field=field, path=path
        ) from exc
    except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, struct.error ...
        raise InvalidInputError(
            name,
            f"cannot decode {fmt.upper()} image ({type(exc).__name__}: {exc})",
            field=field,
            path=path,
            hint="the file is truncated, corrupt or not an image format Pillow reads",
        ) from exc
    return DecodedImage(pixels, img, fmt)


def pixels_from_pil(
    img: Any,
    *,
    max_pixels: int,
    name: str = "image",
    field: str | None = None,
    path: Path | str | None = None,
) -> RGBArray:
    """``(H, W, 3)`` RGB uint8 of a `PIL.Image.Image`, transparency composited on white."""
    check_pixels(img.width, img.height, max_pixels, name=name, field=field, path=path)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        pil = _pil()
        rgba = img.convert("RGBA")
        img = pil.alpha_composite(pil.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def pixels_from_array(
    arr: NDArray[Any], *, max_pixels: int, name: str = "image", field: str | None = None
) -> RGBArray:
    """``(H, W, 3)`` RGB uint8 of a uint8 array ``(H, W)`` or ``(H, W, 1|3|4)`` (RGB order);
    an alpha channel is composited on white.

    Raises:
        InvalidInputError: not uint8, or not one of those shapes, or too many pixels.
    """
    if arr.dtype != np.uint8:
        raise InvalidInputError(
            name,
            f"array dtype is {arr.dtype}, expected uint8",
            field=field,
            hint="convert with (np.clip(a, 0, 1) * 255).astype(np.uint8) for float images",
        )
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InvalidInputError(
            name,
            f"array shape {arr.shape} is not HxW, HxWx1, HxWx3 or HxWx4",
            field=field,
            hint="RGB order",
        )
    check_pixels(int(arr.shape[1]), int(arr.shape[0]), max_pixels, name=name, field=field)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        comp = arr[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        arr = np.clip(np.rint(comp), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)
