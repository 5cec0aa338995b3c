"""Image redaction: finding boxes filled or pixelated and blurred, metadata dropped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from polyfuse.core.errors import InvalidInputError
from polyfuse.guard.findings import Finding
from polyfuse.guard.geometry import clip_box
from polyfuse.guard.readers.ocr import DEFAULT_MAX_PIXELS, load_image

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from polyfuse.guard.readers.ocr import ImageInput


def redact_image(
    image: ImageInput,
    findings: Sequence[Finding],
    mode: Literal["fill", "blur"] = "fill",
    pad: int = 2,
    *,
    color: tuple[int, int, int] = (0, 0, 0),
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> PILImage.Image:
    """A redacted RGB copy of ``image``: every finding box (grown by ``pad`` px) filled
    with ``color`` or blurred beyond reading. Findings without a box are skipped.

    The copy carries no metadata (EXIF, XMP, text chunks are dropped), so saving it also
    removes what metadata findings pointed at. Save it with ``img.save(path)``.

    Raises:
        InvalidInputError: the image cannot be read, or ``mode`` is unknown.
    """
    from PIL import Image, ImageDraw, ImageFilter

    if mode not in ("fill", "blur"):
        raise InvalidInputError("image", f"unknown redaction mode {mode!r}", hint="fill or blur")
    rgb, _ = load_image(image, max_pixels=max_pixels)
    out = Image.fromarray(rgb.copy(), mode="RGB")
    h, w = rgb.shape[:2]
    draw = ImageDraw.Draw(out)
    for f in findings:
        box = f.location.box
        if box is None or box[2] <= box[0] or box[3] <= box[1]:
            continue
        x0, y0, x1, y1 = clip_box((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), w, h)
        if x1 <= x0 or y1 <= y0:
            continue
        if mode == "fill":
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=color)
        else:
            region = out.crop((x0, y0, x1, y1))
            # Pixelate then blur: a plain Gaussian blur of text can be partly undone.
            small = region.resize(
                (max(1, (x1 - x0) // 12), max(1, (y1 - y0) // 12)), Image.Resampling.BOX
            )
            region = small.resize(region.size, Image.Resampling.NEAREST)
            region = region.filter(ImageFilter.GaussianBlur(max(2, min(x1 - x0, y1 - y0) // 6)))
            out.paste(region, (x0, y0))
    return out
