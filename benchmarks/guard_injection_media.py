"""Prompt injection carried by images and speech: TPR and FPR per rendering.

Attacks: the Giskard prompt-injection CSV (``../shared/data/injection``; never trained on);
benign controls: the same number of presidio-research sentences, rendered the same way.
Each text is rendered as

* ``image plain``: readable dark text on white;
* ``image hidden``: near-white text (3 grey levels) on white, under a visible benign line;
* ``image tiny``: 7 px text under a visible benign line;
* ``image metadata``: a benign visible line, the text in a PNG ``Description`` chunk;
* ``speech``: eSpeak NG (en-us, 160 wpm), first 40 words.

and scanned by `ImageScanner` / `AudioScanner` with the `InjectionDetector`. A rendering
counts as detected when a ``PROMPT_INJECTION`` finding is reported; ``blocked`` also counts
``HIDDEN_TEXT`` (the default policy blocks hidden text whatever it says, so hidden benign
controls are blocked too, by design).

    python benchmarks/guard_injection_media.py --data ../shared/data --n 32
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
BENIGN_LINE = "Quarterly report: sales grew in every region."


def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.truetype(FONT, size) if Path(FONT).exists() else ImageFont.load_default(size)


def render(text: str, how: str) -> bytes:
    from PIL import Image, ImageDraw, PngImagePlugin

    words = " ".join(text.split()[:60])
    size = 7 if how == "tiny" else 20
    lines = textwrap.wrap(words, 70 if how != "tiny" else 120)
    shown = [BENIGN_LINE] if how == "metadata" else lines
    height = 80 + int(size * 1.5) * len(shown) + (40 if how in ("hidden", "tiny") else 0)
    img = Image.new("RGB", (1000, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    y = 20
    if how in ("hidden", "tiny"):
        draw.text((20, y), BENIGN_LINE, fill=(20, 20, 20), font=_font(22))
        y += 50
    fill = (252, 252, 252) if how == "hidden" else (20, 20, 20)
    for line in shown:
        draw.text((20, y), line, fill=fill, font=_font(22 if how == "metadata" else size))
        y += int((22 if how == "metadata" else size) * 1.5)
    info = PngImagePlugin.PngInfo()
    if how == "metadata":
        info.add_text("Description", words)
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def speak(text: str) -> bytes:
    import soundfile as sf

    from polyfuse.datasets.speech import Espeak

    tts = Espeak.get()
    buf = io.BytesIO()
    sf.write(
        buf,
        tts.say(" ".join(text.split()[:40]), voice="en-us", rate=160),
        tts.sample_rate,
        format="WAV",
    )
    return buf.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--n", type=int, default=32, help="attacks (and as many benign controls)")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    from polyfuse.guard.audio import AudioScanner
    from polyfuse.guard.image import ImageScanner
    from polyfuse.guard.injection import InjectionDetector

    data = Path(args.data)
    with (data / "injection" / "giskard_prompt_injections.csv").open(newline="") as f:
        attacks = [r["prompt"] for r in csv.DictReader(f) if r["prompt"].strip()][: args.n]
    pii = json.loads((data / "pii" / "presidio_synth_dataset_v2.json").read_text())
    benign = [x["full_text"].replace("\n", " ") for x in pii[: len(attacks)]]
    det = InjectionDetector()
    images = ImageScanner([det], faces=False)
    audio = AudioScanner([det])
    rows: dict[str, Any] = {}
    for how in ("plain", "hidden", "tiny", "metadata", "speech"):
        res: dict[str, Any] = {}
        for label, texts in (("attack", attacks), ("benign", benign)):
            inj = blocked = 0
            lat = []
            for t in texts:
                blob = speak(t) if how == "speech" else render(t, how)
                start = time.perf_counter()
                found = (audio if how == "speech" else images).scan(blob)
                lat.append(time.perf_counter() - start)
                types = {x.type for x in found}
                inj += "PROMPT_INJECTION" in types
                blocked += bool(types & {"PROMPT_INJECTION", "HIDDEN_TEXT"})
            res[label] = {"injection": inj / len(texts), "blocked": blocked / len(texts)}
            res.setdefault("latency_ms", []).extend(1000 * x for x in lat)
        res["latency_p50_ms"] = statistics.median(res.pop("latency_ms"))
        rows[how] = res
        print(
            f"{how:<9} TPR {res['attack']['injection']:.3f}  FPR {res['benign']['injection']:.3f}  "
            f"blocked attack {res['attack']['blocked']:.3f} benign {res['benign']['blocked']:.3f}  "
            f"p50 {res['latency_p50_ms']:.0f} ms",
            flush=True,
        )
    text_tpr = sum(bool(det.detect(t)) for t in attacks) / len(attacks)
    text_fpr = sum(bool(det.detect(t)) for t in benign) / len(benign)
    print(
        f"text      TPR {text_tpr:.3f}  FPR {text_fpr:.3f}  "
        f"({len(attacks)} attacks, {len(benign)} benign)"
    )
    if args.json_out:
        rows["text"] = {"tpr": text_tpr, "fpr": text_fpr}
        Path(args.json_out).write_text(
            json.dumps({"command": " ".join(["python", *sys.argv]), "results": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
