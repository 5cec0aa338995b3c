"""Image reader of the multimodal firewall: pixels, metadata text and OCR words.

`load_image` reads an image (path, bytes, `PIL.Image.Image` or ``HxWx3`` uint8 array) with
the text of its metadata (EXIF, XMP, PNG text chunks, JPEG comments); `ocr_words` /
`ocr_rgb` run OCR (rapidocr, PP-OCR ONNX weights shipped in its wheel, offline; or
tesseract) and `OcrText` joins the words into text with a character -> box map;
`text_regions` runs only the detection half, so a caller can recognise just the regions it
needs (`ocr_region`). OCR results are cached by a digest of the pixels (`OcrCache`, one
per `ModelCache`). The scanner that runs detectors over all of it is
`polyfuse.guard.scanners.image.ImageScanner`.

Heavy dependencies (rapidocr, onnxruntime) are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from polyfuse.core.errors import ConfigError, DependencyError, InvalidInputError
from polyfuse.guard.geometry import Box, clip_box
from polyfuse.guard.models import SHARED_MODELS, ModelCache
from polyfuse.modalities.io import read_source
from polyfuse.modalities.readers.image import decode_image, pixels_from_array, pixels_from_pil

if TYPE_CHECKING:
    from typing import TypeAlias

    from PIL import Image as PILImage

    #: What `ImageScanner.scan`, `ocr_words` and `redact_image` accept.
    ImageInput: TypeAlias = str | Path | bytes | PILImage.Image | NDArray[np.uint8]

RGBArray = NDArray[np.uint8]


#: Default cap on decoded pixels (a decompression bomb declares far more).
DEFAULT_MAX_PIXELS = 40_000_000

#: The OCR engines `ocr_rgb` knows.
OcrEngine = Literal["rapidocr", "tesseract"]

#: Longer side (pixels) above which rapidocr's text detection runs on a downscaled copy.
#: Below it detection runs at the image's own size: rapidocr's default scales the *shorter*
#: side up to 736 px, which made a 1118x137 screenshot a 6000x736 detection input and 94 %
#: of the scan time (docs/benchmarks.md, "Image scan speed").
DET_MAX_SIDE = 2000

#: Most onnxruntime intra-op threads one OCR session takes by default: a scanner shares the
#: serving process with the encoders, so it does not claim every core.
MAX_OCR_THREADS = 4

#: OCR results `OcrCache` keeps by default.
OCR_CACHE_ITEMS = 256

_ENGINE_LOCK = threading.Lock()


# --------------------------------------------------------------------------- loading


def load_image(
    image: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[RGBArray, dict[str, str]]:
    """Decode ``image`` to an ``HxWx3`` RGB uint8 array and collect its metadata text.

    Args:
        image: a path, encoded bytes, a `PIL.Image.Image` or an ``HxW``/``HxWx3``/``HxWx4``
            uint8 array (RGB order).
        max_pixels: refuse images with more pixels than this (decompression bombs).

    Returns:
        ``(rgb, metadata)`` where ``metadata`` maps a key (``exif:ImageDescription``,
        ``png:Comment``, ``xmp``, ``jpeg:comment`` ...) to its text.

    Raises:
        InvalidInputError: the input is not a readable image, is empty or too large.
    """
    if isinstance(image, np.ndarray):
        return pixels_from_array(image, max_pixels=max_pixels), {}
    from PIL import Image

    if isinstance(image, Image.Image):
        return pixels_from_pil(image, max_pixels=max_pixels), _metadata_text(image)
    if not isinstance(image, (str, Path, bytes, bytearray, memoryview)):
        raise InvalidInputError(
            "image",
            f"unsupported image type {type(image).__name__}",
            hint="pass a path, bytes, a PIL.Image or an HxWx3 uint8 numpy array",
        )
    src = read_source(image, modality="image", field=None, base_dir=None, max_bytes=sys.maxsize)
    decoded = decode_image(src.data, max_pixels=max_pixels, path=src.path)
    return decoded.pixels, _metadata_text(decoded.image)


# --------------------------------------------------------------------------- metadata

_EXIF_TEXT_TAGS = {
    0x010E: "ImageDescription",
    0x010F: "Make",
    0x0110: "Model",
    0x0131: "Software",
    0x013B: "Artist",
    0x8298: "Copyright",
    0x9C9B: "XPTitle",
    0x9C9C: "XPComment",
    0x9C9D: "XPAuthor",
    0x9C9E: "XPKeywords",
    0x9C9F: "XPSubject",
}
_EXIF_IFD_TEXT_TAGS = {0x9286: "UserComment", 0xA430: "CameraOwnerName"}
_XMP_KEYS = ("XML:com.adobe.xmp", "xmp")


def _decode_text(value: Any, *, utf16: bool = False) -> str:
    if isinstance(value, str):
        return value.strip("\x00").strip()
    if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
        value = bytes(v & 0xFF for v in value)
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        if utf16:
            return raw.decode("utf-16-le", errors="replace").strip("\x00").strip()
        # EXIF UserComment: 8-byte character code then the text.
        head = raw[:8]
        if head.startswith(b"UNICODE"):
            body = raw[8:]
            for enc in ("utf-16-be", "utf-16-le"):
                text = body.decode(enc, errors="replace").strip("\x00").strip()
                if text.isprintable():
                    return text
            return body.decode("utf-16-le", errors="replace").strip("\x00").strip()
        if head.startswith((b"ASCII\x00", b"JIS\x00", b"\x00" * 8)):
            raw = raw[8:]
        return raw.decode("utf-8", errors="replace").strip("\x00").strip()
    return ""


def _xmp_text(value: Any) -> str:
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    # Text nodes and attribute values; the tags themselves are not prose.
    parts = re.findall(r">([^<>]+)<", text)
    parts += re.findall(r'="([^"]{8,})"', text)
    words = [p.strip() for p in parts if p.strip() and not p.strip().startswith("uuid:")]
    return "\n".join(words)


def _exif_text(pil: PILImage.Image) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        exif = pil.getexif()
    except Exception:  # malformed EXIF is not fatal for the pixels
        return out
    if not exif:
        return out
    for tag, name in _EXIF_TEXT_TAGS.items():
        if tag in exif:
            text = _decode_text(exif[tag], utf16=name.startswith("XP"))
            if text:
                out[f"exif:{name}"] = text
    try:
        ifd = exif.get_ifd(0x8769)
    except Exception:
        return out
    for tag, name in _EXIF_IFD_TEXT_TAGS.items():
        if tag in ifd:
            text = _decode_text(ifd[tag])
            if text:
                out[f"exif:{name}"] = text
    return out


_SKIP_INFO = {"exif", "icc_profile", "dpi", "gamma", "transparency", "aspect", "srgb"}


def _metadata_text(pil: PILImage.Image) -> dict[str, str]:
    """Free-text metadata fields of ``pil`` (keys as in `Location.source` suffixes)."""
    fmt = (pil.format or "image").lower()
    out = _exif_text(pil)
    info = dict(pil.info)
    for xmp_key in _XMP_KEYS:
        if xmp_key in info:
            text = _xmp_text(info.pop(xmp_key))
            if text:
                out["xmp"] = text
    if "comment" in info:
        text = _decode_text(info.pop("comment"))
        if text:
            out[f"{fmt}:comment"] = text
    for key, value in info.items():
        if not isinstance(key, str) or key.lower() in _SKIP_INFO or key == "chromaticity":
            continue
        if isinstance(value, str) or (
            isinstance(value, bytes) and fmt == "png" and len(value) < 1_000_000
        ):
            text = _decode_text(value)
            if text and any(c.isalpha() for c in text):
                out[f"{fmt}:{key}"] = text
    return out


# --------------------------------------------------------------------------- OCR


@dataclass(frozen=True)
class OcrWord:
    """One OCR word.

    Attributes:
        text: the word.
        box: ``(x0, y0, x1, y1)`` pixel box (x1/y1 exclusive); for rapidocr the
            recogniser's CTC-aligned word box (grown by a quarter of the line height), or,
            where those do not split the line as whitespace does, the share of the line
            box proportional to the word's character position in the line.
        score: the recogniser's confidence of the word's line, in [0, 1].
        line: index of the OCR line the word belongs to.
    """

    text: str
    box: Box
    score: float
    line: int = 0


def default_ocr_threads(cpus: int | None = None) -> int:
    """onnxruntime intra-op threads for OCR: half the cores this process may use (its CPU
    affinity), at least 1 and at most `MAX_OCR_THREADS`. The other half is left to the
    rest of a serving process (encoders, event loop, other scans): on 2 busy cores one
    OCR thread read the PII benchmark images faster than two (docs/benchmarks.md)."""
    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not on Linux
            cpus = os.cpu_count() or 1
    return max(1, min(MAX_OCR_THREADS, cpus // 2))


@dataclass
class _RapidOcr:
    """A rapidocr engine and the lock its calls take: a call's options (``use_rec``,
    ``return_word_box`` ...) are stored on the engine until the next call changes them,
    so a detection-only call must not overlap a full read in another thread."""

    engine: Any
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, bgr: NDArray[np.uint8], *, rec: bool) -> Any:
        with self.lock:
            return self.engine(bgr, use_det=True, use_cls=False, use_rec=rec, return_word_box=rec)


def _rapidocr_engine(models: ModelCache | None = None, threads: int | None = None) -> _RapidOcr:
    cache = SHARED_MODELS if models is None else models
    n = threads or default_ocr_threads()
    return cache.get(("rapidocr", n), lambda: _load_rapidocr(n))


def _load_rapidocr(threads: int) -> _RapidOcr:
    with _ENGINE_LOCK:
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:  # pragma: no cover - rapidocr is a guard dependency
            raise DependencyError("rapidocr", "image OCR", "guard") from exc
        return _RapidOcr(
            RapidOCR(
                params={
                    "Global.log_level": "error",
                    # Detect at the image's own size (downscaled past DET_MAX_SIDE only);
                    # callers that want small text larger upscale the input themselves.
                    "Det.limit_type": "max",
                    "Det.limit_side_len": DET_MAX_SIDE,
                    "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                }
            )
        )


def _split_line(
    text: str, quad: NDArray[Any], score: float, line: int, w: int, h: int
) -> list[OcrWord]:
    """Words of one OCR line, each with the part of the line quad its characters take."""
    p0, p1, p2, p3 = (np.asarray(p, dtype=np.float64) for p in quad[:4])
    n = max(len(text), 1)
    words = []
    for m in re.finditer(r"\S+", text):
        t0, t1 = m.start() / n, m.end() / n
        pts = np.stack(
            [p0 + t0 * (p1 - p0), p0 + t1 * (p1 - p0), p3 + t0 * (p2 - p3), p3 + t1 * (p2 - p3)]
        )
        box = clip_box((pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()), w, h)
        words.append(OcrWord(m.group(), box, float(score), line))
    return words


def _aligned_words(
    text: str, word_results: Any, score: float, line: int, w: int, h: int
) -> list[OcrWord] | None:
    """Words from rapidocr's CTC-aligned word boxes, when they split the line the same
    way as whitespace does (else ``None``: use the proportional split)."""
    try:
        items = [
            (str(t), np.asarray(q, dtype=np.float64).reshape(-1, 2)) for t, _s, q in word_results
        ]
    except (TypeError, ValueError):
        return None
    if [t for t, _ in items] != text.split() or not items:
        return None
    # CTC boxes end at the last character's peak; grow them by a quarter of the line
    # height so redaction covers the whole glyphs.
    quads = [q for _, q in items]
    line_h = float(np.median([q[:, 1].max() - q[:, 1].min() for q in quads]))
    grow = 0.25 * line_h
    return [
        OcrWord(
            t,
            clip_box(
                (q[:, 0].min() - grow, q[:, 1].min(), q[:, 0].max() + grow, q[:, 1].max()), w, h
            ),
            score,
            line,
        )
        for t, q in items
    ]


def _rapidocr_words(
    rgb: RGBArray, models: ModelCache | None = None, threads: int | None = None
) -> list[OcrWord]:
    engine = _rapidocr_engine(models, threads)
    h, w = rgb.shape[:2]
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    # No text-direction classifier: it turns long upright lines upside down ("Ignore any
    # previous ..." read as "lne , us rs pe suotsus ..."); EXIF orientation is applied on load.
    result = engine(bgr, rec=True)
    boxes = getattr(result, "boxes", None)
    txts = getattr(result, "txts", None)
    scores = getattr(result, "scores", None)
    word_results = getattr(result, "word_results", None)
    if boxes is None or txts is None:
        return []
    if word_results is None or len(word_results) != len(txts):
        word_results = [None] * len(txts)
    words: list[OcrWord] = []
    order = sorted(
        range(len(txts)), key=lambda i: (float(np.min(boxes[i][:, 1])), float(boxes[i][0][0]))
    )
    for line, i in enumerate(order):
        score = float(scores[i]) if scores is not None else 1.0
        text = str(txts[i])
        aligned = (
            _aligned_words(text, word_results[i], score, line, w, h)
            if word_results[i] is not None
            else None
        )
        words.extend(aligned or _split_line(text, np.asarray(boxes[i]), score, line, w, h))
    return words


def _tesseract_words(rgb: RGBArray) -> list[OcrWord]:
    try:
        import pytesseract  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError as exc:
        raise DependencyError("pytesseract", "Tesseract OCR (engine='tesseract')", "guard") from exc
    from PIL import Image

    h, w = rgb.shape[:2]
    data = pytesseract.image_to_data(Image.fromarray(rgb), output_type=pytesseract.Output.DICT)
    words: list[OcrWord] = []
    lines: dict[tuple[int, int, int], int] = {}
    for i, text in enumerate(data["text"]):
        conf = float(data["conf"][i])
        if not str(text).strip() or conf < 0:
            continue
        key = (int(data["block_num"][i]), int(data["par_num"][i]), int(data["line_num"][i]))
        line = lines.setdefault(key, len(lines))
        x, y = int(data["left"][i]), int(data["top"][i])
        box = clip_box((x, y, x + int(data["width"][i]), y + int(data["height"][i])), w, h)
        words.append(OcrWord(str(text).strip(), box, conf / 100.0, line))
    return words


def _check_engine(engine: str) -> None:
    if engine not in ("rapidocr", "tesseract"):
        raise ConfigError(
            "engine", f"unknown OCR engine {engine!r}", hint="use 'rapidocr' or 'tesseract'"
        )


class OcrCache:
    """OCR results keyed by a digest of the pixels (and the engine and the pass), least
    recently used dropped past ``max_items``; safe to share between threads.

    The same upload scanned twice (a retry, a re-post, the same image in two requests)
    is read once. Keys hash the decoded pixels, so two encodings of the same pixels share
    an entry and any change to a pixel misses.
    """

    def __init__(self, max_items: int = OCR_CACHE_ITEMS) -> None:
        if max_items < 0:
            raise ConfigError("max_items", f"must be >= 0, got {max_items}")
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(rgb: RGBArray, *parts: str) -> tuple[str, ...]:
        """``(digest of shape and pixels, *parts)``."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(repr(rgb.shape).encode())
        digest.update(np.ascontiguousarray(rgb).data)
        return (digest.hexdigest(), *parts)

    def get(self, key: tuple[str, ...]) -> Any | None:
        """The stored result under ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            if key not in self._items:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key]

    def put(self, key: tuple[str, ...], value: Any) -> None:
        """Store ``value`` under ``key``, dropping the least recently used past the cap."""
        if self.max_items == 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def ocr_cache(models: ModelCache | None = None) -> OcrCache:
    """The `OcrCache` kept in ``models`` (default `SHARED_MODELS`)."""
    return (SHARED_MODELS if models is None else models).get(("ocr-cache",), OcrCache)


def ocr_rgb(
    rgb: RGBArray,
    engine: str = "rapidocr",
    models: ModelCache | None = None,
    *,
    threads: int | None = None,
) -> list[OcrWord]:
    """`ocr_words` on an already decoded RGB array (no copy, no validation); the OCR
    engine and the result cache (`ocr_cache`) are kept in ``models`` (default
    `SHARED_MODELS`); ``threads``: onnxruntime intra-op threads of the rapidocr session
    (default `default_ocr_threads`)."""
    _check_engine(engine)
    cache = ocr_cache(models)
    key = OcrCache.key(rgb, engine, "words")
    cached = cache.get(key)
    if cached is not None:
        return list(cached)
    words = _rapidocr_words(rgb, models, threads) if engine == "rapidocr" else _tesseract_words(rgb)
    cache.put(key, tuple(words))
    return words


def text_regions(
    rgb: RGBArray,
    engine: str = "rapidocr",
    models: ModelCache | None = None,
    *,
    threads: int | None = None,
) -> list[Box]:
    """Boxes of the text lines in ``rgb``, found by the detection half of OCR alone (for
    rapidocr about a third of a full read; recognition then runs only where a caller
    needs it, see `ocr_region`). Tesseract has no separate detection: its full read's
    line boxes (cached, so `ocr_region` on them costs a crop's read)."""
    _check_engine(engine)
    if engine == "tesseract":
        return _line_boxes(ocr_rgb(rgb, engine, models))
    cache = ocr_cache(models)
    key = OcrCache.key(rgb, engine, "regions")
    cached = cache.get(key)
    if cached is not None:
        return list(cached)
    h, w = rgb.shape[:2]
    result = _rapidocr_engine(models, threads)(np.ascontiguousarray(rgb[:, :, ::-1]), rec=False)
    quads = getattr(result, "boxes", None)
    boxes: list[Box] = []
    for quad in [] if quads is None else quads:
        q = np.asarray(quad, dtype=np.float64).reshape(-1, 2)
        box = clip_box((q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()), w, h)
        if box[2] > box[0] and box[3] > box[1]:
            boxes.append(box)
    cache.put(key, tuple(boxes))
    return boxes


def ocr_region(
    rgb: RGBArray,
    box: Box,
    engine: str = "rapidocr",
    models: ModelCache | None = None,
    *,
    pad: int = 8,
    zoom: float = 1.0,
    threads: int | None = None,
) -> list[OcrWord]:
    """OCR words inside ``box`` of ``rgb``, in ``rgb``'s pixel coordinates.

    The box is grown by ``pad`` pixels, edge-padded by as much again (so text at the
    border is not cut) and read ``zoom`` x enlarged (small text reads better larger).
    """
    import cv2

    h, w = rgb.shape[:2]
    x0, y0 = max(0, box[0] - pad), max(0, box[1] - pad)
    x1, y1 = min(w, box[2] + pad), min(h, box[3] + pad)
    crop: RGBArray = np.pad(rgb[y0:y1, x0:x1], ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    if zoom != 1.0:
        size = (round(crop.shape[1] * zoom), round(crop.shape[0] * zoom))
        crop = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC), dtype=np.uint8)
    words = ocr_rgb(np.ascontiguousarray(crop), engine, models, threads=threads)
    dx, dy = x0 - pad, y0 - pad
    return [
        OcrWord(
            wd.text,
            clip_box(
                (
                    wd.box[0] / zoom + dx,
                    wd.box[1] / zoom + dy,
                    wd.box[2] / zoom + dx,
                    wd.box[3] / zoom + dy,
                ),
                w,
                h,
            ),
            wd.score,
            wd.line,
        )
        for wd in words
    ]


def _line_boxes(words: Sequence[OcrWord]) -> list[Box]:
    lines: dict[int, list[Box]] = {}
    for wd in words:
        lines.setdefault(wd.line, []).append(wd.box)
    return [
        (
            min(b[0] for b in bs),
            min(b[1] for b in bs),
            max(b[2] for b in bs),
            max(b[3] for b in bs),
        )
        for bs in lines.values()
    ]


def ocr_words(image: ImageInput, engine: OcrEngine = "rapidocr") -> list[OcrWord]:
    """OCR words of ``image`` in reading order (lines top to bottom).

    Args:
        image: a path, bytes, `PIL.Image.Image` or ``HxWx3`` uint8 RGB array.
        engine: ``rapidocr`` (default, offline PP-OCR) or ``tesseract`` (needs the
            ``pytesseract`` package and the ``tesseract`` binary).

    Raises:
        InvalidInputError: the image cannot be read.
        DependencyError: the engine's package is not installed.
        ConfigError: unknown engine.
    """
    rgb, _ = load_image(image)
    return ocr_rgb(rgb, engine)


@dataclass
class OcrText:
    """OCR words joined into one text (words by spaces, lines by newlines) that maps a
    character span back to a pixel box.

    Build with `OcrText.from_words`.
    """

    words: list[OcrWord]
    text: str
    starts: list[int] = field(default_factory=list)

    @classmethod
    def from_words(cls, words: Sequence[OcrWord]) -> OcrText:
        """Join ``words``; a line break where the line index changes, except inside a
        number wrapped at the end of a line ("call 699" / "956 915" reads as one number,
        as a person reads it), where a space joins the lines."""
        parts: list[str] = []
        starts: list[int] = []
        pos = 0
        for i, word in enumerate(words):
            if i:
                prev = words[i - 1].text
                wrapped = (
                    prev[-1:].isdigit() and word.text[:1] != "" and word.text[0] in "0123456789+("
                )
                sep = "\n" if word.line != words[i - 1].line and not wrapped else " "
                parts.append(sep)
                pos += 1
            starts.append(pos)
            parts.append(word.text)
            pos += len(word.text)
        return cls(list(words), "".join(parts), starts)

    def word_indices(self, span: tuple[int, int]) -> list[int]:
        """Indices of the words that the character span ``[start, end)`` touches."""
        start, end = span
        return [
            i
            for i, (s, word) in enumerate(zip(self.starts, self.words, strict=True))
            if s < end and s + len(word.text) > start
        ]

    def box_of(self, span: tuple[int, int]) -> Box | None:
        """Union box of the words the span touches (whole words: a span inside a word
        gives the word's box, which over-covers rather than under-covers); ``None`` when
        the span touches no word."""
        idx = self.word_indices(span)
        if not idx:
            return None
        boxes = [self.words[i].box for i in idx]
        return (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
