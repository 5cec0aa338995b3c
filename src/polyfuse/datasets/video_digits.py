"""Video digits: clips of a handwritten digit appearing and moving while the same digit is
spoken, written as MP4 (H.264 + AAC) through PyAV.

Built from an MNIST ``.npz`` (``images``, ``labels``) and a folder of Free Spoken Digit
recordings named ``<digit>_<speaker>_<take>.wav`` into ``clips/`` plus ``train/val/test.jsonl``
manifests (keys ``video``, ``label``, ``offset_ms``, ``audio_track``, ``speaker``). Splits
are speaker-disjoint like AV-digits: the test speaker never appears in training or
validation, and test images come from a part of MNIST training never sees.

Each clip lasts `VideoDigitsSpec.seconds`: a black canvas; at `onset` s the digit appears
and glides along a random straight path while it is spoken (at least 0.6 s), then vanishes.
The recording's leading and trailing silence is cut (`trim_silence`), so in sync the speech
starts as the digit appears: the event a sync model or the signal baseline lines up.
The recording starts at ``onset + offset_ms / 1000`` s in the soundtrack (``offset_ms``
drawn per row from ``--offsets-ms``; positive: the sound is late), so every row carries its
known audio/picture offset. A share of the rows has no audio stream at all and another
share a silent track (``audio_track``: ``speech``, ``none`` or ``silent``), so a missing
soundtrack is part of every split.

    python -m polyfuse.datasets.video_digits --mnist ../shared/data/mnist/mnist_test_0_8000.npz \\
        --fsdd ../shared/data/fsdd --out work/video_digits --offsets-ms 0,40,-40
"""

from __future__ import annotations

import argparse
import fractions
import io
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyfuse.core.errors import PolyfuseError
from polyfuse.core.progress import bar
from polyfuse.data.manifest import write_jsonl

log = logging.getLogger("polyfuse.datasets")

#: Bumped when the files or manifest columns a spec produces change (forces a rebuild).
BUILD_FORMAT = 2
#: MNIST rows the training side draws from; test images come from the rest.
TRAIN_IMAGES = 6000


@dataclass(frozen=True)
class VideoDigitsSpec:
    """How to build a video-digits set.

    Attributes:
        test_speaker: FSDD speaker held out for testing.
        val_every: every ``val_every``-th take of the training speakers goes to validation.
        takes: use takes ``0 .. takes-1`` of each digit and speaker (50: all of FSDD).
        offsets_ms: audio offsets against the picture, one drawn per row.
        no_audio: share of rows written without an audio stream.
        silent: share of rows written with a silent audio track.
        seconds: clip length.
        onset: when the digit appears (s).
        fps: frame rate.
        size: canvas side in pixels (the digit is 28 x 28).
        image_noise: std of Gaussian pixel noise (0..1 scale) on every frame.
        seed: seed of pairing, paths and noise.
    """

    test_speaker: str = "theo"
    val_every: int = 10
    takes: int = 50
    offsets_ms: tuple[int, ...] = (0,)
    no_audio: float = 0.1
    silent: float = 0.1
    seconds: float = 1.6
    onset: float = 0.5
    fps: int = 10
    size: int = 56
    image_noise: float = 0.0
    seed: int = 0


def build(
    mnist: str | Path,
    fsdd: str | Path,
    out_dir: str | Path,
    spec: VideoDigitsSpec | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Write clips and ``train/val/test.jsonl`` under ``out_dir``; reuses a previous build
    with the same spec. Returns split name -> manifest path."""
    spec = spec or VideoDigitsSpec()
    mnist, fsdd, out_dir = Path(mnist), Path(fsdd), Path(out_dir)
    recordings = _recordings(fsdd, spec)
    _check(mnist, spec, recordings)
    manifests = {s: out_dir / f"{s}.jsonl" for s in ("train", "val", "test")}
    stamp = out_dir / "spec.json"
    same = stamp.exists() and json.loads(stamp.read_text()) == _jsonable(spec)
    if same and all(p.exists() for p in manifests.values()):
        return manifests
    data = np.load(mnist)
    images, labels = data["images"], data["labels"].astype(int)
    pools = {
        "train": _by_label(labels, range(0, TRAIN_IMAGES)),
        "test": _by_label(labels, range(TRAIN_IMAGES, len(labels))),
    }
    rng = np.random.default_rng(spec.seed)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict[str, object]]] = {"train": [], "val": [], "test": []}
    for wav in bar(recordings, enabled=progress, desc="building video digits"):
        digit, speaker, take = wav.stem.split("_")
        split = _split(speaker, int(take), spec)
        idx = int(rng.choice(pools["test" if split == "test" else "train"][int(digit)]))
        offset = int(rng.choice(spec.offsets_ms))
        track = _track(rng, spec)
        name = f"clips/{wav.stem}.mp4"
        speech = _read_wav(wav)
        clip = Clip(images[idx], speech, offset, track, spec, rng)
        (out_dir / name).write_bytes(clip.encode())
        rows[split].append(
            {
                "id": wav.stem,
                "video": name,
                "label": int(digit),
                "offset_ms": offset,
                "audio_track": track,
                "speaker": speaker,
                "mnist_index": idx,
            }
        )
    for split, path in manifests.items():
        write_jsonl(path, rows[split])
    stamp.write_text(json.dumps(_jsonable(spec)))
    log.info("video digits: %s", {s: len(r) for s, r in rows.items()})
    return manifests


def _recordings(fsdd: Path, spec: VideoDigitsSpec) -> list[Path]:
    found = sorted(fsdd.glob("*_*_*.wav"))
    return [w for w in found if int(w.stem.split("_")[2]) < spec.takes]


def _check(mnist: Path, spec: VideoDigitsSpec, recordings: list[Path]) -> None:
    if not mnist.is_file():
        raise PolyfuseError(f"{mnist} not found", hint="pass an MNIST .npz (images, labels)")
    if not recordings:
        raise PolyfuseError(
            "no FSDD recordings (<digit>_<speaker>_<take>.wav) found",
            hint="pass the shared data's fsdd folder",
        )
    speakers = {w.stem.split("_")[1] for w in recordings}
    if spec.test_speaker not in speakers:
        raise PolyfuseError(
            f"unknown speaker '{spec.test_speaker}'", hint=", ".join(sorted(speakers))
        )
    if not spec.offsets_ms or max(abs(o) for o in spec.offsets_ms) >= 1000 * spec.onset:
        raise PolyfuseError(
            f"offsets must lie within +-{1000 * spec.onset:g} ms (the digit's onset)",
            hint="pass smaller --offsets-ms",
        )


def _split(speaker: str, take: int, spec: VideoDigitsSpec) -> str:
    if speaker == spec.test_speaker:
        return "test"
    return "val" if take % spec.val_every == 0 else "train"


def _track(rng: np.random.Generator, spec: VideoDigitsSpec) -> str:
    u = rng.random()
    return (
        "none" if u < spec.no_audio else "silent" if u < spec.no_audio + spec.silent else "speech"
    )


def _by_label(labels: np.ndarray, indices: range) -> dict[int, np.ndarray]:
    idx = np.array(list(indices))
    return {d: idx[labels[idx] == d] for d in range(10)}


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    wave, rate = sf.read(path, dtype="float32", always_2d=True)
    return trim_silence(wave.mean(axis=1), int(rate)), int(rate)


def trim_silence(wave: np.ndarray, rate: int, floor_db: float = -35.0) -> np.ndarray:
    """The recording from its first to its last 10 ms window within ``floor_db`` of its
    loudest one (20 ms kept either side), so a clip's speech starts when its digit appears
    (FSDD recordings hold 0-300 ms of silence around the word)."""
    hop = max(1, rate // 100)
    n = len(wave) // hop
    if n < 2:
        return wave
    rms = np.sqrt((wave[: n * hop].reshape(n, hop) ** 2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) >= floor_db)
    margin = 2 * hop
    return wave[max(0, loud[0] * hop - margin) : min(len(wave), (loud[-1] + 1) * hop + margin)]


class Clip:
    """One clip's pictures and soundtrack, encoded by `encode`.

    Args:
        digit: the 28 x 28 uint8 MNIST image.
        speech: ``(samples, rate)`` of the spoken digit.
        offset_ms: the soundtrack's offset against the picture.
        track: ``speech``, ``silent`` or ``none``.
        spec: the build's parameters.
        rng: path and noise source.
    """

    def __init__(
        self,
        digit: np.ndarray,
        speech: tuple[np.ndarray, int],
        offset_ms: int,
        track: str,
        spec: VideoDigitsSpec,
        rng: np.random.Generator,
    ) -> None:
        self.digit, (self.wave, self.rate) = digit, speech
        self.offset, self.track, self.spec = offset_ms / 1000.0, track, spec
        span = spec.size - digit.shape[0]
        self.start, self.end = rng.integers(0, span + 1, size=2), rng.integers(0, span + 1, size=2)
        self.noise_seed = int(rng.integers(1 << 31))

    @property
    def visible(self) -> tuple[float, float]:
        """When the digit is on screen: from the onset while the digit is spoken (at least
        0.6 s)."""
        spoken = self.wave.size / self.rate
        return self.spec.onset, min(self.spec.seconds, self.spec.onset + max(0.6, spoken + 0.2))

    def frames(self) -> list[np.ndarray]:
        """uint8 RGB ``(size, size, 3)`` frames."""
        spec, (t0, t1) = self.spec, self.visible
        rng = np.random.default_rng(self.noise_seed)
        out = []
        for i in range(round(spec.seconds * spec.fps)):
            t = i / spec.fps
            canvas = np.zeros((spec.size, spec.size), np.float32)
            if t0 <= t < t1:
                a = (t - t0) / max(t1 - t0, 1e-6)
                r, c = np.round(self.start + a * (self.end - self.start)).astype(int)
                canvas[r : r + 28, c : c + 28] = self.digit / 255.0
            if spec.image_noise:
                canvas = np.clip(canvas + rng.normal(0, spec.image_noise, canvas.shape), 0, 1)
            grey = (canvas * 255 + 0.5).astype(np.uint8)
            out.append(np.repeat(grey[:, :, None], 3, axis=2))
        return out

    def soundtrack(self) -> np.ndarray:
        """float32 mono samples of the whole clip: the speech placed at onset + offset."""
        n = round(self.spec.seconds * self.rate)
        track = np.zeros(n, np.float32)
        if self.track == "speech":
            at = round((self.spec.onset + self.offset) * self.rate)
            piece = self.wave[: max(0, n - at)]
            track[at : at + piece.size] = piece
        return track

    def encode(self) -> bytes:
        """The clip as MP4: H.264 frames, and an AAC track unless ``track`` is ``none``."""
        import av

        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as out:
            video = out.add_stream("libx264", rate=self.spec.fps)
            video.width = video.height = self.spec.size
            video.pix_fmt = "yuv420p"
            video.options = {"preset": "veryfast", "crf": "20", "threads": "1"}
            audio = None
            if self.track != "none":
                audio = out.add_stream("aac", rate=self.rate)
                audio.layout = "mono"
            for frame in self.frames():
                out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(video.encode())
            if audio is not None:
                _mux_audio(out, audio, self.soundtrack(), self.rate)
        return buf.getvalue()


def _mux_audio(out: Any, stream: Any, wave: np.ndarray, rate: int, chunk: int = 1024) -> None:
    import av

    for start in range(0, wave.size, chunk):
        frame = av.AudioFrame.from_ndarray(
            wave[None, start : start + chunk], format="fltp", layout="mono"
        )
        frame.sample_rate, frame.pts = rate, start
        frame.time_base = fractions.Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode())


def _jsonable(spec: VideoDigitsSpec) -> dict[str, object]:
    data: dict[str, object] = json.loads(json.dumps(asdict(spec)))
    data["build_format"] = BUILD_FORMAT
    return data


def parse_offsets(text: str) -> tuple[int, ...]:
    """``"0,40,-40"`` -> ``(0, 40, -40)`` (milliseconds)."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise PolyfuseError(
            f"--offsets-ms: {text!r} is not a comma-separated list of integers",
            hint="e.g. --offsets-ms 0,40,-40,120,-120",
        ) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Build a video-digits set from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, required=True, help="MNIST .npz (images, labels)")
    parser.add_argument("--fsdd", type=Path, required=True, help="folder of FSDD-named WAVs")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--offsets-ms", default="0", help="audio offsets, e.g. 0,40,-40")
    parser.add_argument("--takes", type=int, default=50, help="takes per digit and speaker")
    parser.add_argument("--test-speaker", default="theo", help="speaker held out for testing")
    parser.add_argument("--image-noise", type=float, default=0.0, help="pixel noise std (0..1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    spec = VideoDigitsSpec(
        test_speaker=args.test_speaker,
        takes=args.takes,
        offsets_ms=parse_offsets(args.offsets_ms),
        image_noise=args.image_noise,
        seed=args.seed,
    )
    try:
        paths = build(args.mnist, args.fsdd, args.out, spec)
    except PolyfuseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
