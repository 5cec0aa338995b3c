"""Image scanner of the multimodal firewall: OCR text, faces, metadata and hidden text.

`ImageScanner.scan` reads an image (`polyfuse.guard.readers.ocr.load_image`), runs OCR and
every given `TextDetector` on the OCR text, maps the character spans the detectors report
back to pixel boxes, finds frontal faces (`polyfuse.guard.detectors.faces`), scans text in
the metadata and reports text a person would not see but a model would read
(`polyfuse.guard.detectors.hidden`). Redaction is `polyfuse.guard.redact.image`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from polyfuse.core.errors import ConfigError
from polyfuse.guard.detectors.faces import cv2_version, detect_faces
from polyfuse.guard.findings import Finding, Location, TextDetector, mask
from polyfuse.guard.geometry import inside
from polyfuse.guard.models import ModelCache
from polyfuse.guard.readers.ocr import DEFAULT_MAX_PIXELS, OcrText, load_image, ocr_rgb

if TYPE_CHECKING:
    from polyfuse.guard.detectors.hidden import HiddenRegion
    from polyfuse.guard.readers.ocr import ImageInput

#: Version of this scanner's rules (face scoring, metadata keys, span mapping).
SCANNER_VERSION = "1"


class ImageScanner:
    """Scan an image for PII, injections, faces and hidden text.

    Args:
        text_detectors: text detectors run on the OCR text, on each metadata text and on
            each hidden-text region.
        faces: detect frontal faces (``FACE`` findings).
        hidden: look for text a person would not see (``HIDDEN_TEXT`` findings): text
            detection on an enhanced image, recognition only of the regions the plain
            read missed that could be hidden (`polyfuse.guard.detectors.hidden`).
        metadata: scan EXIF/XMP/PNG/JPEG comment text.
        max_pixels: refuse images with more pixels than this.
        engine: OCR engine (``rapidocr`` or ``tesseract``).
        ocr_threads: onnxruntime intra-op threads of the rapidocr session (default
            `polyfuse.guard.readers.ocr.default_ocr_threads`: half the usable cores, at
            most 4).
        models: where the OCR engine and face cascade are kept (the owning `Guard`'s
            cache; default `SHARED_MODELS`).
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
        ocr_threads: int | None = None,
        models: ModelCache | None = None,
    ) -> None:
        if max_pixels <= 0:
            raise ConfigError("max_pixels", f"must be positive, got {max_pixels}")
        if ocr_threads is not None and ocr_threads < 1:
            raise ConfigError(
                "ocr_threads", f"must be >= 1, got {ocr_threads}", hint="or None for the default"
            )
        self.text_detectors = list(text_detectors)
        self.faces = faces
        self.hidden = hidden
        self.metadata = metadata
        self.max_pixels = max_pixels
        self.engine = engine
        self.ocr_threads = ocr_threads
        self.models = models

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
        words = ocr_rgb(rgb, self.engine, self.models, threads=self.ocr_threads)
        ocr = OcrText.from_words(words)
        findings: list[Finding] = []
        if ocr.text:
            findings.extend(self._ocr_findings(ocr))
        if self.hidden:
            from polyfuse.guard.detectors.hidden import find_hidden_text

            regions = find_hidden_text(
                rgb,
                words_plain=words,
                engine=self.engine,
                models=self.models,
                threads=self.ocr_threads,
            )
            findings = self._hidden_findings(regions, findings)
        if self.faces:
            for box, score in detect_faces(rgb, models=self.models):
                findings.append(
                    Finding(
                        type="FACE",
                        score=score,
                        modality="image",
                        location=Location(box=box, source="pixels"),
                        detector="opencv-haar",
                        detector_version=cv2_version(),
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
            out.append(
                _as_image_finding(f, Location(span=span, box=box, source="ocr"), self.engine)
            )
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
                extra.append(_as_image_finding(f, loc, self.engine))
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
                    and inside(f.location.box, region.box)
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
