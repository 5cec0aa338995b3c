"""AV-digits: MNIST images paired with Free Spoken Digit audio by label.

Built from ``../shared/data`` (``mnist/``, ``fsdd/``, ``esc50_8k/``) into a work
folder of PNG/WAV files plus JSONL manifests. Splits are speaker-disjoint: the
test speaker never appears in training or validation. Test images come from a
disjoint part of MNIST.

Every build also lists the ESC-50 clips of the training side of the noise split (the
clips the ``hard`` variant mixes into training audio; never its test clips) in
``nonsignal_audio.txt``, the non-signal source of ``examples/av_digits/fused.yaml``
(``modalities.audio.substitute``).

Variants:
    ``clean``: untouched images and recordings.
    ``hard``: each modality alone is weak: images are degraded (heavy Gaussian
    noise plus a random occluding block), audio is mixed with ESC-50
    environmental noise at a low signal-to-noise ratio (noise clips split
    between train and test).
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from polyfuse.core.errors import PolyfuseError
from polyfuse.core.progress import bar
from polyfuse.data.manifest import write_jsonl

log = logging.getLogger("polyfuse.datasets")

SPEAKERS = ("george", "jackson", "nicolas", "theo", "yweweler")


@dataclass(frozen=True)
class AVDigitsSpec:
    """How to build one AV-digits variant.

    Attributes:
        variant: ``clean`` or ``hard``.
        test_speaker: FSDD speaker held out for testing.
        val_every: every ``val_every``-th take of the training speakers goes to validation.
        pairs: images paired with each training recording (more rows, same audio).
        image_noise: std of Gaussian pixel noise (0..1 scale) in the hard variant.
        occlusion: side of the random occluding square (pixels of 28) in the hard variant.
        snr_db: (low, high) range of audio SNR in dB in the hard variant.
        seed: seed for pairing and corruption.
    """

    variant: str = "clean"
    test_speaker: str = "theo"
    val_every: int = 10
    pairs: int = 1
    image_noise: float = 0.7
    occlusion: int = 12
    snr_db: tuple[float, float] = (-6.0, 0.0)
    seed: int = 0


def build(
    data_dir: str | Path,
    out_dir: str | Path,
    spec: AVDigitsSpec | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Write images, audio and ``train/val/test.jsonl`` under ``out_dir``.

    Reuses a previous build with the same spec. Returns split name -> manifest path.
    """
    spec = spec or AVDigitsSpec()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if spec.variant not in ("clean", "hard"):
        raise PolyfuseError(f"unknown AV-digits variant '{spec.variant}'", hint="clean or hard")
    if spec.test_speaker not in SPEAKERS:
        raise PolyfuseError(f"unknown speaker '{spec.test_speaker}'", hint=", ".join(SPEAKERS))
    for sub in ("mnist/mnist_test_0_8000.npz", "fsdd", "esc50_8k/meta.csv"):
        if not (data_dir / sub).exists():
            raise PolyfuseError(
                f"{data_dir / sub} not found", hint="pass the shared data folder (../shared/data)"
            )
    manifests = {s: out_dir / f"{s}.jsonl" for s in ("train", "val", "test")}
    write_nonsignal(data_dir / "esc50_8k", out_dir / NONSIGNAL)
    stamp = out_dir / "spec.json"
    if (
        stamp.exists()
        and json.loads(stamp.read_text()) == _jsonable(spec)
        and all(p.exists() for p in manifests.values())
    ):
        return manifests
    rng = np.random.default_rng(spec.seed)
    mnist = np.load(data_dir / "mnist" / "mnist_test_0_8000.npz")
    images, labels = mnist["images"], mnist["labels"].astype(int)
    pools = {
        "train": _by_label(labels, range(0, 6000)),
        "test": _by_label(labels, range(6000, 8000)),
    }
    noise = _noise_clips(data_dir / "esc50_8k") if spec.variant == "hard" else None
    (out_dir / "img").mkdir(parents=True, exist_ok=True)
    (out_dir / "wav").mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict[str, object]]] = {"train": [], "val": [], "test": []}
    recordings = sorted((data_dir / "fsdd").glob("*_*_*.wav"))
    for wav in bar(recordings, enabled=progress, desc=f"building AV-digits ({spec.variant})"):
        digit, speaker, take = wav.stem.split("_")
        split = (
            "test"
            if speaker == spec.test_speaker
            else "val"
            if int(take) % spec.val_every == 0
            else "train"
        )
        pool = pools["test" if split == "test" else "train"][int(digit)]
        audio, audio_meta = _audio(wav, out_dir, spec, rng, noise, split)
        for k in range(spec.pairs if split == "train" else 1):
            idx = int(rng.choice(pool))
            rows[split].append(
                {
                    "id": f"{wav.stem}-{k}",
                    "image": _image(images[idx], idx, out_dir, spec, rng, split),
                    "audio": audio,
                    "label": int(digit),
                    "speaker": speaker,
                    "mnist_index": idx,
                    **audio_meta,
                }
            )
    for split, path in manifests.items():
        write_jsonl(path, rows[split])
    stamp.write_text(json.dumps(_jsonable(spec)))
    log.info("AV-digits %s: %s", spec.variant, {s: len(r) for s, r in rows.items()})
    return manifests


#: Bumped when the files or manifest columns a spec produces change (forces a rebuild).
BUILD_FORMAT = 2


def _jsonable(spec: AVDigitsSpec) -> dict[str, object]:
    data: dict[str, object] = json.loads(json.dumps(asdict(spec)))
    data["build_format"] = BUILD_FORMAT
    return data


def _by_label(labels: np.ndarray, indices: range) -> dict[int, np.ndarray]:
    idx = np.array(list(indices))
    return {d: idx[labels[idx] == d] for d in range(10)}


#: The list of non-signal training clips a build writes (relative to the manifests).
NONSIGNAL = "nonsignal_audio.txt"


def noise_split(name: str) -> str:
    """``train`` or ``test``: the side of the ESC-50 split a clip belongs to (70/30 by a
    hash of its file name, so every build agrees)."""
    return "test" if zlib.crc32(name.encode()) % 10 < 3 else "train"


def write_nonsignal(folder: Path, path: Path) -> Path:
    """List the training-side ESC-50 clips of ``folder`` in ``path`` (absolute paths)."""
    clips = [w.resolve() for w in sorted(folder.glob("*.wav")) if noise_split(w.name) == "train"]
    text = "".join(f"{c}\n" for c in clips)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def _noise_clips(folder: Path) -> dict[str, list[tuple[np.ndarray, str]]]:
    """ESC-50 clips (with their category) split 70/30 between train and test by file-name hash."""
    import csv

    import soundfile as sf

    with (folder / "meta.csv").open(newline="") as fh:
        category = {r["filename"]: r["category"] for r in csv.DictReader(fh)}
    clips: dict[str, list[tuple[np.ndarray, str]]] = {"train": [], "test": []}
    for wav in sorted(folder.glob("*.wav")):
        x, _ = sf.read(wav, dtype="float32", always_2d=True)
        x = x.mean(1)
        if np.sqrt(np.mean(x**2)) < 1e-4:
            continue  # silent clip
        clips[noise_split(wav.name)].append((x, category.get(wav.name, "unknown")))
    return clips


def _image(
    img: np.ndarray,
    idx: int,
    out_dir: Path,
    spec: AVDigitsSpec,
    rng: np.random.Generator,
    split: str,
) -> str:
    from PIL import Image

    if spec.variant == "clean":
        name = f"img/mnist_{idx}.png"
        if not (out_dir / name).exists():
            Image.fromarray(img).save(out_dir / name)
        return name
    x = img.astype(np.float32) / 255.0
    s = spec.occlusion
    if s:
        r, c = rng.integers(0, 28 - s + 1, size=2)
        x[r : r + s, c : c + s] = rng.random()
    x = np.clip(x + rng.normal(0.0, spec.image_noise, x.shape), 0.0, 1.0)
    name = f"img/{split}_{idx}_{rng.integers(1 << 30)}.png"
    Image.fromarray((x * 255 + 0.5).astype(np.uint8)).save(out_dir / name)
    return name


def _audio(
    wav: Path,
    out_dir: Path,
    spec: AVDigitsSpec,
    rng: np.random.Generator,
    noise: dict[str, list[tuple[np.ndarray, str]]] | None,
    split: str,
) -> tuple[str, dict[str, object]]:
    """Path of the (noisy) recording and metadata for slices: noise category and SNR band."""
    if noise is None:
        return str(wav.resolve()), {}
    import soundfile as sf

    x, rate = sf.read(wav, dtype="float32")
    pool = noise["test" if split == "test" else "train"]
    clip, category = pool[int(rng.integers(len(pool)))]
    start = int(rng.integers(0, max(1, clip.size - x.size)))
    n = np.resize(clip[start : start + x.size], x.size)
    snr = rng.uniform(*spec.snr_db)
    p_signal, p_noise = np.mean(x**2) + 1e-12, np.mean(n**2) + 1e-12
    mixed = x + n * np.sqrt(p_signal / (p_noise * 10 ** (snr / 10)))
    mixed = mixed / max(1.0, float(np.abs(mixed).max()))
    name = f"wav/{wav.stem}.wav"
    sf.write(out_dir / name, mixed.astype(np.float32), rate, subtype="PCM_16")
    low = 2 * int(np.floor(snr / 2))
    return name, {"noise": category, "snr_db": f"{low}..{low + 2}"}
