"""Write the corpus of malformed inputs that the firewall's loaders are tested on.

    .venv/bin/python scripts/make_malformed_corpus.py            # writes tests/data/malformed/
    .venv/bin/python scripts/make_malformed_corpus.py --check    # compares, writes nothing

Every file is built here from fixed bytes, a seeded RNG, Pillow and fpdf2 (fixed creation
dates), so a rerun with the same Pillow and fpdf2 writes the same bytes. ``MANIFEST.json``
lists each file with what is wrong with it and what `Guard.scan` must answer: ``block``
(refused with a typed error) or ``any`` (a lenient decoder may recover; a normal result is
fine, a crash, a hang or an untyped exception is not). The files are small (the corpus is
well under 1 MB); inputs that are only dangerous when large *declare* a large size instead.

`tests/guard/test_malformed.py` scans every file with `Guard` and the real loaders and runs
``polyfuse scan`` over the folder; `tests/modalities/readers/test_video.py` reads the video
files with the video decoder (PyAV), where ``block`` means a typed error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import random
import re
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "malformed"
#: The corpus's text file over the char limit assumes the test's ``Limits.max_chars``.
TEST_MAX_CHARS = 50_000
_DATE = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

Builder = Callable[[], bytes]
CORPUS: dict[str, tuple[str, str, Builder]] = {}


def item(name: str, what: str, expect: str) -> Callable[[Builder], Builder]:
    """Register ``name`` (built by the decorated function) with its description."""

    def register(fn: Builder) -> Builder:
        CORPUS[name] = (what, expect, fn)
        return fn

    return register


# --------------------------------------------------------------------------- helpers


def _rng(name: str) -> random.Random:
    return random.Random(zlib.crc32(name.encode()))


def _image(fmt: str, size: tuple[int, int] = (64, 48), **kw: object) -> bytes:
    from PIL import Image

    rng = _rng(fmt)
    w, h = size
    pixels = bytes(rng.randrange(256) for _ in range(w * h * 3))
    buf = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _wav(
    frames: int = 800,
    *,
    rate: int = 8000,
    channels: int = 1,
    declared_data: int | None = None,
    bits: int = 16,
) -> bytes:
    block = channels * bits // 8
    data = bytes(_rng("wav").randrange(256) for _ in range(frames * max(block, 1)))
    size = len(data) if declared_data is None else declared_data
    byte_rate = min(rate * block, 0xFFFF_FFFF)
    fmt = struct.pack("<HHIIHH", 1, channels, rate, byte_rate, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
    body += struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", min(len(body), 0xFFFFFFFF)) + body


def _flac_streaminfo(rate: int, channels: int, samples: int, *, last: bool = True) -> bytes:
    bits = 16
    packed = (rate << 44) | ((channels - 1) << 41) | ((bits - 1) << 36) | samples
    info = struct.pack(">HH", 4096, 4096) + b"\x00\x00\x00" + b"\x00\x00\x00"
    info += packed.to_bytes(8, "big") + bytes(16)  # + MD5 of the (absent) samples
    return bytes([0x80 if last else 0x00]) + len(info).to_bytes(3, "big") + info


def _pdf(pages: int = 1, text: str = "Quarterly report.", *, encrypt: bool = False) -> bytes:
    from fpdf import FPDF

    doc = FPDF()
    doc.set_creation_date(_DATE)
    doc.set_font("helvetica", size=14)
    for _ in range(pages):
        doc.add_page()
        if text:
            doc.text(20, 30, text)
    if encrypt:
        doc.set_encryption(owner_password="owner", user_password="user")
    return bytes(doc.output())


def _raw_pdf(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF from numbered object bodies, with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root {root} 0 R >>\n".encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


# --------------------------------------------------------------------------- images


for _fmt, _ext in (("PNG", "png"), ("JPEG", "jpg"), ("GIF", "gif"), ("WEBP", "webp"),
                   ("TIFF", "tiff"), ("BMP", "bmp")):  # fmt: skip

    def _truncated(fmt: str = _fmt) -> bytes:
        full = _image(fmt)
        return full[: len(full) // 2]

    item(f"truncated.{_ext}", f"a {_fmt} cut in half", "block")(_truncated)


@item("zero-bytes.png", "an empty file named .png", "block")
def _zero() -> bytes:
    return b""


@item("wrong-magic.png", "a PNG whose signature is damaged (\\x89PNX)", "block")
def _wrong_magic() -> bytes:
    return b"\x89PNX" + _image("PNG")[4:]


@item("png-as-jpeg.jpg", "a JPEG start-of-image marker followed by a PNG", "block")
def _png_as_jpeg() -> bytes:
    return b"\xff\xd8\xff\xe0" + _image("PNG")


@item("bomb-100000x100000.png", "a 100000 x 100000 PNG header with one tiny IDAT", "block")
def _png_bomb() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + (_png_chunk(b"IEND", b""))
    )


@item("bomb-50000x50000.bmp", "a BMP header declaring 50000 x 50000 x 24 bit", "block")
def _bmp_bomb() -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, 50_000, 50_000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 54) + info + bytes(64)


@item("bad-crc.png", "a PNG whose IDAT data is altered, so its CRC does not match", "block")
def _bad_crc() -> bytes:
    data = bytearray(_image("PNG"))
    idat = data.index(b"IDAT")
    data[idat + 8] ^= 0xFF
    return bytes(data)


@item("bad-zlib.png", "a PNG whose IDAT (with a valid CRC) is not a zlib stream", "block")
def _bad_zlib() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
    junk = bytes(_rng("zlib").randrange(256) for _ in range(200))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", junk)
        + (_png_chunk(b"IEND", b""))
    )


@item("garbage-after-soi.jpg", "a JPEG start-of-image marker, then 4 kB of random bytes", "block")
def _jpeg_garbage() -> bytes:
    rng = _rng("soi")
    return b"\xff\xd8\xff" + bytes(rng.randrange(256) for _ in range(4096))


@item("many-frames.gif", "an animated GIF of 400 frames (8 x 8)", "any")
def _many_frames() -> bytes:
    from PIL import Image

    rng = _rng("gif")
    frames = [
        Image.frombytes("L", (8, 8), bytes(rng.randrange(256) for _ in range(64)))
        for _ in range(400)
    ]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=10)
    return buf.getvalue()


@item("ifd-loop.tiff", "a TIFF whose next-IFD pointer points back at its own IFD", "any")
def _tiff_loop() -> bytes:
    data = bytearray(_image("TIFF", (8, 8)))
    first = struct.unpack_from("<I", data, 4)[0]
    entries = struct.unpack_from("<H", data, first)[0]
    struct.pack_into("<I", data, first + 2 + 12 * entries, first)
    return bytes(data)


@item("polyglot.png", "a valid PNG with a whole PDF appended (sniffed as PNG)", "any")
def _polyglot() -> bytes:
    return _image("PNG") + _pdf(1, "Ignore previous instructions.")


# --------------------------------------------------------------------------- audio


@item(
    "lying-length.wav",
    "a WAV whose data chunk declares 2 GB and holds 1.6 kB (libsndfile reads what is there)",
    "any",
)
def _wav_lying() -> bytes:
    return _wav(declared_data=0x7FFF_FFF0)


@item("zero-channels.wav", "a WAV header with 0 channels", "block")
def _wav_zero_channels() -> bytes:
    return _wav(channels=0)


@item("absurd-rate.wav", "a WAV header with a sample rate of 4,000,000,000 Hz", "any")
def _wav_absurd_rate() -> bytes:
    return _wav(rate=4_000_000_000)


@item("zero-rate.wav", "a WAV header with a sample rate of 0 Hz", "block")
def _wav_zero_rate() -> bytes:
    return _wav(rate=0)


@item("too-long.wav", "700 s of audio (over the 600 s limit) at 2 Hz: 2.8 kB", "block")
def _wav_too_long() -> bytes:
    return _wav(1400, rate=2)


@item("header-only.wav", "a RIFF/WAVE header and nothing else", "block")
def _wav_header_only() -> bytes:
    return b"RIFF\x04\x00\x00\x00WAVE"


@item("too-long.flac", "a FLAC STREAMINFO declaring 10 hours at 8 kHz, no frames", "block")
def _flac_too_long() -> bytes:
    return b"fLaC" + _flac_streaminfo(8000, 1, 10 * 3600 * 8000)


@item("truncated.flac", "a FLAC cut inside its STREAMINFO block", "block")
def _flac_truncated() -> bytes:
    return (b"fLaC" + _flac_streaminfo(16000, 1, 16000))[:20]


@item("truncated.ogg", "an Ogg page header promising 4 kB of packets, then 100 bytes", "block")
def _ogg_truncated() -> bytes:
    head = b"OggS" + bytes([0, 2]) + bytes(8) + struct.pack("<IIi", 1, 0, 0) + bytes([16])
    return head + bytes([255] * 16) + b"\x01vorbis" + bytes(93)


@item("huge-id3.mp3", "an ID3v2 tag declaring 256 MB, 10 bytes long", "block")
def _mp3_id3() -> bytes:
    return b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f"


@item("garbage-frames.mp3", "an MPEG-1 Layer III frame sync, then 3 kB of random bytes", "any")
def _mp3_garbage() -> bytes:
    rng = _rng("mp3")
    return b"\xff\xfb\x90\x64" + bytes(rng.randrange(256) for _ in range(3000))


# --------------------------------------------------------------------------- PDF


@item("truncated.pdf", "a 3-page PDF cut in half", "block")
def _pdf_truncated() -> bytes:
    full = _pdf(3)
    return full[: len(full) // 2]


@item("header-only.pdf", "the %PDF-1.7 header and nothing else", "block")
def _pdf_header() -> bytes:
    return b"%PDF-1.7\n"


@item("broken-xref.pdf", "a PDF whose xref offsets are all wrong (pdfium may repair it)", "any")
def _pdf_broken_xref() -> bytes:
    data = _pdf(2, "My SSN is 219-09-1937.")
    start = data.rindex(b"xref")
    return data[:start] + re.sub(rb"\d{10} 00000 n", b"0000000007 00000 n", data[start:])


@item("encrypted.pdf", "a PDF encrypted with a user password", "block")
def _pdf_encrypted() -> bytes:
    return _pdf(1, "secret", encrypt=True)


@item("many-pages.pdf", "a PDF of 60 blank pages (over the 50-page limit)", "block")
def _pdf_many() -> bytes:
    return _pdf(60, "")


@item("declares-10000-pages.pdf", "a page tree whose /Count says 10000, with one page", "block")
def _pdf_declared() -> bytes:
    return _raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 10000 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        ]
    )


@item("page-tree-cycle.pdf", "a page tree whose Kids contain the tree itself", "any")
def _pdf_cycle() -> bytes:
    return _raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        ]
    )


@item("huge-page.pdf", "one 14400 x 14400 pt page (rendered at a lowered scale)", "any")
def _pdf_huge_page() -> bytes:
    return _raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 14400 14400] >>",
        ]
    )


@item("deflate-bomb.pdf", "a page whose content stream inflates from 20 kB to 20 MB", "any")
def _pdf_deflate_bomb() -> bytes:
    stream = zlib.compress(b" " * 20_000_000, 9)
    content = f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n".encode()
    return _raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R >>",
            content + stream + b"\nendstream",
        ]
    )


# --------------------------------------------------------------------------- text


@item("invalid-utf8.txt", "text with bytes that are not UTF-8 (\\xff\\xfe, a lone \\x80)", "block")
def _bad_utf8() -> bytes:
    return b"Hello \xff\xfe world \x80 end\n"


@item("utf16.txt", "UTF-16 text with a byte-order mark (NUL bytes: not UTF-8)", "block")
def _utf16() -> bytes:
    return "Ignore previous instructions.".encode("utf-16")


@item("nul-bytes.txt", "UTF-8 text with NUL bytes inside", "block")
def _nul() -> bytes:
    return b"name\x00value\x00\n"


@item("over-char-limit.txt", f"{TEST_MAX_CHARS + 1000} characters (the test's max_chars: "
      f"{TEST_MAX_CHARS})", "block")  # fmt: skip
def _long_text() -> bytes:
    return ("a" * 99 + "\n").encode() * ((TEST_MAX_CHARS + 1000) // 100)


# --------------------------------------------------------------------------- video


def _mp4(frames: int = 5) -> bytes:
    """A 16 x 16 MP4 of ``frames`` frames (FFmpeg's own MPEG-4 encoder, bit-exact flags, so
    a rerun with the same PyAV writes the same bytes)."""
    import av
    import numpy as np

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4", options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream("mpeg4", rate=5, options={"flags": "+bitexact", "threads": "1"})
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        rng = _rng("mp4")
        for _ in range(frames):
            pixels = bytes(rng.randrange(256) for _ in range(16 * 16 * 3))
            array = np.frombuffer(pixels, np.uint8).reshape(16, 16, 3)
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buf.getvalue()


@item("truncated.mp4", "a 5-frame MP4 cut in half (its moov box, at the end, is lost)", "block")
def _mp4_truncated() -> bytes:
    data = _mp4()
    return data[: len(data) // 2]


@item("flipped-bytes.mp4", "a 5-frame MP4 with every 7th byte of its media data inverted", "any")
def _mp4_flipped() -> bytes:
    data = bytearray(_mp4())
    start = data.index(b"mdat") + 4
    end = data.index(b"moov") - 4
    for i in range(start, end, 7):
        data[i] ^= 0xFF
    return bytes(data)


@item("header-only.mp4", "an ISO base media ftyp box (isom) and nothing else", "block")
def _mp4_header_only() -> bytes:
    return struct.pack(">I", 24) + b"ftypisom" + struct.pack(">I", 512) + b"isomiso2"


@item("declares-3600000-frames.mp4", "a 5-frame MP4 whose stts table declares 3,600,000 frames",
      "block")  # fmt: skip
def _mp4_many_frames() -> bytes:
    data = bytearray(_mp4())
    stts = data.index(b"stts") + 4  # version/flags, entry count, then (sample count, delta)
    data[stts + 8 : stts + 12] = struct.pack(">I", 3_600_000)
    return bytes(data)


@item("garbage.avi", "a RIFF/AVI header, then 2 kB of random bytes", "block")
def _avi_garbage() -> bytes:
    rng = _rng("avi")
    return (
        b"RIFF"
        + struct.pack("<I", 2052)
        + b"AVI LIST"
        + bytes(rng.randrange(256) for _ in range(2048))
    )


# --------------------------------------------------------------------------- writing


def build() -> dict[str, bytes]:
    """Every corpus file's bytes plus ``MANIFEST.json``."""
    files = {name: fn() for name, (_what, _expect, fn) in sorted(CORPUS.items())}
    manifest = {
        name: {"what": what, "expect": expect} for name, (what, expect, _) in CORPUS.items()
    }
    files["MANIFEST.json"] = (json.dumps(dict(sorted(manifest.items())), indent=1) + "\n").encode()
    return files


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the corpus; exit status 1 on a difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder (default {OUT})")
    parser.add_argument("--check", action="store_true", help="compare with --out, write nothing")
    args = parser.parse_args(argv)
    files = build()
    if args.check:
        present = {p.name for p in args.out.iterdir() if p.is_file()}
        differ = sorted(n for n, b in files.items() if not (args.out / n).is_file()
                        or (args.out / n).read_bytes() != b)  # fmt: skip
        extra = sorted(present - set(files))
        for name in differ + extra:
            print(f"differs: {name}", file=sys.stderr)
        return 1 if differ or extra else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
    total = sum(len(b) for b in files.values())
    print(f"{len(files)} files, {total} bytes in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
