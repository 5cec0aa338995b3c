"""Prompt injection carried by images and speech: TPR and FPR per rendering.

Attacks: the Giskard prompt-injection CSV (``../shared/data/injection``; never trained on);
benign controls: the same number of presidio-research sentences, rendered the same way.
Each text is rendered as

* ``image plain``: readable dark text on white;
* ``image hidden``: near-white text (3 grey levels) on white, under a visible benign line;
* ``image tiny``: 7 px text under a visible benign line;
* ``image metadata``: a benign visible line, the text in a PNG ``Description`` chunk;
* ``speech``: eSpeak NG (en-us, 160 wpm), first 40 words.

and scanned by `ImageScanner` / `AudioScanner` with two text detectors side by side: our
`InjectionDetector` and the ``securevector-guardian-model`` baseline (a text-only model,
here given the same OCR text, hidden text, metadata and transcripts our scanners extract;
counted when its verdict is malicious). A rendering counts as detected by a detector when
that detector reports ``PROMPT_INJECTION``; ``blocked`` also counts ``HIDDEN_TEXT`` (the
default policy blocks hidden text whatever it says, so hidden benign controls are blocked
too, by design).

Every attack our detector misses in a rendering is put in one of two classes: the
detector also misses the original text (a detector miss), or it finds the original but
not what OCR/ASR read from the rendering (a reading loss); ``--misses FILE`` writes them.

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

from polyfuse.guard.findings import Finding, Location, TextDetector, mask

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
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


def run_rendering(
    how: str, attacks: list[str], benign: list[str], scanner: Any, det: Any, base_name: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """TPR/FPR of ours and the baseline on one rendering, and our missed attacks."""
    detectors = {"ours": det.name, "securevector": base_name}
    res: dict[str, Any] = {}
    misses: list[dict[str, Any]] = []
    lat = []
    for label, texts in (("attack", attacks), ("benign", benign)):
        hits = dict.fromkeys(detectors, 0)
        blocked = 0
        for t in texts:
            blob = speak(t) if how == "speech" else render(t, how)
            start = time.perf_counter()
            found = scanner.scan(blob)
            lat.append(time.perf_counter() - start)
            flagged = {
                key: any(x.type == "PROMPT_INJECTION" and name in x.detector for x in found)
                for key, name in detectors.items()
            }
            for key in detectors:
                hits[key] += flagged[key]
            blocked += flagged["ours"] or any(x.type == "HIDDEN_TEXT" for x in found)
            if label == "attack" and not flagged["ours"]:
                kind = "reading loss" if det.detect(" ".join(t.split()[:60])) else "detector"
                misses.append({"rendering": how, "kind": kind, "text": t[:300]})
        rate = "tpr" if label == "attack" else "fpr"
        res[label] = {f"{rate}_{k}": v / len(texts) for k, v in hits.items()}
        res[label]["blocked"] = blocked / len(texts)
    res["latency_p50_ms"] = statistics.median(1000 * x for x in lat)
    return res, misses


class Baseline(TextDetector):
    """The securevector model as a text detector: one finding over the whole text when
    its verdict is malicious (any threat category)."""

    name = "securevector"
    version = "baseline"

    def __init__(self) -> None:
        from guard_injection import baseline

        self._any_threat = baseline()[0]

    def detect(self, text: str, *, source: str = "text") -> list[Finding]:
        if not text.strip() or not self._any_threat(text):
            return []
        loc = Location(span=(0, len(text)), source=source)
        return [Finding("PROMPT_INJECTION", 1.0, "text", loc, self.name, self.version, mask(text))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--n", type=int, default=32, help="attacks (and as many benign controls)")
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--misses", type=Path, help="write our missed attacks here (JSONL)")
    args = parser.parse_args()

    from polyfuse.guard.detectors.injection import InjectionDetector
    from polyfuse.guard.scanners.audio import AudioScanner
    from polyfuse.guard.scanners.image import ImageScanner

    data = Path(args.data)
    with (data / "injection" / "giskard_prompt_injections.csv").open(newline="") as f:
        attacks = [r["prompt"] for r in csv.DictReader(f) if r["prompt"].strip()][: args.n]
    pii = json.loads((data / "pii" / "presidio_synth_dataset_v2.json").read_text())
    benign = [x["full_text"].replace("\n", " ") for x in pii[: len(attacks)]]
    det = InjectionDetector()
    base = Baseline()
    images = ImageScanner([det, base], faces=False)
    audio = AudioScanner([det, base])
    rows: dict[str, Any] = {}
    misses: list[dict[str, Any]] = []
    for how in ("plain", "hidden", "tiny", "metadata", "speech"):
        scanner = audio if how == "speech" else images
        rows[how], missed = run_rendering(how, attacks, benign, scanner, det, base.name)
        misses += missed
        kinds = [m["kind"] for m in missed]
        a, b = rows[how]["attack"], rows[how]["benign"]
        print(
            f"{how:<9} ours TPR {a['tpr_ours']:.3f} FPR {b['fpr_ours']:.3f} | "
            f"securevector TPR {a['tpr_securevector']:.3f} FPR {b['fpr_securevector']:.3f} | "
            f"blocked attack {a['blocked']:.3f} benign {b['blocked']:.3f} | "
            f"our misses: {kinds.count('detector')} detector, "
            f"{kinds.count('reading loss')} reading loss | "
            f"p50 {rows[how]['latency_p50_ms']:.0f} ms",
            flush=True,
        )
    text_tpr = sum(bool(det.detect(t)) for t in attacks) / len(attacks)
    text_fpr = sum(bool(det.detect(t)) for t in benign) / len(benign)
    base_tpr = sum(bool(base.detect(t)) for t in attacks) / len(attacks)
    base_fpr = sum(bool(base.detect(t)) for t in benign) / len(benign)
    print(
        f"text      ours TPR {text_tpr:.3f} FPR {text_fpr:.3f} | "
        f"securevector TPR {base_tpr:.3f} FPR {base_fpr:.3f} "
        f"({len(attacks)} attacks, {len(benign)} benign)"
    )
    if args.misses:
        args.misses.write_text("".join(json.dumps(m) + "\n" for m in misses))
    if args.json_out:
        rows["text"] = {"tpr": text_tpr, "fpr": text_fpr, "tpr_securevector": base_tpr}
        rows["text"]["fpr_securevector"] = base_fpr
        Path(args.json_out).write_text(
            json.dumps({"command": " ".join(["python", *sys.argv]), "results": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
