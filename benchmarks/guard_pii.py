"""PII recall and precision of the firewall on one set of sentences in three renderings.

The presidio-research synthetic sentences (``../shared/data/pii``) are scanned as

* **text**: the sentence itself (`TextPII`);
* **image**: the sentence rendered as a phone photo of a screen would show it: one of
  several fonts and sizes, dark-on-light or light-on-dark colours, plain or noisy
  backgrounds, a slight rotation, blur and JPEG compression (`ImageScanner`: OCR, then the
  same text detector, spans mapped back to pixel boxes);
* **audio**: the sentence spoken by eSpeak NG in several voices and speeds
  (`AudioScanner`: Whisper base ASR with word timestamps, spoken digits normalised, the
  same text detector, spans mapped back to time ranges).

A gold entity counts as found when a finding of the same type carries the same value
(digits only for numbers, lower-cased without spaces for e-mails), so the three
renderings are scored the same way although OCR and ASR text differ from the input.
Sentences are those with at least one of the key types (US_SSN, CREDIT_CARD,
PHONE_NUMBER, EMAIL_ADDRESS), stratified up to ``--per-type`` per type.

    python benchmarks/guard_pii.py --data ../shared/data --per-type 30
"""

from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KEY_TYPES = ("US_SSN", "CREDIT_CARD", "PHONE_NUMBER", "EMAIL_ADDRESS")
FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
)
VOICES = (("en-us", 150), ("en-us+f3", 170), ("en+m3", 140))


def norm(type_: str, value: str) -> str:
    """Comparable form of an entity value."""
    if type_ == "EMAIL_ADDRESS":
        return re.sub(r"\s+", "", value).lower().rstrip(".")
    if type_ in ("US_SSN", "CREDIT_CARD", "PHONE_NUMBER", "IBAN_CODE"):
        digits = re.sub(r"[^0-9A-Za-z]" if type_ == "IBAN_CODE" else r"\D", "", value)
        return digits.upper()
    return value.strip().lower()


def select(data: Path, per_type: int) -> list[dict[str, Any]]:
    items = json.loads((data / "pii" / "presidio_synth_dataset_v2.json").read_text())
    chosen: list[dict[str, Any]] = []
    seen: set[int] = set()
    for t in KEY_TYPES:
        n = 0
        for i, it in enumerate(items):
            if n >= per_type:
                break
            if any(s["entity_type"] == t for s in it["spans"]):
                n += 1
                if i not in seen:
                    seen.add(i)
                    chosen.append(it)
    return chosen


def render_image(text: str, k: int) -> bytes:
    """The sentence as a slightly rotated, blurred, JPEG-compressed screen photo."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = np.random.default_rng(k)
    fonts = [f for f in FONTS if Path(f).exists()]
    size = int(rng.choice([20, 24, 28, 34]))
    font: Any = (
        ImageFont.truetype(fonts[k % len(fonts)], size) if fonts else ImageFont.load_default(size)
    )
    dark_on_light = k % 3 != 2
    bg = tuple(int(v) for v in rng.integers(200, 256, 3)) if dark_on_light else (25, 30, 40)
    fg = tuple(int(v) for v in rng.integers(0, 70, 3)) if dark_on_light else (235, 235, 220)
    words, lines, line = text.replace("\n", " \n ").split(" "), [], ""
    for w in words:
        if w == "\n" or len(line) + len(w) > 48:
            lines.append(line)
            line = "" if w == "\n" else w
        else:
            line = f"{line} {w}".strip()
    lines.append(line)
    lines = [x for x in lines if x.strip()]
    height = int(size * 1.5) * len(lines) + 60
    img = Image.new("RGB", (int(size * 0.62 * 50) + 60, height), bg)
    if k % 2:  # a noisy, uneven background, as a photo of a screen has
        noise = (
            rng.normal(0, 8, (height, img.width, 3))
            + np.linspace(-15, 15, img.width)[None, :, None]
        )
        img = Image.fromarray(
            np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype("uint8")
        )
    draw = ImageDraw.Draw(img)
    for j, x in enumerate(lines):
        draw.text((30, 30 + j * int(size * 1.5)), x, fill=fg, font=font)
    img = img.rotate(
        float(rng.uniform(-2, 2)), expand=True, fillcolor=bg, resample=Image.Resampling.BICUBIC
    )
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 0.8))))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(60, 90)))
    return buf.getvalue()


def render_audio(text: str, k: int) -> bytes:
    """The sentence spoken by eSpeak NG (voice and speed cycle with ``k``), as WAV."""
    import soundfile as sf

    from polyfuse.datasets.speech import Espeak

    voice, rate = VOICES[k % len(VOICES)]
    tts = Espeak.get()
    samples = tts.say(text.replace("\n", ", "), voice=voice, rate=rate)
    buf = io.BytesIO()
    sf.write(buf, samples, tts.sample_rate, format="WAV")
    return buf.getvalue()


def score(
    found: list[list[tuple[str, str]]], gold: list[list[tuple[str, str]]], types: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Per type: gold count, recall and precision of value matches."""
    out: dict[str, dict[str, float]] = {}
    for t in types:
        tp = fn = fp = 0
        for f_item, g_item in zip(found, gold, strict=True):
            g = {norm(t, v) for tt, v in g_item if tt == t}
            f = {norm(t, v) for tt, v in f_item if tt == t}
            hit = {x for x in g if any(x and (x == y or (len(x) >= 6 and x in y)) for y in f)}
            tp += len(hit)
            fn += len(g - hit)
            fp += len(
                {y for y in f if not any(x and (x == y or (len(x) >= 6 and x in y)) for x in g)}
            )
        out[t] = {
            "gold": float(tp + fn),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--per-type", type=int, default=30, help="sentences per key type")
    parser.add_argument("--renderings", default="text,image,audio")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    from polyfuse.guard.text import TextPII

    items = select(Path(args.data), args.per_type)
    gold = [[(s["entity_type"], s["entity_value"]) for s in it["spans"]] for it in items]
    print(f"{len(items)} sentences", flush=True)
    pii = TextPII()
    scanners: dict[str, Any] = {}
    results: dict[str, Any] = {}
    for rendering in args.renderings.split(","):
        if rendering == "image":
            from polyfuse.guard.image import ImageScanner

            scanners[rendering] = ImageScanner([pii], faces=False, hidden=False, metadata=False)
        elif rendering == "audio":
            from polyfuse.guard.audio import AudioScanner

            scanners[rendering] = AudioScanner([pii])
        found, latency = [], []
        for k, it in enumerate(items):
            text = it["full_text"]
            data = (
                render_image(text, k)
                if rendering == "image"
                else render_audio(text, k)
                if rendering == "audio"
                else None
            )
            start = time.perf_counter()
            fs = pii.detect(text) if data is None else scanners[rendering].scan(data)
            latency.append(time.perf_counter() - start)
            found.append([(f.type, f.text) for f in fs])
        results[rendering] = {
            "scores": score(found, gold, KEY_TYPES),
            "latency_p50_ms": 1000 * statistics.median(latency),
            "latency_p95_ms": 1000 * sorted(latency)[int(0.95 * (len(latency) - 1))],
        }
        print(f"{rendering}: done, p50 {results[rendering]['latency_p50_ms']:.0f} ms", flush=True)
    names = list(results)
    print("\n| type | gold | " + " | ".join(f"{r} recall | {r} precision" for r in names) + " |")
    print("|---|---|" + "---|---|" * len(names))
    for t in KEY_TYPES:
        cells = [
            f"{results[r]['scores'][t]['recall']:.3f} | {results[r]['scores'][t]['precision']:.3f}"
            for r in names
        ]
        print(
            f"| {t} | {int(results[names[0]]['scores'][t]['gold'])} | " + " | ".join(cells) + " |"
        )
    if "text" in results:
        for r in names:
            if r == "text":
                continue
            ratios = {
                t: results[r]["scores"][t]["recall"] / results["text"]["scores"][t]["recall"]
                for t in KEY_TYPES
            }
            print(
                f"{r} recall / text recall: " + ", ".join(f"{t} {v:.2f}" for t, v in ratios.items())
            )
    print(
        "latency p50/p95 ms: "
        + ", ".join(
            f"{r} {results[r]['latency_p50_ms']:.0f}/{results[r]['latency_p95_ms']:.0f}"
            for r in names
        )
    )
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"command": " ".join(["python", *sys.argv]), "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
