"""Every file of the malformed corpus (``tests/data/malformed``, written by
``scripts/make_malformed_corpus.py``) through `Guard.scan` with the real loaders (Pillow,
libsndfile, pdfium) and a regex detector: a typed result within the time budget, never an
exception, never a hang; and ``polyfuse scan`` over the whole folder exits cleanly."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import pytest

from polyfuse.cli import main
from polyfuse.guard.engine import Guard
from polyfuse.guard.findings import ACTIONS, Finding
from polyfuse.guard.readers.asr import load_audio
from polyfuse.guard.readers.ocr import load_image
from polyfuse.guard.safety import Limits
from polyfuse.guard.scanners.document import DocumentScanner
from tests.guard.fakes import RegexDetector

CORPUS = Path(__file__).resolve().parents[1] / "data" / "malformed"
MANIFEST: dict[str, dict[str, str]] = json.loads((CORPUS / "MANIFEST.json").read_text())
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_malformed_corpus.py"
#: The test's limits: the defaults, except the text limit the corpus's long text is over
#: and a budget that a hang would exceed long before the default 60 s.
LIMITS = Limits(max_chars=50_000, time_budget=10.0)
DETECTORS = [
    RegexDetector(r"\b\d{3}-\d{2}-\d{4}\b", "US_SSN"),
    RegexDetector(r"(?i)ignore (all )?previous instructions", "PROMPT_INJECTION"),
]


class LoadImage:
    """The image scanner's loader (decode, pixel limit, metadata) without OCR."""

    def scan(self, image: Any) -> list[Finding]:
        load_image(image, max_pixels=LIMITS.max_pixels)
        return []


class LoadAudio:
    """The audio scanner's loader (header checks, decode, resample) without ASR."""

    def scan(self, audio: bytes) -> list[Finding]:
        load_audio(audio, 16000, max_seconds=LIMITS.max_seconds)
        return []


def _parts() -> dict[str, Any]:
    """`Guard` keyword arguments: the regex detectors and the loader-only scanners."""
    image = LoadImage()
    document = DocumentScanner(
        DETECTORS, image_scanner=image, max_pages=LIMITS.max_pages, time_budget=LIMITS.time_budget
    )
    return {
        "text_detectors": DETECTORS,
        "image_scanner": image,
        "audio_scanner": LoadAudio(),
        "document_scanner": document,
        "limits": LIMITS,
    }


def test_manifest_lists_every_file_and_the_corpus_is_small() -> None:
    files = {p.name for p in CORPUS.iterdir() if p.is_file()} - {"MANIFEST.json"}
    assert files == set(MANIFEST)
    assert all(v["expect"] in ("block", "any") for v in MANIFEST.values())
    assert sum(p.stat().st_size for p in CORPUS.iterdir()) < 1_000_000


@pytest.mark.skipif(importlib.util.find_spec("fpdf") is None, reason="needs fpdf2 (dev extra)")
def test_the_script_rebuilds_the_committed_corpus() -> None:
    spec = importlib.util.spec_from_file_location("make_malformed_corpus", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check", "--out", str(CORPUS)]) == 0


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_malformed_file_gives_a_typed_result_in_time(name: str) -> None:
    guard = Guard(**_parts())
    start = time.perf_counter()
    result = guard.scan(CORPUS / name)  # raising anything fails the test
    seconds = time.perf_counter() - start
    assert seconds < LIMITS.time_budget + 1.0
    assert result.action in ACTIONS and result.path == str(CORPUS / name)
    if result.error is not None:
        assert result.action == "block" and result.error.strip()
    if MANIFEST[name]["expect"] == "block":
        assert result.action == "block" and result.error is not None, result.to_dict()


def test_cli_scan_exits_cleanly_on_the_whole_corpus(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import polyfuse.guard.engine as scan_module

    original = scan_module.Guard.__init__

    def with_loaders(self: Guard, *args: Any, **kw: Any) -> None:
        original(self, *args, **{**kw, **_parts()})  # the CLI's policy and audit log stay

    monkeypatch.setattr(scan_module.Guard, "__init__", with_loaders)
    audit = tmp_path / "audit.jsonl"
    args = ["scan", str(CORPUS), "--json", "--audit", str(audit)]
    status = main([*args, "--redact-out", str(tmp_path / "red")])
    assert status == 1  # some inputs are blocked (0: all allowed/flagged, 2: usage error)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(MANIFEST) + 1  # and MANIFEST.json, which is plain text
    by_name = {Path(x["path"]).name: x for x in lines}
    assert by_name["MANIFEST.json"]["action"] == "allow"
    for name, spec in MANIFEST.items():
        if spec["expect"] == "block":
            assert by_name[name]["action"] == "block" and by_name[name]["error"], name
    assert len(audit.read_text().splitlines()) == len(lines)


@pytest.mark.integration
def test_default_guard_on_the_whole_corpus() -> None:
    """The real scanners (OCR, faces, hidden text, Whisper, Presidio, the injection model)
    on the files that decode: typed results within the default time budget."""
    guard = Guard(limits=Limits(max_chars=LIMITS.max_chars))
    for name, spec in sorted(MANIFEST.items()):
        start = time.perf_counter()
        result = guard.scan(CORPUS / name)
        assert time.perf_counter() - start < guard.limits.time_budget + 1.0, name
        if result.error is not None or spec["expect"] == "block":
            assert result.action == "block" and result.error, (name, result.to_dict())
