"""Render PII sentences with eSpeak NG, transcribe them with Whisper base, and check the
normalised transcript (what the PII detectors see).

For each clip it prints whether the normalised transcript contains the SSN / card / phone
digits (as one digit run, separators ``-`` or space allowed) or the e-mail address exactly,
then the hit rate per kind, the median transcription latency per clip and the real-time
factor (transcription seconds / audio seconds; model load excluded).

    .venv/bin/python benchmarks/guard_audio_render.py [--out DIR] [--beam 5]

``--out DIR`` also writes the WAV files and a ``manifest.jsonl`` (text, kind, target,
voice, rate, transcript) for the PII benchmark.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import numpy as np

from polyfuse.datasets.speech import Espeak
from polyfuse.guard.readers.asr import _whisper, load_audio, transcribe
from polyfuse.guard.readers.spoken import normalise_spoken

# (kind, target, sentence). Valid-looking values: SSNs outside the reserved ranges
# (no 000/666/9xx area, no 00 group, no 0000 serial), Luhn-valid cards, 555-01xx phones.
SENTENCES = [
    ("US_SSN", "287654312", "My social security number is 287-65-4312."),
    ("US_SSN", "531428870", "My SSN is 5 3 1, 4 2, 8 8 7 0."),
    ("CREDIT_CARD", "4539148803436467", "My card number is 4 5 3 9, 1 4 8 8, 0 3 4 3, 6 4 6 7."),
    ("PHONE_NUMBER", "4155550132", "Call me at 4 1 5, 5 5 5, 0 1 3 2 tomorrow."),
    ("EMAIL_ADDRESS", "anna.lee@gmail.com", "My email is anna.lee@gmail.com."),
]
VOICES = ("en-us", "en+m3", "en-us+f3")
RATES = (140, 180)


def luhn_ok(digits: str) -> bool:
    """Luhn checksum of a card number."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def contains(text: str, kind: str, target: str) -> bool:
    """Whether ``text`` holds ``target``: an e-mail verbatim, digits as one run that may
    contain single ``-`` or spaces between digits."""
    if kind == "EMAIL_ADDRESS":
        return target in text.lower()
    runs = re.findall(r"\d(?:[- ]?\d)*", text)
    return any(re.sub(r"\D", "", r) == target for r in runs)


def main() -> None:
    """Render, transcribe, check, print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="also write WAVs and manifest.jsonl here")
    ap.add_argument("--beam", type=int, default=5, help="Whisper beam size")
    args = ap.parse_args()
    assert luhn_ok("4539148803436467")

    tts = Espeak.get()
    t0 = time.perf_counter()
    _whisper("base")
    print(f"model load {time.perf_counter() - t0:.2f} s")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind, target, sentence in SENTENCES:
        for voice in VOICES:
            for rate in RATES:
                x = tts.say(sentence, voice, rate=rate)
                seconds = x.size / tts.sample_rate
                samples = load_audio((x, tts.sample_rate))
                t = time.perf_counter()
                words = transcribe(samples, 16000, beam_size=args.beam)
                latency = time.perf_counter() - t
                text = normalise_spoken(words).text
                hit = contains(text, kind, target)
                rows.append((kind, hit, latency, seconds))
                print(
                    f"{'HIT ' if hit else 'MISS'} {kind:13} {voice:9} {rate} "
                    f"{seconds:4.1f}s {latency:4.2f}s  {text!r}"
                )
                if args.out:
                    import soundfile as sf

                    name = f"{kind.lower()}_{target[:6]}_{voice.replace('+', '_')}_{rate}.wav"
                    sf.write(args.out / name, x, tts.sample_rate)
                    rec = {
                        "audio": name,
                        "text": sentence,
                        "kind": kind,
                        "target": target,
                        "voice": voice,
                        "rate": rate,
                        "transcript": text,
                        "hit": hit,
                    }
                    with (args.out / "manifest.jsonl").open("a") as f:
                        f.write(json.dumps(rec) + "\n")
    print()
    for kind in dict.fromkeys(k for k, *_ in rows):
        hits = [h for k, h, *_ in rows if k == kind]
        print(f"{kind:13} {sum(hits)}/{len(hits)} transcripts contain the value exactly")
    total = sum(h for _, h, *_ in rows)
    lat = [r[2] for r in rows]
    audio_s = float(np.sum([r[3] for r in rows]))
    print(f"all           {total}/{len(rows)}")
    print(
        f"median latency {statistics.median(lat):.2f} s per clip "
        f"(median clip {statistics.median(r[3] for r in rows):.1f} s), "
        f"real-time factor {sum(lat) / audio_s:.3f}"
    )


if __name__ == "__main__":
    main()
