"""The firewall on video: PII shown in the frames and PII said in the soundtrack.

Each clip (MP4, H.264 + AAC, 5 fps) shows one sentence with a PII value as a screen photo
(`guard_pii.render_image`: rotated, blurred, JPEG-compressed, on a 960 x 540 canvas) for
two seconds between blank frames, and says another value of another type in its
soundtrack (`guard_spoken.espeak_clip`: eSpeak in `guard_pii.VOICES`, after a context
phrase). Values are random (seeded; valid SSN areas, Luhn-valid cards, NANP phones,
made-up e-mails). `Guard().scan` reads the video (frames at 1 per second through the image
scanner, the soundtrack through the audio scanner); scored:

* **shown**: a frame finding (``frame:...``) of the type whose time range overlaps the
  two seconds the value is on screen;
* **spoken**: a soundtrack finding (``soundtrack:...``) of the type overlapping the
  seconds where the value is said (0.3 s slack), like `guard_spoken.py`'s located recall;

and against the same content scanned as separate files in the same run (the still image
through the image scanner, the speech as WAV through the audio scanner): the recall the
video path keeps, and its time per minute of video next to the separate scans.

    python benchmarks/guard_video.py --per-type 6
"""

from __future__ import annotations

import argparse
import io
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

from guard_pii import VOICES, render_image  # noqa: E402
from guard_spoken import TYPES, espeak_clip, items  # noqa: E402

FPS = 5
SIZE = (960, 540)
LEAD_S, SHOW_S = 1.0, 2.0  # the value is on screen from 1 s to 3 s


def canvas(jpeg: bytes) -> np.ndarray:
    """The rendered sentence pasted in the middle of a mid-grey 960 x 540 frame."""
    from PIL import Image

    img = Image.open(io.BytesIO(jpeg)).convert("RGB")
    img.thumbnail((SIZE[0] - 40, SIZE[1] - 40))
    frame = Image.new("RGB", SIZE, (128, 128, 128))
    frame.paste(img, ((SIZE[0] - img.width) // 2, (SIZE[1] - img.height) // 2))
    return np.asarray(frame)


def write_video(picture: np.ndarray, wave: np.ndarray, rate: int) -> tuple[bytes, float]:
    """The MP4 and its length: blank, the picture for `SHOW_S`, blank; the speech from 0 s."""
    import fractions

    import av

    seconds = max(LEAD_S + SHOW_S + 1.0, len(wave) / rate + 0.5)
    blank = np.full_like(picture, 128)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height = SIZE
        video.pix_fmt = "yuv420p"
        video.options = {"preset": "veryfast", "crf": "23"}
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "mono"
        for i in range(round(seconds * FPS)):
            t = i / FPS
            shown = LEAD_S <= t < LEAD_S + SHOW_S
            frame = av.VideoFrame.from_ndarray(picture if shown else blank, format="rgb24")
            out.mux(video.encode(frame))
        out.mux(video.encode())
        track = np.zeros(round(seconds * rate), np.float32)
        track[: len(wave)] = wave[: len(track)]
        for start in range(0, len(track), 1024):
            piece = av.AudioFrame.from_ndarray(
                track[None, start : start + 1024], format="fltp", layout="mono"
            )
            piece.sample_rate, piece.pts = rate, start
            piece.time_base = fractions.Fraction(1, rate)
            out.mux(audio.encode(piece))
        out.mux(audio.encode())
    return buf.getvalue(), seconds


def overlaps(a: tuple[float, float] | None, s: float, e: float, slack: float) -> bool:
    return a is not None and a[0] <= e + slack and a[1] >= s - slack


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--per-type", type=int, default=6, help="clips per PII type shown")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()

    import soundfile as sf

    from polyfuse.guard.engine import Guard

    shown_items = items(args.per_type, args.seed, TYPES)
    spoken_items = items(args.per_type, args.seed + 1, TYPES)
    spoken_items = (
        spoken_items[len(TYPES) // 2 * args.per_type :]
        + spoken_items[: len(TYPES) // 2 * args.per_type]
    )  # another type is said than shown
    guard = Guard()
    guard.warm_up()
    rows: list[dict[str, Any]] = []
    for k, (show, say) in enumerate(zip(shown_items, spoken_items, strict=True)):
        picture = canvas(render_image(show["text"], k))
        voice, rate_wpm = VOICES[k % len(VOICES)]
        wave, rate, s, e = espeak_clip(say, voice, rate_wpm)
        data, seconds = write_video(picture, wave, rate)
        t0 = time.perf_counter()
        result = guard.scan(data, name=f"clip{k}.mp4")
        video_s = time.perf_counter() - t0
        found = [f for f, _ in result.findings]
        # the same content as two files, in the same run
        t0 = time.perf_counter()
        still = guard.image_scanner.scan(picture)
        wav = io.BytesIO()
        sf.write(wav, wave, rate, format="WAV")
        heard = guard.audio_scanner.scan(wav.getvalue())
        files_s = time.perf_counter() - t0
        rows.append(
            {
                "shown": show["type"],
                "spoken": say["type"],
                "seconds": seconds,
                "error": result.error,
                "video_shown": any(
                    f.type == show["type"]
                    and f.location.source.startswith("frame:")
                    and overlaps(f.location.seconds, LEAD_S, LEAD_S + SHOW_S, 0.0)
                    for f in found
                ),
                "video_spoken": any(
                    f.type == say["type"]
                    and f.location.source.startswith("soundtrack:")
                    and overlaps(f.location.seconds, s, e, 0.3)
                    for f in found
                ),
                "files_shown": any(f.type == show["type"] for f in still),
                "files_spoken": any(
                    f.type == say["type"] and overlaps(f.location.seconds, s, e, 0.3) for f in heard
                ),
                "video_s": video_s,
                "files_s": files_s,
            }
        )
        print(f"clip {k}: {video_s:.1f} s video scan, {files_s:.1f} s as files", file=sys.stderr)

    print(f"\n{len(rows)} clips, {sum(r['seconds'] for r in rows) / 60:.1f} min of video\n")
    print("| type | shown: video / files | spoken: video / files |")
    print("|---|---|---|")
    for t in TYPES:
        sh = [r for r in rows if r["shown"] == t]
        sp = [r for r in rows if r["spoken"] == t]

        def rate(rs: list[dict[str, Any]], key: str) -> str:
            return f"{sum(r[key] for r in rs) / len(rs):.3f}" if rs else "-"

        print(
            f"| {t} | {rate(sh, 'video_shown')} / {rate(sh, 'files_shown')} | "
            f"{rate(sp, 'video_spoken')} / {rate(sp, 'files_spoken')} |"
        )
    per_min_video = [r["video_s"] / (r["seconds"] / 60) for r in rows]
    per_min_files = [r["files_s"] / (r["seconds"] / 60) for r in rows]
    mv, mf = statistics.median(per_min_video), statistics.median(per_min_files)
    print(
        f"\nscan time per minute of video, median over clips: video {mv:.1f} s, "
        f"the same content as files {mf:.1f} s (ratio {mv / mf:.2f}); per clip p50 "
        f"{statistics.median(r['video_s'] for r in rows):.2f} s vs "
        f"{statistics.median(r['files_s'] for r in rows):.2f} s"
    )
    errors = [r["error"] for r in rows if r["error"]]
    if errors:
        print(f"errors: {errors}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
