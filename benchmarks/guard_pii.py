"""PII recall and precision of the firewall on one set of sentences in three renderings.

The presidio-research synthetic sentences (``../shared/data/pii``) are scanned as

* **text**: the sentence itself (`TextPII`);
* **image**: the sentence rendered as a phone photo of a screen would show it: one of
  several fonts and sizes, dark-on-light or light-on-dark colours, plain or noisy
  backgrounds, a slight rotation, blur and JPEG compression (`ImageScanner`: OCR, then the
  same text detector, spans mapped back to pixel boxes);
* **audio**: the sentence spoken by eSpeak NG in three voices and speeds, with each key
  entity read out as people read one (digit by digit in groups, e-mails with "dot" and
  "at"; ``audio-espeak`` instead lets eSpeak read the written form, which says a card
  number as "four quadrillion ..."). The voices are the three that Whisper base
  understood best on random numbers (``--screen-voices``). `AudioScanner`: Whisper base
  ASR with word timestamps, spoken digits normalised, the same text detector plus the
  heard-form rules for speech, spans mapped back to time ranges.

A gold entity counts as found when a finding of the same type carries the same value
(digits only for numbers, lower-cased without spaces for e-mails), so the three
renderings are scored the same way although OCR and ASR text differ from the input.
Audio is also scored *located*: found when a finding of the type covers the seconds
where the entity is said (SSML marks give them), whatever digits the recogniser wrote:
what a firewall needs to flag or bleep the right place.
Sentences are those with at least one of the key types (US_SSN, CREDIT_CARD,
PHONE_NUMBER, EMAIL_ADDRESS), stratified up to ``--per-type`` per type.

Peers on the same items (issue 19): ``presidio-text`` is Presidio's ``AnalyzerEngine`` as
it ships (every predefined recognizer, the same offline spaCy model) on the sentence;
``presidio-image`` is Presidio's ``ImageRedactorEngine`` (``ImageAnalyzerEngine`` with
Tesseract from Debian's ``tesseract-ocr``) redacting the same JPEG as ``image``;
``image-tesseract`` is our scanner with its Tesseract engine. Text and image renderings
also scan ``--benign`` sentences with none of the key types (addresses, IBANs, IPs, zip
codes: numbers that are not the key types): any key-type finding there is a false
positive. Ratios ours / Presidio (recall per type, p50 latency) are printed. The image
peer is installed apart from polyfuse's extras: ``bash benchmarks/peers/setup.sh guard``
(it would replace polyfuse's headless OpenCV), plus Debian ``tesseract-ocr``.

    python benchmarks/guard_pii.py --data ../shared/data --per-type 30
    python benchmarks/guard_pii.py --data ../shared/data --per-type 30 --benign 30 \
        --renderings text,presidio-text,image,image-tesseract,presidio-image
    python benchmarks/guard_pii.py --screen-voices
"""

from __future__ import annotations

import argparse
import contextlib
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
#: Voices and speeds of the audio rendering: the three eSpeak voices that Whisper base
#: understood best in `screen_voices` (``--screen-voices``; the figures are in
#: docs/benchmarks.md), each at its own speed.
VOICES = (("en-us+f2", 150), ("en-us+klatt2", 170), ("en-us+f3", 140))
#: Voices `screen_voices` compares.
CANDIDATE_VOICES = (
    "en-us",
    "en-us+f2",
    "en-us+f3",
    "en-us+f4",
    "en-us+m1",
    "en-us+m3",
    "en-us+m4",
    "en+f4",
    "en+m3",
    "en-us+klatt",
    "en-us+klatt2",
    "en-gb-x-rp",
)


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


def select_benign(data: Path, n: int) -> list[dict[str, Any]]:
    """The first ``n`` sentences with none of the key types (benign controls)."""
    items = json.loads((data / "pii" / "presidio_synth_dataset_v2.json").read_text())
    benign = [it for it in items if not any(s["entity_type"] in KEY_TYPES for s in it["spans"])]
    return benign[:n]


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


_DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
#: Digit groups a reader uses for an ungrouped run of this many digits.
_READ_GROUPS = {9: (3, 2, 4), 10: (3, 3, 4), 15: (4, 6, 5), 16: (4, 4, 4, 4)}


def read_number(value: str) -> str:
    """SSML for a number read out as people read one: digit by digit, in the value's own
    groups (an ungrouped card in fours), with a short pause between groups."""
    groups = re.findall(r"\d+", value)
    if len(groups) == 1 and len(groups[0]) > 6:
        run = groups[0]
        layout = _READ_GROUPS.get(len(run)) or (4,) * (len(run) // 4) + (
            (len(run) % 4,) if len(run) % 4 else ()
        )
        groups, pos = [], 0
        for n in layout:
            groups.append(run[pos : pos + n])
            pos += n
    return ' <break time="250ms"/> '.join(" ".join(_DIGIT_WORDS[int(c)] for c in g) for g in groups)


def read_email(value: str) -> str:
    """An address as people say it: names split at capitals, "dot", "at", digits as words."""

    def part(x: str) -> str:
        x = re.sub(r"([a-z])([A-Z])", r"\1 \2", x)
        for sym, word in ((".", " dot "), ("_", " underscore "), ("-", " dash ")):
            x = x.replace(sym, word)
        return re.sub(r"\d", lambda m: f" {_DIGIT_WORDS[int(m.group())]} ", x)

    local, _, domain = value.partition("@")
    return f"{part(local)} at {part(domain)}"


def speech_script(item: dict[str, Any], read: bool) -> str:
    """SSML for the sentence with a ``<mark>`` before (``s<i>``) and after (``e<i>``) each
    key entity; with ``read`` the entity is read as a person reads it (`read_number`,
    `read_email`), else as eSpeak reads the written form ("four quadrillion ...")."""
    from xml.sax.saxutils import escape

    text, out, pos = item["full_text"], [], 0
    for i, span in enumerate(sorted(item["spans"], key=lambda s: s["start_position"])):
        if span["entity_type"] not in KEY_TYPES or span["start_position"] < pos:
            continue
        value = text[span["start_position"] : span["end_position"]]
        spoken = escape(value)
        if read:
            email = span["entity_type"] == "EMAIL_ADDRESS"
            spoken = escape(read_email(value)) if email else read_number(value)
        out += [escape(text[pos : span["start_position"]]), f'<mark name="s{i}"/> ', spoken]
        out.append(f' <mark name="e{i}"/>')
        pos = span["end_position"]
    out.append(escape(text[pos:]))
    return "<speak>" + "".join(out).replace("\n", ", ") + "</speak>"


def render_audio(
    item: dict[str, Any], k: int, read: bool = True
) -> tuple[bytes, list[tuple[str, float, float]]]:
    """The sentence spoken by eSpeak NG (voice and speed cycle with ``k``) as WAV, and
    the time range in seconds where each key entity is said."""
    import soundfile as sf

    from polyfuse.datasets.speech import Espeak

    voice, rate = VOICES[k % len(VOICES)]
    tts = Espeak.get()
    samples, marks = tts.say_ssml(speech_script(item, read), voice=voice, rate=rate)
    spans = sorted(item["spans"], key=lambda s: s["start_position"])
    ranges = [
        (spans[i]["entity_type"], marks[f"s{i}"], marks[f"e{i}"])
        for i in range(len(spans))
        if f"s{i}" in marks and f"e{i}" in marks
    ]
    buf = io.BytesIO()
    sf.write(buf, samples, tts.sample_rate, format="WAV")
    return buf.getvalue(), ranges


def screen_voices(
    voices: tuple[str, ...] = CANDIDATE_VOICES, n: int = 12, rate: int = 160, seed: int = 0
) -> list[tuple[str, float]]:
    """How well Whisper base understands each eSpeak voice: the share of ``n`` random
    9-16 digit numbers (not from the benchmark data) read out with `read_number` whose
    digits come back exactly. Synthetic voices differ a lot in intelligibility; this
    picks the voices for the audio rendering without looking at the PII sentences."""
    import numpy as np

    from polyfuse.datasets.speech import Espeak
    from polyfuse.guard.readers.asr import transcribe
    from polyfuse.guard.readers.spoken import normalise_spoken

    rng = np.random.default_rng(seed)
    numbers = ["".join(map(str, rng.integers(0, 10, int(rng.integers(9, 17))))) for _ in range(n)]
    tts = Espeak.get()
    out = []
    for voice in voices:
        ok = 0
        for number in numbers:
            samples, _ = tts.say_ssml(
                f"<speak>The number is {read_number(number)}.</speak>", voice, rate=rate
            )
            heard = normalise_spoken(transcribe((samples, tts.sample_rate))).text
            ok += number in re.sub(r"\D", "", heard)
        out.append((voice, ok / n))
        print(f"{voice:14} {ok}/{n} numbers heard exactly", flush=True)
    return sorted(out, key=lambda v: -v[1])


def score_located(
    found: list[list[tuple[str, tuple[float, float]]]],
    gold: list[list[tuple[str, float, float]]],
    types: tuple[str, ...],
    slack: float = 0.3,
) -> dict[str, dict[str, float]]:
    """Per type: recall and precision of findings by time: a gold entity is found when a
    finding of its type overlaps the seconds where it is said (``slack`` seconds of
    tolerance on each side), whatever value the transcript wrote."""

    def overlaps(a: tuple[float, float], s: float, e: float) -> bool:
        return a[0] <= e + slack and a[1] >= s - slack

    out: dict[str, dict[str, float]] = {}
    for t in types:
        tp = fn = fp = 0
        for f_item, g_item in zip(found, gold, strict=True):
            g = [(s, e) for tt, s, e in g_item if tt == t]
            f = [sec for tt, sec in f_item if tt == t]
            hits = sum(any(overlaps(x, s, e) for x in f) for s, e in g)
            tp += hits
            fn += len(g) - hits
            fp += sum(not any(overlaps(x, s, e) for s, e in g) for x in f)
        out[t] = {
            "gold": float(tp + fn),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
        }
    return out


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


RENDERINGS = (
    "text",
    "image",
    "audio",
    "audio-espeak",
    "image-tesseract",
    "presidio-text",
    "presidio-image",
)
#: Renderings that also scan the benign controls (``--benign``).
BENIGN_RENDERINGS = ("text", "image", "image-tesseract", "presidio-text", "presidio-image")
#: Our rendering that each Presidio peer is compared with.
PEERS = {"presidio-text": "text", "presidio-image": "image"}


class PresidioPeer:
    """Presidio as it ships, on the offline spaCy model our `TextPII` uses: ``analyze``
    (``AnalyzerEngine``, every predefined recognizer, default threshold) and ``redact``
    (``ImageRedactorEngine`` over ``ImageAnalyzerEngine`` with ``TesseractOCR``). Both
    return ``(type, value)`` pairs; the redactor's values are read from the OCR text it
    analysed (recorded on the way through), so images are scored like our scanner."""

    def __init__(self) -> None:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        from polyfuse.guard.detectors.pii import SPACY_MODEL

        config = {
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
        }
        nlp = NlpEngineProvider(nlp_configuration=config).create_engine()
        self.analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
        self.last_text = ""
        self.last_results: list[Any] = []
        self._redactor: Any = None

    def analyze(self, text: str, **kwargs: Any) -> list[Any]:
        """``AnalyzerEngine.analyze`` (English), remembering the text and the results."""
        kwargs.setdefault("language", "en")
        self.last_text = text
        self.last_results = self.analyzer.analyze(text=text, **kwargs)
        return self.last_results

    def __getattr__(self, name: str) -> Any:  # the rest of AnalyzerEngine's interface
        return getattr(self.analyzer, name)

    def text(self, text: str) -> list[tuple[str, str]]:
        """Findings in a sentence."""
        return [(r.entity_type, text[r.start : r.end]) for r in self.analyze(text)]

    def redact(self, data: bytes) -> list[tuple[str, str]]:
        """Redact an encoded image with the image redactor; the findings it redacted."""
        from PIL import Image

        if self._redactor is None:
            from presidio_image_redactor import (
                ImageAnalyzerEngine,
                ImageRedactorEngine,
                TesseractOCR,
            )

            engine = ImageAnalyzerEngine(analyzer_engine=self, ocr=TesseractOCR())  # type: ignore[arg-type]
            self._redactor = ImageRedactorEngine(image_analyzer_engine=engine)
        self.last_text, self.last_results = "", []
        image = Image.open(io.BytesIO(data)).convert("RGB")
        _redacted, boxes = self._redactor.redact_and_return_bbox(image)
        del _redacted, boxes
        return [(r.entity_type, self.last_text[r.start : r.end]) for r in self.last_results]


def run_rendering(
    rendering: str,
    items: list[dict[str, Any]],
    gold: list[list[tuple[str, str]]],
    pii: Any,
    dump: Any = None,
    peer: PresidioPeer | None = None,
) -> dict[str, Any]:
    """Scan every item in one rendering; scores by value (and by time for audio)."""
    audio = rendering.startswith("audio")
    scanner: Any = None
    if rendering in ("image", "image-tesseract"):
        from polyfuse.guard.scanners.image import ImageScanner

        engine = "tesseract" if rendering == "image-tesseract" else "rapidocr"
        scanner = ImageScanner([pii], faces=False, hidden=False, metadata=False, engine=engine)
    elif audio:
        from polyfuse.guard.scanners.audio import AudioScanner

        scanner = AudioScanner([pii])
    found, latency, located, gold_times = [], [], [], []
    for k, it in enumerate(items):
        text = it["full_text"]
        if rendering.startswith("presidio") and peer is not None:
            data = render_image(text, k) if rendering == "presidio-image" else b""
            start = time.perf_counter()
            pairs = peer.redact(data) if data else peer.text(text)
            latency.append(time.perf_counter() - start)
            found.append(pairs)
            continue
        if rendering == "text":
            start = time.perf_counter()
            fs = pii.detect(text)
        elif rendering in ("image", "image-tesseract"):
            data = render_image(text, k)
            start = time.perf_counter()
            fs = scanner.scan(data)
        else:
            data, ranges = render_audio(it, k, read=rendering == "audio")
            gold_times.append(ranges)
            start = time.perf_counter()
            heard, fs, _ = scanner.analyse(data)  # both decoding passes
            located.append([(f.type, f.location.seconds) for f in fs])
            if dump is not None:
                rec = {"k": k, "rendering": rendering, "text": text, "heard": heard.text}
                rec["gold"] = [g for g in gold[k] if g[0] in KEY_TYPES]
                rec["found"] = [(f.type, f.text, f.location.seconds) for f in fs]
                dump.write(json.dumps(rec) + "\n")
        latency.append(time.perf_counter() - start)
        found.append([(f.type, f.text) for f in fs])
    out: dict[str, Any] = {
        "scores": score(found, gold, KEY_TYPES),
        "benign_flagged": sum(
            any(t in KEY_TYPES for t, _ in f) for f, g in zip(found, gold, strict=True) if not g
        ),
        "benign": sum(not g for g in gold),
        "latency_p50_ms": 1000 * statistics.median(latency),
        "latency_p95_ms": 1000 * sorted(latency)[int(0.95 * (len(latency) - 1))],
    }
    if audio:
        out["located"] = score_located(located, gold_times, KEY_TYPES)
    return out


def print_tables(results: dict[str, Any]) -> None:
    """Recall and precision side by side, ratios to text, located audio scores, latency."""
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
    text = results.get("text")
    for r in names:
        if r != "text" and text is not None:
            ratios = ", ".join(
                f"{t} {results[r]['scores'][t]['recall'] / text['scores'][t]['recall']:.2f}"
                for t in KEY_TYPES
            )
            print(f"{r} recall / text recall: {ratios}")
        if "located" not in results[r]:
            continue
        loc = results[r]["located"]
        print(f"\n{r}, located (a finding of the type where the entity is said):")
        for t in KEY_TYPES:
            print(f"  {t:14} recall {loc[t]['recall']:.3f} precision {loc[t]['precision']:.3f}")
        if text is not None:
            ratios = ", ".join(
                f"{t} {loc[t]['recall'] / text['scores'][t]['recall']:.2f}" for t in KEY_TYPES
            )
            print(f"{r} located recall / text recall: {ratios}")
    print(
        "latency p50/p95 ms: "
        + ", ".join(
            f"{r} {results[r]['latency_p50_ms']:.0f}/{results[r]['latency_p95_ms']:.0f}"
            for r in names
        )
    )
    print_peer_ratios(results)


def print_peer_ratios(results: dict[str, Any]) -> None:
    """Benign controls flagged, and ours / Presidio recall per type and p50 latency."""
    for r, res in results.items():
        if res.get("benign"):
            print(f"{r}: benign controls flagged {res['benign_flagged']}/{res['benign']}")
    for peer, ours_name in PEERS.items():
        ours_names = [ours_name, *(["image-tesseract"] if ours_name == "image" else [])]
        for name in ours_names:
            if peer not in results or name not in results:
                continue
            a, b = results[name], results[peer]
            recall = ", ".join(
                f"{t} {a['scores'][t]['recall'] / max(b['scores'][t]['recall'], 1e-9):.2f}"
                for t in KEY_TYPES
            )
            p50 = a["latency_p50_ms"] / b["latency_p50_ms"]
            p95 = a["latency_p95_ms"] / b["latency_p95_ms"]
            print(f"{name} / {peer}: recall {recall}; p50 latency {p50:.2f}, p95 {p95:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--per-type", type=int, default=30, help="sentences per key type")
    parser.add_argument(
        "--benign",
        type=int,
        default=0,
        help="benign controls (sentences with no key type) for the text and image renderings",
    )
    parser.add_argument(
        "--renderings",
        default="text,image,audio",
        help="comma list of text, image, audio (entities read as people read them), "
        "audio-espeak (eSpeak's own reading of the written form), image-tesseract (our "
        "scanner on Tesseract), presidio-text and presidio-image (the Presidio peers)",
    )
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--dump", type=Path, help="write audio transcripts and findings (JSONL)")
    parser.add_argument(
        "--screen-voices",
        action="store_true",
        help="only rank the candidate eSpeak voices by how well Whisper hears numbers",
    )
    args = parser.parse_args()
    if args.screen_voices:
        screen_voices()
        return 0
    renderings = args.renderings.split(",")
    if unknown := set(renderings) - set(RENDERINGS):
        parser.error(f"unknown rendering(s) {sorted(unknown)}; choose from {RENDERINGS}")

    from polyfuse.guard.detectors.pii import TextPII

    items = select(Path(args.data), args.per_type)
    gold = [[(s["entity_type"], s["entity_value"]) for s in it["spans"]] for it in items]
    print(f"{len(items)} sentences", flush=True)
    pii = TextPII()
    peer = PresidioPeer() if any(r.startswith("presidio") for r in renderings) else None
    benign = select_benign(Path(args.data), args.benign)
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        dump = stack.enter_context(args.dump.open("w")) if args.dump else None
        for rendering in renderings:
            scanned, gold_of = items, gold
            if rendering in BENIGN_RENDERINGS and benign:
                scanned, gold_of = items + benign, gold + [[] for _ in benign]
            results[rendering] = run_rendering(rendering, scanned, gold_of, pii, dump, peer)
            p50 = results[rendering]["latency_p50_ms"]
            print(f"{rendering}: done, p50 {p50:.0f} ms", flush=True)
    print_tables(results)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"command": " ".join(["python", *sys.argv]), "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
