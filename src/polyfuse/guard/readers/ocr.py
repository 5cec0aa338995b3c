"""Image scanner of the multimodal firewall: OCR text, faces, metadata and hidden text.

`ImageScanner.scan` reads an image (path, bytes, `PIL.Image.Image` or ``HxWx3`` uint8
array), runs OCR (rapidocr, PP-OCR ONNX weights shipped in its wheel, offline) and every
given `TextDetector` on the OCR text, maps the character spans the detectors report back
to pixel boxes, finds frontal faces (OpenCV Haar cascade), scans text in the metadata
(EXIF, XMP, PNG text chunks, JPEG comments) and reports text a person would not see but a
model would read (`polyfuse.guard.detectors.hidden`). `redact_image` fills or blurs the boxes.

Heavy dependencies (rapidocr, onnxruntime, OpenCV) are imported inside the functions.
"""

from __future__ import annotations

import math
import re
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from polyfuse.core.errors import ConfigError, DependencyError, InvalidInputError
from polyfuse.guard.findings import Finding, Location, TextDetector, mask
from polyfuse.modalities.io import read_source
from polyfuse.modalities.readers.image import decode_image, pixels_from_array, pixels_from_pil

if TYPE_CHECKING:
    from typing import TypeAlias

    from PIL import Image as PILImage

    from polyfuse.guard.detectors.hidden import HiddenRegion

    #: What `ImageScanner.scan`, `ocr_words` and `redact_image` accept.
    ImageInput: TypeAlias = str | Path | bytes | PILImage.Image | NDArray[np.uint8]

Box = tuple[int, int, int, int]
RGBArray = NDArray[np.uint8]

#: Version of this scanner's rules (face scoring, metadata keys, span mapping).
SCANNER_VERSION = "1"

#: Default cap on decoded pixels (a decompression bomb declares far more).
DEFAULT_MAX_PIXELS = 40_000_000

_ENGINES: dict[str, Any] = {}
_ENGINE_LOCK = threading.Lock()
_CASCADE: dict[str, Any] = {}


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


def _rapidocr_engine() -> Any:
    with _ENGINE_LOCK:
        if "rapidocr" not in _ENGINES:
            try:
                from rapidocr import RapidOCR
            except ImportError as exc:  # pragma: no cover - rapidocr is a guard dependency
                raise DependencyError("rapidocr", "image OCR", "guard") from exc
            _ENGINES["rapidocr"] = RapidOCR(params={"Global.log_level": "error"})
        return _ENGINES["rapidocr"]


def _clip_box(box: tuple[float, float, float, float], w: int, h: int) -> Box:
    x0 = max(0, min(w, math.floor(box[0])))
    y0 = max(0, min(h, math.floor(box[1])))
    x1 = max(x0, min(w, math.ceil(box[2])))
    y1 = max(y0, min(h, math.ceil(box[3])))
    return (x0, y0, x1, y1)


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
        box = _clip_box((pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()), w, h)
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
            _clip_box(
                (q[:, 0].min() - grow, q[:, 1].min(), q[:, 0].max() + grow, q[:, 1].max()), w, h
            ),
            score,
            line,
        )
        for t, q in items
    ]


def _rapidocr_words(rgb: RGBArray) -> list[OcrWord]:
    engine = _rapidocr_engine()
    h, w = rgb.shape[:2]
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    # No text-direction classifier: it turns long upright lines upside down ("Ignore any
    # previous ..." read as "lne , us rs pe suotsus ..."); EXIF orientation is applied on load.
    result = engine(bgr, return_word_box=True, use_cls=False)
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
        import pytesseract  # type: ignore[import-not-found, unused-ignore]
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
        box = _clip_box((x, y, x + int(data["width"][i]), y + int(data["height"][i])), w, h)
        words.append(OcrWord(str(text).strip(), box, conf / 100.0, line))
    return words


def ocr_rgb(rgb: RGBArray, engine: str = "rapidocr") -> list[OcrWord]:
    """`ocr_words` on an already decoded RGB array (no copy, no validation)."""
    if engine == "rapidocr":
        return _rapidocr_words(rgb)
    if engine == "tesseract":
        return _tesseract_words(rgb)
    raise ConfigError(
        "engine", f"unknown OCR engine {engine!r}", hint="use 'rapidocr' or 'tesseract'"
    )


def ocr_words(
    image: ImageInput, engine: Literal["rapidocr", "tesseract"] = "rapidocr"
) -> list[OcrWord]:
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


# --------------------------------------------------------------------------- faces


def detect_faces(rgb: RGBArray, *, max_side: int = 1024) -> list[tuple[Box, float]]:
    """Frontal faces by OpenCV's Haar cascade: ``[(box, score)]``.

    The score maps the cascade's level weight ``w`` through ``1 / (1 + exp(-(w - 1)))``
    (a heuristic: weights near 0 are borderline detections, above ~4 confident).
    """
    import cv2

    if "face" not in _CASCADE:
        cascades = cv2.data.haarcascades  # type: ignore[attr-defined]
        path = str(Path(cascades) / "haarcascade_frontalface_default.xml")
        cascade = cv2.CascadeClassifier(path)
        if cascade.empty():  # pragma: no cover - ships with opencv-python
            raise DependencyError("opencv-python-headless", "face detection", "guard")
        _CASCADE["face"] = cascade
    cascade = _CASCADE["face"]
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    min_size = max(20, round(min(gray.shape[:2]) * 0.05))
    rects, _levels, weights = cascade.detectMultiScale3(
        gray,
        scaleFactor=1.1,
        minNeighbors=5,
        minSize=(min_size, min_size),
        outputRejectLevels=True,
    )
    out: list[tuple[Box, float]] = []
    for (x, y, bw, bh), wt in zip(
        np.asarray(rects).reshape(-1, 4), np.ravel(weights), strict=False
    ):
        box = _clip_box((x / scale, y / scale, (x + bw) / scale, (y + bh) / scale), w, h)
        out.append((box, float(1.0 / (1.0 + math.exp(-(float(wt) - 1.0))))))
    return out


# --------------------------------------------------------------------------- scanner


def _box_iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _inside(inner: Box, outer: Box, frac: float = 0.6) -> bool:
    ix = max(0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    iy = max(0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = max(1, (inner[2] - inner[0]) * (inner[3] - inner[1]))
    return ix * iy / area >= frac


class ImageScanner:
    """Scan an image for PII, injections, faces and hidden text.

    Args:
        text_detectors: text detectors run on the OCR text, on each metadata text and on
            each hidden-text region.
        faces: detect frontal faces (``FACE`` findings).
        hidden: look for text a person would not see (``HIDDEN_TEXT`` findings); runs OCR
            a second time on an enhanced image (about doubles latency).
        metadata: scan EXIF/XMP/PNG/JPEG comment text.
        max_pixels: refuse images with more pixels than this.
        engine: OCR engine (``rapidocr`` or ``tesseract``).
    """

    def __init__(
        self,
        text_detectors: Sequence[TextDetector] = (),
        *,
        faces: bool = True,
        hidden: bool = True,
        metadata: bool = True,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        engine: Literal["rapidocr", "tesseract"] = "rapidocr",
    ) -> None:
        if max_pixels <= 0:
            raise ConfigError("max_pixels", f"must be positive, got {max_pixels}")
        self.text_detectors = list(text_detectors)
        self.faces = faces
        self.hidden = hidden
        self.metadata = metadata
        self.max_pixels = max_pixels
        self.engine = engine

    def scan(self, image: ImageInput) -> list[Finding]:
        """All findings in ``image`` (``modality="image"``).

        OCR-text findings carry ``Location(span, box, source="ocr")`` with the span into
        `OcrText.text`; metadata findings ``source="metadata:<key>"`` and no box; hidden
        text ``HIDDEN_TEXT`` with a box, and detector findings in hidden text
        ``source="ocr:hidden"`` (span into the hidden region's text, box of the region).

        Raises:
            InvalidInputError: the image cannot be read or is too large.
        """
        rgb, meta = load_image(image, max_pixels=self.max_pixels)
        words = ocr_rgb(rgb, self.engine)
        ocr = OcrText.from_words(words)
        findings: list[Finding] = []
        if ocr.text:
            findings.extend(self._ocr_findings(ocr))
        if self.hidden:
            from polyfuse.guard.detectors.hidden import find_hidden_text

            regions = find_hidden_text(rgb, words_plain=words, engine=self.engine)
            findings = self._hidden_findings(regions, findings)
        if self.faces:
            for box, score in detect_faces(rgb):
                findings.append(
                    Finding(
                        type="FACE",
                        score=score,
                        modality="image",
                        location=Location(box=box, source="pixels"),
                        detector="opencv-haar",
                        detector_version=_cv2_version(),
                        snippet="[face]",
                        explanation=f"frontal face {box[2] - box[0]}x{box[3] - box[1]} px",
                    )
                )
        if self.metadata:
            for key, text in meta.items():
                findings.extend(self._metadata_findings(key, text))
        return findings

    def _run_detectors(self, text: str, source: str) -> list[Finding]:
        out: list[Finding] = []
        for det in self.text_detectors:
            out.extend(det.detect(text, source=source))
        return out

    def _ocr_findings(self, ocr: OcrText) -> list[Finding]:
        out = []
        for f in self._run_detectors(ocr.text, "ocr"):
            span = f.location.span
            box = ocr.box_of(span) if span is not None else None
            out.append(_as_image_finding(f, Location(span=span, box=box, source="ocr"), "rapidocr"))
        return out

    def _hidden_findings(
        self, regions: Sequence[HiddenRegion], findings: list[Finding]
    ) -> list[Finding]:
        from polyfuse.guard.detectors.hidden import HIDDEN_VERSION

        extra: list[Finding] = []
        for region in regions:
            extra.append(
                Finding(
                    type="HIDDEN_TEXT",
                    score=region.score,
                    modality="image",
                    location=Location(
                        span=(0, len(region.text)), box=region.box, source="ocr:hidden"
                    ),
                    detector="polyfuse.hidden",
                    detector_version=HIDDEN_VERSION,
                    snippet=mask(region.text),
                    explanation=region.explanation,
                    text=region.text,
                )
            )
            inner = self._run_detectors(region.text, "ocr:hidden")
            for f in inner:
                loc = Location(span=f.location.span, box=region.box, source="ocr:hidden")
                extra.append(_as_image_finding(f, loc, "rapidocr"))
            # The same finding read from the plain OCR text is now reported with its
            # hidden-text source; drop the plain duplicate.
            kinds = {f.type for f in inner}
            findings = [
                f
                for f in findings
                if not (
                    f.type in kinds
                    and f.location.source == "ocr"
                    and f.location.box is not None
                    and _inside(f.location.box, region.box)
                )
            ]
        return findings + extra

    def _metadata_findings(self, key: str, text: str) -> list[Finding]:
        source = f"metadata:{key}"
        return [
            _as_image_finding(f, Location(span=f.location.span, source=source), None)
            for f in self._run_detectors(text, source)
        ]


def _as_image_finding(f: Finding, location: Location, ocr: str | None) -> Finding:
    return Finding(
        type=f.type,
        score=f.score,
        modality="image",
        location=location,
        detector=f"{ocr}+{f.detector}" if ocr else f.detector,
        detector_version=f.detector_version,
        snippet=f.snippet,
        explanation=f.explanation,
        text=f.text,
    )


def _cv2_version() -> str:
    import cv2

    return str(cv2.__version__)


# --------------------------------------------------------------------------- redaction


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
        x0, y0, x1, y1 = _clip_box((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad), w, h)
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
