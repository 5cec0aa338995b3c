"""`Guard`: one entry point that scans text, images, audio and documents under one policy.

``Guard.scan(item)`` sniffs the input's real type, enforces the limits and the time
budget, runs the scanners of that modality (text PII and prompt injection on the text
itself, on OCR text and hidden text of images, on metadata, on transcripts of audio),
applies the policy, writes one audit line, and returns a typed `ScanResult`.
``Guard.redact(item, result, out_dir)`` writes the redacted version.

Scanners are parts passed in; the defaults are built on first use (heavy models load
once per `Guard`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from polyfuse.core.errors import ConfigError, InvalidInputError, PolyfuseError
from polyfuse.guard.audit import AuditLog
from polyfuse.guard.findings import Action, Finding, TextDetector, mask_snippets
from polyfuse.guard.models import ModelCache
from polyfuse.guard.policy import Policy
from polyfuse.guard.safety import Limits, check_size, sniff, within_budget
from polyfuse.modalities.readers.text import decode_text

if TYPE_CHECKING:
    from polyfuse.guard.outputs import OutputScan


@dataclass
class ScanResult:
    """The verdict on one input.

    Attributes:
        path: the file (or a caller-given name), if any.
        modality: ``text``, ``image``, ``audio``, ``video`` or ``document`` (from the content).
        format: detected format (``png``, ``wav``, ``utf-8`` ...).
        action: the policy's action for the input (``block`` for unreadable inputs).
        findings: findings at or above their threshold, with the action of each.
        sha256: hash of the input bytes.
        size: input size in bytes.
        error: why the input could not be scanned (then ``action`` is ``block``).
    """

    path: str | None
    modality: str
    format: str
    action: Action
    findings: list[tuple[Finding, Action]] = field(default_factory=list)
    sha256: str = ""
    size: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``polyfuse scan --json`` line (no raw content)."""
        out: dict[str, Any] = {
            "path": self.path,
            "modality": self.modality,
            "action": self.action,
            "findings": [{**f.to_dict(), "action": a} for f, a in self.findings],
        }
        if self.error is not None:
            out["error"] = self.error
        return out


class Guard:
    """The multimodal firewall.

    Args:
        policy: a `Policy` (default: `polyfuse.guard.policy.DEFAULT_POLICY`).
        text_detectors: detectors run on every text, OCR text and transcript (default:
            `TextPII` and `InjectionDetector`).
        image_scanner: scanner of images (default `ImageScanner` with the text detectors).
        audio_scanner: scanner of audio (default `AudioScanner` with the text detectors).
        document_scanner: scanner of PDFs (default `DocumentScanner` with the text
            detectors, rendering pages through the image scanner).
        limits: size, pixel, duration limits and the per-item time budget.
        audit: where to append the audit log (a path or an `AuditLog`), or None.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        text_detectors: Sequence[TextDetector] | None = None,
        image_scanner: Any = None,
        audio_scanner: Any = None,
        document_scanner: Any = None,
        video_scanner: Any = None,
        limits: Limits | None = None,
        audit: str | Path | AuditLog | None = None,
    ) -> None:
        self.policy = policy or Policy.load()
        self.limits = limits or Limits()
        self._text = list(text_detectors) if text_detectors is not None else None
        self._image = image_scanner
        self._audio = audio_scanner
        self._document = document_scanner
        self._video = video_scanner
        self._outputs: list[TextDetector] | None = None
        self.audit = AuditLog(audit) if isinstance(audit, (str, Path)) else audit
        #: The models this engine's default parts load (Whisper, Presidio), kept here.
        self.models = ModelCache()

    # -- parts, built on first use ----------------------------------------------------
    @property
    def text_detectors(self) -> list[TextDetector]:
        """The text detectors (defaults built on first use)."""
        if self._text is None:
            from polyfuse.guard.detectors.injection import InjectionDetector
            from polyfuse.guard.detectors.pii import TextPII

            pii = TextPII(models=self.models, phone_regions=self.policy.phone_regions)
            self._text = [pii, InjectionDetector()]
        return self._text

    @property
    def output_detectors(self) -> list[TextDetector]:
        """The text detectors output scans run (`polyfuse.guard.outputs.output_detectors`:
        no NER without ``outputs.names``, no injection detector without
        ``outputs.injection``), built on first use."""
        if self._outputs is None:
            from polyfuse.guard.outputs import output_detectors

            self._outputs = output_detectors(self.text_detectors, self.policy)
        return self._outputs

    @property
    def image_scanner(self) -> Any:
        """The image scanner (default built on first use)."""
        if self._image is None:
            from polyfuse.guard.scanners.image import ImageScanner

            self._image = ImageScanner(
                self.text_detectors, max_pixels=self.limits.max_pixels, models=self.models
            )
        return self._image

    @property
    def audio_scanner(self) -> Any:
        """The audio scanner (default built on first use)."""
        if self._audio is None:
            from polyfuse.guard.scanners.audio import AudioScanner

            self._audio = AudioScanner(
                self.text_detectors, max_seconds=self.limits.max_seconds, models=self.models
            )
        return self._audio

    @property
    def document_scanner(self) -> Any:
        """The document (PDF) scanner (default built on first use)."""
        if self._document is None:
            from polyfuse.guard.scanners.document import DocumentScanner

            self._document = DocumentScanner(
                self.text_detectors,
                image_scanner=self.image_scanner,
                max_pages=self.limits.max_pages,
                max_pixels=self.limits.max_pixels,
                time_budget=self.limits.time_budget,
            )
        return self._document

    @property
    def video_scanner(self) -> Any:
        """The video scanner: sampled frames through the image scanner, the soundtrack
        through the audio scanner (default built on first use)."""
        if self._video is None:
            from polyfuse.guard.scanners.video import VideoScanner

            self._video = VideoScanner(
                self.image_scanner,
                self.audio_scanner,
                max_seconds=self.limits.max_seconds,
                max_pixels=self.limits.max_pixels,
            )
        return self._video

    # -- scanning ---------------------------------------------------------------------
    def scan(self, item: str | Path | bytes, *, name: str | None = None) -> ScanResult:
        """Scan one input: a `Path` (file), ``bytes`` (any supported content) or ``str``
        (the text itself). Unreadable inputs give a ``block`` result with ``error``."""
        path = str(item) if isinstance(item, Path) else name
        try:
            data = self._read(item)
        except PolyfuseError as err:
            return self._finish(ScanResult(path, "unknown", "unknown", "block", error=str(err)))
        digest = hashlib.sha256(data).hexdigest()
        try:
            modality, fmt = sniff(data)
        except PolyfuseError as err:
            result = ScanResult(
                path, "unknown", "unknown", "block", [], digest, len(data), str(err)
            )
            return self._finish(result)
        try:
            findings = within_budget(
                lambda: self._findings(modality, data), self.limits.time_budget, f"scan of {path}"
            )
            findings = mask_snippets(findings)
        except PolyfuseError as err:
            result = ScanResult(path, modality, fmt, "block", [], digest, len(data), str(err))
            return self._finish(result)
        decision = self.policy.decide(findings, modality)
        result = ScanResult(
            path, modality, fmt, decision.action, decision.findings, digest, len(data)
        )
        return self._finish(result)

    def scan_outputs(
        self,
        texts: Sequence[str],
        fields: Sequence[str] | None = None,
        *,
        name: str | None = None,
        audit_clean: bool = True,
    ) -> OutputScan:
        """Scan the texts of one answer a model gives (captions, search results and their
        metadata, labels) under the policy's ``outputs`` section; ``fields`` names where
        each text is in the answer (default ``0``, ``1`` ...), ``name`` the answer in the
        audit log (one line per answer; with ``audit_clean=False`` only when something
        was found). See `polyfuse.guard.outputs`."""
        from polyfuse.guard.outputs import scan_outputs

        where = [str(i) for i in range(len(texts))] if fields is None else list(fields)
        return scan_outputs(
            texts,
            where,
            policy=self.policy,
            detectors=self.output_detectors if self.policy.outputs.enabled else [],
            max_chars=self.limits.max_chars,
            audit=self.audit,
            name=name,
            audit_clean=audit_clean,
        )

    def scan_answer(self, answer: Any, *, name: str | None = None) -> tuple[Any, OutputScan]:
        """`scan_outputs` over every string of a JSON-like ``answer`` (dicts, lists,
        strings; each field named by its path, ``hits[0].metadata.text``), and the answer
        with its strings as the scan left them (redacted spans ``<TYPE>``)."""
        from polyfuse.guard.outputs import texts_of, with_texts

        found = list(texts_of(answer))
        scan = self.scan_outputs([t for _, t in found], [f for f, _ in found], name=name)
        return with_texts(answer, iter(scan.texts)), scan

    def warm_up(self) -> None:
        """Build the text detectors' models now (the first scan is otherwise slow). Not a
        scan: nothing is decided and nothing is written to the audit log."""
        self._findings("text", b"warm up")

    def scan_text(self, text: str, *, name: str | None = None) -> ScanResult:
        """`scan` of a string (same as ``scan(text)``)."""
        return self.scan(text, name=name)

    def _read(self, item: str | Path | bytes) -> bytes:
        if isinstance(item, Path):
            try:
                size = item.stat().st_size
            except OSError as exc:
                raise InvalidInputError("input", f"cannot read: {exc}", path=item) from None
            if size > self.limits.max_bytes:
                raise InvalidInputError(
                    "input", f"{size} bytes is over the limit of {self.limits.max_bytes}", path=item
                )
            data = item.read_bytes()
        elif isinstance(item, str):
            if len(item) > self.limits.max_chars:
                raise InvalidInputError(
                    "text", f"{len(item)} characters is over the limit of {self.limits.max_chars}"
                )
            data = item.encode("utf-8")
        elif isinstance(item, (bytes, bytearray)):
            data = bytes(item)
        else:
            raise InvalidInputError(
                "input",
                f"cannot scan a {type(item).__name__}",
                hint="pass a pathlib.Path, bytes or a str of text",
            )
        check_size(data, self.limits)
        return data

    def _findings(self, modality: str, data: bytes) -> list[Finding]:
        if modality == "text":
            text = decode_text(data, name="text")
            if len(text) > self.limits.max_chars:
                raise InvalidInputError(
                    "text", f"{len(text)} characters is over the limit of {self.limits.max_chars}"
                )
            return [f for d in self.text_detectors for f in d.detect(text, source="text")]
        if modality == "image":
            found: list[Finding] = self.image_scanner.scan(data)
            return found
        if modality == "audio":
            heard: list[Finding] = self.audio_scanner.scan(data)
            return heard
        if modality == "document":
            paged: list[Finding] = self.document_scanner.scan(data)
            return paged
        if modality == "video":
            shown: list[Finding] = self.video_scanner.scan(data)
            return shown
        raise InvalidInputError(modality, f"no scanner for modality {modality!r}")

    def _finish(self, result: ScanResult) -> ScanResult:
        if self.audit is not None:
            self.audit.write(
                {
                    "input": {
                        "path": result.path,
                        "sha256": result.sha256,
                        "size": result.size,
                        "modality": result.modality,
                        "format": result.format,
                    },
                    "policy": self.policy.digest,
                    "action": result.action,
                    "error": result.error,
                    "findings": [{**f.to_dict(), "action": a} for f, a in result.findings],
                }
            )
        return result

    # -- redaction --------------------------------------------------------------------
    def redact(
        self, item: str | Path | bytes, result: ScanResult, out_dir: str | Path, *, mode: str = ""
    ) -> Path | None:
        """Write the redacted version of ``item`` into ``out_dir`` and return its path.

        Findings whose action is ``redact`` are removed: text spans replaced by
        ``<TYPE>``, image boxes filled (``mode="blur"`` blurs) and metadata dropped,
        audio ranges bleeped (``mode="silence"`` silences), PDF pages rendered with
        their boxes filled (or blurred) into an image-only PDF, videos rewritten as MP4
        with the boxes filled (or blurred) in the frames that show them and the
        soundtrack's ranges bleeped (or silenced). Nothing is written for a
        ``block`` result or an input without anything to redact.
        """
        if result.action == "block" or result.error is not None:
            return None
        todo = [f for f, a in result.findings if a == "redact"]
        if not todo:
            return None
        data = self._read(item)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = Path(result.path).name if result.path else result.sha256[:16]
        if result.modality == "text":
            from polyfuse.guard.redact.text import redact_text

            target = out / (stem if Path(stem).suffix else f"{stem}.txt")
            target.write_text(redact_text(decode_text(data, name="text"), todo), encoding="utf-8")
            return target
        if result.modality == "image":
            from polyfuse.guard.redact.image import redact_image

            image = redact_image(
                data, todo, mode=_box_mode(mode, "images"), max_pixels=self.limits.max_pixels
            )
            fmt = "JPEG" if result.format == "jpeg" else "PNG"
            target = out / (Path(stem).stem + (".jpg" if fmt == "JPEG" else ".png"))
            image.save(target, format=fmt)  # saved without the original metadata
            return target
        if result.modality == "audio":
            import soundfile as sf

            from polyfuse.guard.redact.audio import redact_audio
            from polyfuse.modalities.readers.audio import decode_audio

            frames, sr = decode_audio(data, max_seconds=self.limits.max_seconds)  # (T, C)
            samples = frames[:, 0] if frames.shape[1] == 1 else frames
            if mode not in ("", "silence", "bleep"):
                raise ConfigError("mode", f"audio is redacted by silence or bleep, not {mode!r}")
            clean = redact_audio(
                samples, sr, todo, mode="silence" if mode == "silence" else "bleep"
            )
            target = out / (Path(stem).stem + ".wav")
            sf.write(target, clean, sr)
            return target
        if result.modality == "document":
            return self._redact_document(data, todo, out / (Path(stem).stem + ".pdf"), mode)
        if result.modality == "video":
            from polyfuse.guard.redact.video import redact_video

            sound: Literal["silence", "bleep"] = "silence" if mode == "silence" else "bleep"
            boxes = _box_mode("" if mode in ("silence", "bleep") else mode, "video frames")
            target = out / (Path(stem).stem + ".mp4")
            target.write_bytes(
                redact_video(
                    data, todo, mode=boxes, audio_mode=sound, max_pixels=self.limits.max_pixels
                )
            )
            return target
        return None

    def _redact_document(
        self, data: bytes, todo: Sequence[Finding], target: Path, mode: str
    ) -> Path:
        """The pages rendered as the scanner rendered them, boxes filled (or blurred),
        saved as an image-only PDF: no text layer (so no hidden text) and no metadata."""
        from polyfuse.guard.readers.document import DEFAULT_SCALE
        from polyfuse.guard.redact.document import redact_document

        doc = redact_document(
            data,
            todo,
            mode=_box_mode(mode, "documents"),
            scale=float(getattr(self.document_scanner, "scale", DEFAULT_SCALE)),
            max_pages=self.limits.max_pages,
            max_pixels=self.limits.max_pixels,
        )
        doc.save(target)
        return target


def _box_mode(mode: str, what: str) -> Literal["fill", "blur"]:
    """The box redaction mode for ``mode`` (``""`` means fill)."""
    if mode not in ("", "fill", "blur"):
        raise ConfigError("mode", f"{what} are redacted by fill or blur, not {mode!r}")
    return "blur" if mode == "blur" else "fill"
