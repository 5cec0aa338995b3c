"""The firewall and the model read the same bytes the same way.

Every file of a corpus (a sample of each format in the shared data folder, plus every file
of the malformed corpus ``tests/data/malformed``) goes through the firewall's reader and
the model's reader of each modality. Both must refuse it, or both must return equal data
(numpy array equality for pixels and samples, equal text after the model's NFC step).

The firewall's reader of a modality is what `polyfuse.guard.engine.Guard` does with a
file: sniff it (`polyfuse.guard.safety.sniff`) and, when it is of that modality, load it
with the scanner's loader (`load_image`, `load_audio`; the engine's text path for text).
The model's reader is the modality contract's ``load``. Both are given the same limits.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from polyfuse.core.errors import InvalidInputError
from polyfuse.guard.engine import Guard
from polyfuse.guard.readers.asr import SAMPLE_RATE, load_audio
from polyfuse.guard.readers.ocr import load_image
from polyfuse.guard.safety import Limits, sniff
from polyfuse.guard.scanners import document
from polyfuse.modalities import AudioContract, ImageContract, TextContract
from polyfuse.modalities.readers import pdf
from tests.conftest import SHARED_DATA

MALFORMED = Path(__file__).resolve().parents[1] / "data" / "malformed"
LIMITS = Limits()
#: (folder under the shared data, glob, how many files) of the real-data sample.
SHARED_SAMPLE = (
    ("flickr8k/images", "*.jpg", 6),
    ("fsdd", "*.wav", 5),
    ("esc50_8k", "*.wav", 3),
    ("injection", "*.csv", 1),
    ("injection", "*.jsonl", 1),
    ("basicmotions", "*.ts", 1),
    ("pii", "*.json", 1),
    ("mnist", "*.npz", 1),
)

Reader = Callable[[Path], Any]


def _firewall(modality: str, read: Reader) -> Reader:
    """The firewall's reader of ``modality``: sniff, then the scanner's loader."""

    def reader(path: Path) -> Any:
        found, _ = sniff(path.read_bytes())
        if found != modality:
            raise InvalidInputError(modality, f"the firewall reads this as {found}, not {modality}")
        return read(path)

    return reader


def _firewall_text(path: Path) -> str:
    result = Guard(text_detectors=[], limits=LIMITS).scan(path)
    if result.error is not None:
        raise InvalidInputError("text", result.error)
    return path.read_bytes().decode("utf-8")  # what `Guard` hands its text detectors


def _model_text(path: Path) -> str:
    contract = TextContract.create("text", {"max_chars": LIMITS.max_chars})
    return contract.load(path.read_bytes())


IMAGE = ImageContract.create(
    "image", {"max_pixels": LIMITS.max_pixels, "max_bytes": LIMITS.max_bytes}
)
AUDIO = AudioContract.create(
    "audio",
    {"sample_rate": SAMPLE_RATE, "max_seconds": LIMITS.max_seconds, "max_bytes": LIMITS.max_bytes},
)
#: modality -> (firewall reader, model reader)
READERS: dict[str, tuple[Reader, Reader]] = {
    "image": (
        _firewall("image", lambda p: load_image(p, max_pixels=LIMITS.max_pixels)[0]),
        IMAGE.load,
    ),
    "audio": (
        _firewall("audio", lambda p: load_audio(p, max_seconds=LIMITS.max_seconds)),
        AUDIO.load,
    ),
    "text": (_firewall("text", _firewall_text), _model_text),
}


def _outcome(read: Reader, path: Path) -> tuple[str, Any]:
    try:
        return "accept", read(path)
    except InvalidInputError as exc:
        return "reject", exc.reason


def _shared_files() -> list[Path]:
    if not SHARED_DATA.is_dir():
        return []
    files: list[Path] = []
    for folder, pattern, count in SHARED_SAMPLE:
        files += sorted((SHARED_DATA / folder).glob(pattern))[:count]
    return files


MALFORMED_FILES = sorted(p for p in MALFORMED.iterdir() if p.name != "MANIFEST.json")


def _check(path: Path, modality: str) -> str:
    fw_read, model_read = READERS[modality]
    fw, fw_data = _outcome(fw_read, path)
    model, model_data = _outcome(model_read, path)
    said = {"firewall": fw_data if fw == "reject" else fw}
    said["model"] = model_data if model == "reject" else model
    assert fw == model, f"{path.name} read as {modality}: {said}"
    if fw == "accept" and modality == "text":
        assert unicodedata.normalize("NFC", fw_data) == model_data
    elif fw == "accept":
        assert fw_data.dtype == model_data.dtype and fw_data.shape == model_data.shape
        np.testing.assert_array_equal(fw_data, model_data)
    return fw


@pytest.mark.parametrize("modality", sorted(READERS))
@pytest.mark.parametrize("path", MALFORMED_FILES, ids=lambda p: p.name)
def test_malformed_file_reads_the_same_in_firewall_and_model(path: Path, modality: str) -> None:
    _check(path, modality)


@pytest.mark.parametrize("modality", sorted(READERS))
def test_real_files_read_the_same_in_firewall_and_model(shared_data: Path, modality: str) -> None:
    files = _shared_files()
    assert len(files) == sum(n for _, _, n in SHARED_SAMPLE), "the shared sample is incomplete"
    accepted = [path.name for path in files if _check(path, modality) == "accept"]
    assert accepted, f"no real file was read as {modality}"  # the comparison compared data


@pytest.mark.parametrize("path", [p for p in MALFORMED_FILES if p.suffix == ".pdf"], ids=str)
def test_pdfs_open_through_the_one_pdf_reader(path: Path) -> None:
    assert document.open_pdf is pdf.open_pdf  # the guard's page logic opens through it
    try:
        doc = pdf.open_pdf(path.read_bytes(), max_pages=LIMITS.max_pages)
    except InvalidInputError:
        return
    pdf.close_pdf(doc)
