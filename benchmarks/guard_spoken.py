"""Spoken PII, first decoding pass vs second, on synthetic and on real voices.

Numbers and addresses are said after a context phrase ("My card number is ..."), scanned by
`AudioScanner` with the second decoding pass off (first pass) and on (second pass), from
the same first-pass transcript, and scored like `guard_pii.py`'s audio: *located* (a
finding of the type covers the seconds where the value is said, 0.3 s slack) and by value.
The written sentence through the same text detector gives the text recall.

Sources:

* **espeak-dev**: eSpeak NG in the three voices and speeds of `guard_pii.py` (the voices
  the second pass was developed on);
* **espeak-held**: four other eSpeak voices at other speeds, never looked at while the
  pass was built;
* **fsdd**: real people: SSN, card and phone digits put together from the Free Spoken
  Digit Dataset recordings (``../shared/data/fsdd``, five speakers), with the pauses
  people make (`polyfuse.datasets.spoken_numbers`), after the context phrase, which is
  said by eSpeak (en-us, 160 wpm): FSDD holds digits only.

Values are random (seeded; valid SSN areas, Luhn-valid cards, NANP phone numbers) and the
e-mail addresses are made from common names and words, none from the PII sentences of
`guard_pii.py`; e-mail is synthetic only (FSDD has no letters).

    python benchmarks/guard_spoken.py --data ../shared/data --per-type 12
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from guard_pii import VOICES, read_email, read_number, score, score_located  # noqa: E402

SOURCES = ("espeak-dev", "espeak-held", "fsdd")
TYPES = ("US_SSN", "CREDIT_CARD", "PHONE_NUMBER", "EMAIL_ADDRESS")
DIGIT_TYPES = TYPES[:3]
#: Voices never looked at while the second pass was built, each at its own speed.
HELD_VOICES = (("en-us+m3", 130), ("en+f4", 175), ("en-us+klatt", 190), ("en-us+m1", 160))
CONTEXT = {
    "US_SSN": ("My social security number is", "Here is my SSN:"),
    "CREDIT_CARD": ("Please charge my credit card, the number is", "My card number is"),
    "PHONE_NUMBER": ("You can reach me by phone at", "Call me on my mobile,"),
    "EMAIL_ADDRESS": ("Send the receipt to my e-mail,", "My email address is"),
}
_FIRST = ("maria", "james", "linda", "robert", "susan", "david", "karen", "thomas", "nancy")
_LAST = ("lopez", "smith", "garcia", "miller", "wilson", "moore", "taylor", "clark", "young")
_DOMAINS = ("mailbox", "example", "postcard", "inbox", "fastmail", "letters", "homepost")
_TLDS = ("com", "org", "net")


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def make_value(kind: str, rng: np.random.Generator) -> tuple[str, list[str]]:
    """A random value of ``kind``: its written form and its digit groups (e-mail: [])."""

    def digits(n: int) -> str:
        return "".join(str(int(d)) for d in rng.integers(0, 10, n))

    if kind == "US_SSN":
        area = int(rng.choice([a for a in range(1, 900) if a != 666]))
        groups = [
            f"{area:03d}",
            f"{int(rng.integers(1, 100)):02d}",
            f"{int(rng.integers(1, 10000)):04d}",
        ]
        return "-".join(groups), groups
    if kind == "CREDIT_CARD":
        prefix = str(rng.choice(["4", "51", "52", "53", "54", "55"]))
        card = _luhn_complete(prefix + digits(15 - len(prefix)))
        groups = [card[i : i + 4] for i in range(0, 16, 4)]
        return " ".join(groups), groups
    if kind == "PHONE_NUMBER":
        groups = [
            str(int(rng.integers(2, 10))) + digits(2),
            str(int(rng.integers(2, 10))) + digits(2),
            digits(4),
        ]
        return f"{groups[0]}-{groups[1]}-{groups[2]}", groups
    first, last = str(rng.choice(_FIRST)), str(rng.choice(_LAST))
    local = str(
        rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}{int(rng.integers(1, 99))}"])
    )
    return f"{local}@{rng.choice(_DOMAINS)}.{rng.choice(_TLDS)}", []


def items(per_type: int, seed: int, types: tuple[str, ...]) -> list[dict[str, Any]]:
    """``per_type`` sentences per type: type, value, groups, context phrase, text."""
    rng = np.random.default_rng(seed)
    out = []
    for kind in types:
        for _ in range(per_type):
            value, groups = make_value(kind, rng)
            context = str(rng.choice(CONTEXT[kind]))
            out.append(
                {
                    "type": kind,
                    "value": value,
                    "groups": groups,
                    "context": context,
                    "text": f"{context} {value}.",
                }
            )
    return out


def espeak_clip(
    item: dict[str, Any], voice: str, rate: int
) -> tuple[np.ndarray, int, float, float]:
    """The sentence said by eSpeak with the value read as people read it."""
    from xml.sax.saxutils import escape

    from polyfuse.datasets.speech import Espeak

    spoken = (
        escape(read_email(item["value"]))
        if item["type"] == "EMAIL_ADDRESS"
        else read_number(item["value"])
    )
    ssml = f'<speak>{escape(item["context"])} <mark name="s"/> {spoken} <mark name="e"/>.</speak>'
    tts = Espeak.get()
    samples, marks = tts.say_ssml(ssml, voice=voice, rate=rate)
    return samples, tts.sample_rate, marks["s"], marks["e"]


def fsdd_clip(
    item: dict[str, Any], recordings: Any, speaker: str, rng: np.random.Generator
) -> tuple[np.ndarray, int, float, float]:
    """The context phrase (eSpeak en-us) then the digits by ``speaker`` from FSDD."""
    from polyfuse.datasets.speech import Espeak
    from polyfuse.datasets.spoken_numbers import SAMPLE_RATE, assemble_number
    from polyfuse.modalities.readers.audio import resample

    tts = Espeak.get()
    lead = resample(tts.say(item["context"], voice="en-us", rate=160), tts.sample_rate, SAMPLE_RATE)
    number = assemble_number(recordings, item["groups"], speaker, rng, lead=lead)
    return number.samples, SAMPLE_RATE, number.start, number.end


def scan_source(
    clips: list[tuple[dict[str, Any], tuple[np.ndarray, int, float, float]]],
    pii: Any,
    source: str = "",
    dump: Path | None = None,
) -> dict[str, Any]:
    """Both passes over every clip: located and value scores, latency, stretches re-decoded."""
    from polyfuse.guard.readers.asr import load_audio
    from polyfuse.guard.scanners.audio import AudioScanner

    first, second = AudioScanner([pii], second_pass=False), AudioScanner([pii])
    found: dict[str, list[Any]] = {"first": [], "second": []}
    values: dict[str, list[Any]] = {"first": [], "second": []}
    latency: dict[str, list[float]] = {"first": [], "second": []}
    gold_times, gold_values, redecoded = [], [], 0
    for item, (samples, sr, start, end) in clips:
        t0 = time.perf_counter()
        x = load_audio((samples, sr))
        words = first.words((x, 16_000))
        t1 = time.perf_counter()
        one = first.analyse_words(x, words)
        t2 = time.perf_counter()
        two = second.analyse_words(x, words)
        t3 = time.perf_counter()
        latency["first"].append(t2 - t0)
        latency["second"].append((t1 - t0) + (t3 - t2))
        redecoded += len(two.redecoded)
        for name, res in (("first", one), ("second", two)):
            found[name].append([(f.type, f.location.seconds) for f in res.findings])
            values[name].append([(f.type, f.text) for f in res.findings])
        if dump is not None:
            record = {"source": source, **item, "start": start, "end": end}
            record["heard"] = two.transcript.text
            record["redecoded"] = [(r.kind, r.start, r.end) for r in two.redecoded]
            for name, res in (("first", one), ("second", two)):
                record[name] = [(f.type, f.text, f.location.seconds) for f in res.findings]
            with dump.open("a") as out_file:
                out_file.write(json.dumps(record) + "\n")
        gold_times.append([(item["type"], start, end)])
        gold_values.append([(item["type"], item["value"])])
    out: dict[str, Any] = {"n": len(clips), "redecoded": redecoded}
    for name in ("first", "second"):
        out[name] = {
            "located": score_located(found[name], gold_times, TYPES),
            "value": score(values[name], gold_values, TYPES),
            "p50_ms": 1000 * statistics.median(latency[name]),
            "p95_ms": 1000 * sorted(latency[name])[int(0.95 * (len(latency[name]) - 1))],
        }
    return out


def print_source(name: str, res: dict[str, Any], text: dict[str, dict[str, float]]) -> None:
    print(f"\n{name}: {res['n']} clips, {res['redecoded']} stretches decoded again")
    print(
        "| type | gold | text recall | 1st pass located | 2nd pass located | 2nd / text "
        "| 1st value | 2nd value |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for t in TYPES:
        first, second = res["first"]["located"][t], res["second"]["located"][t]
        if not first["gold"]:
            continue
        ratio = second["recall"] / text[t]["recall"] if text[t]["recall"] else float("nan")
        print(
            f"| {t} | {int(first['gold'])} | {text[t]['recall']:.3f} | {first['recall']:.3f} | "
            f"**{second['recall']:.3f}** | {ratio:.2f} | "
            f"{res['first']['value'][t]['recall']:.3f} | "
            f"{res['second']['value'][t]['recall']:.3f} |"
        )
    one, two = res["first"], res["second"]
    print(
        f"latency p50/p95 ms: first pass {one['p50_ms']:.0f}/{one['p95_ms']:.0f}, "
        f"second pass {two['p50_ms']:.0f}/{two['p95_ms']:.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--per-type", type=int, default=12, help="sentences per type and source")
    parser.add_argument("--sources", default="espeak-dev,espeak-held,fsdd")
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--dump", type=Path, help="write transcripts and findings (JSONL)")
    args = parser.parse_args()
    sources = args.sources.split(",")
    if unknown := set(sources) - set(SOURCES):
        parser.error(f"unknown source(s) {sorted(unknown)}")

    from polyfuse.guard.detectors.pii import TextPII

    pii = TextPII()
    results: dict[str, Any] = {}
    for source in sources:
        types = DIGIT_TYPES if source == "fsdd" else TYPES
        batch = items(args.per_type, args.seed + SOURCES.index(source), types)
        text = score(
            [[(f.type, f.text) for f in pii.detect(it["text"])] for it in batch],
            [[(it["type"], it["value"])] for it in batch],
            TYPES,
        )
        if source == "fsdd":
            from polyfuse.datasets.spoken_numbers import DigitRecordings

            recordings = DigitRecordings(Path(args.data) / "fsdd")
            rng = np.random.default_rng(args.seed)
            speakers = recordings.speakers
            clips = [
                (it, fsdd_clip(it, recordings, speakers[i % len(speakers)], rng))
                for i, it in enumerate(batch)
            ]
        else:
            voices = VOICES if source == "espeak-dev" else HELD_VOICES
            clips = [(it, espeak_clip(it, *voices[i % len(voices)])) for i, it in enumerate(batch)]
        results[source] = scan_source(clips, pii, source, args.dump)
        results[source]["text"] = text
        print_source(source, results[source], text)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"command": " ".join(["python", *sys.argv]), "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
