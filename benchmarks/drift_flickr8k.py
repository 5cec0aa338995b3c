"""The Flickr8k image + caption setup of `monitor_drift.py` (``--model flickr8k``).

The model is the concepts example's config (`examples/flickr8k/concepts.yaml`: photo + one
caption -> which of eight visual concepts the photo shows, multi-label; frozen
EfficientNet-Lite0 and MiniLM), trained on 1,300 photos of Flickr8k's official train split
with 200 for early stopping. The other 1,500 photos (500 of that split, the 1,000 of the
official dev split) were never seen in training or model selection; a random 500 of them
are the reference and 1,000 the stream, so windows of 500 are drawn without repeating a
photo. (A 200-row reference, what training writes from this validation split, leaves the
accuracy estimate's calibration a standard error of 3.5 points; the dev split alone is
harder than the train split's held-out photos, so it is not an unshifted stream for them.)

Shifts (held-apart data; nothing is tuned on them):

- image: gamma 2.2, warm colour cast (red up, blue down), resolution drop (photos
  delivered at 56x56), Gaussian blur (sigma 2 at 224 px), JPEG quality 8;
- caption: text from another domain (presidio-research's synthetic sentences: addresses,
  names, chat questions, news), a 30 % missing-caption surge;
- a class-prior change: photos showing a dog make 70 % of the window (24 % in the stream;
  capped by the 241 dog photos at window 500);
- none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMAGE_SHIFTS = ("image_gamma", "image_colour", "image_lowres", "image_blur", "image_jpeg")
TEXT_SHIFTS = ("text_domain",)
SHIFTS = ("none", *IMAGE_SHIFTS, *TEXT_SHIFTS, "missing_caption", "class_prior")
#: The concept whose share the class-prior shift raises.
PRIOR_CONCEPT = "dog"


def expected(shift: str) -> str | None:
    """The modality a detector should name for ``shift``."""
    if shift in IMAGE_SHIFTS:
        return "image"
    if shift in TEXT_SHIFTS or shift == "missing_caption":
        return "caption"
    if shift == "class_prior":
        return "prediction"
    return None


def build_model(
    data: Path, work: Path, artifact: Path | None
) -> tuple[Path, list[dict[str, Any]], list[dict[str, Any]]]:
    """A trained concepts model (trained here unless given) and the reference and stream
    rows. The 2,000 photos of the official train split: 1,300 train, 200 validation (early
    stopping), 500 the reference, untouched by training and model selection; the stream is
    the official dev split (1,000 photos)."""
    import yaml

    from polyfuse.core.config import Config
    from polyfuse.datasets.flickr8k import build_concepts
    from polyfuse.train import Trainer

    manifests = build_concepts(data, work / "concepts")
    read = lambda p: [json.loads(x) for x in Path(p).read_text().splitlines()]  # noqa: E731
    rows = read(manifests["train"]) + read(manifests["val"])
    if artifact is None:
        artifact = work / "model"
        if not (artifact / "artifact.json").exists():
            cfg = yaml.safe_load((ROOT / "examples" / "flickr8k" / "concepts.yaml").read_text())
            write = lambda name, part: _write(work / "concepts" / name, part)  # noqa: E731
            print("training the Flickr8k concepts model ...", flush=True)
            Trainer(Config.from_dict(cfg), artifact, progress=False, reference=False).fit(
                write("bench_train.jsonl", rows[:1300]), write("bench_val.jsonl", rows[1300:1500])
            )
    # reference and stream: one random split of every photo the model never saw, so the
    # unshifted stream is unshifted (the dev split alone is harder than the train split's
    # held-out photos: image-only subset accuracy 0.53 against 0.57)
    pool = rows[1500:] + read(manifests["test"])
    order = np.random.default_rng(0).permutation(len(pool))
    return artifact, [pool[i] for i in order[:500]], [pool[i] for i in order[500:]]


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _other_domain(data: Path) -> list[str]:
    """Sentences of another domain (presidio-research's synthetic PII sentences)."""
    items = json.loads((data / "pii" / "presidio_synth_dataset_v2.json").read_text())
    return [" ".join(str(x["full_text"]).split()) for x in items if str(x["full_text"]).strip()]


def _image(shift: str, x: np.ndarray) -> Any:
    from PIL import Image, ImageFilter

    img = Image.fromarray(x)
    if shift == "image_gamma":
        return Image.fromarray((255.0 * (x / 255.0) ** 2.2).astype(np.uint8))
    if shift == "image_colour":
        warm = x * np.array([1.0, 0.9, 0.7]) + np.array([30.0, 10.0, 0.0])
        return Image.fromarray(np.clip(warm, 0, 255).astype(np.uint8))
    if shift == "image_lowres":
        return img.resize((56, 56), Image.Resampling.BILINEAR)
    if shift == "image_blur":
        return img.filter(ImageFilter.GaussianBlur(2.0))
    return img  # image_jpeg: saved at quality 8 by the caller


def shifted_rows(
    shift: str, rows: list[dict[str, Any]], folder: Path, data: Path, seed: int
) -> list[dict[str, Any]]:
    """``rows`` with ``shift`` applied to every row (files written under ``folder``)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sentences = _other_domain(data) if shift in TEXT_SHIFTS else []
    out = []
    for original in rows:
        r = dict(original)
        if shift in IMAGE_SHIFTS:
            path = folder / f"{r['id']}.{'jpg' if shift == 'image_jpeg' else 'png'}"
            if not path.exists():
                x = np.asarray(Image.open(r["image"]).convert("RGB"))
                if shift == "image_jpeg":
                    Image.fromarray(x).save(path, quality=8)
                else:
                    _image(shift, x).save(path)
            r["image"] = str(path)
        elif shift == "text_domain":
            r["caption"] = sentences[int(rng.integers(len(sentences)))]
        elif shift == "missing_caption" and rng.random() < 0.3:
            r.pop("caption")
        out.append(r)
    return out


def favoured(obs: Any) -> np.ndarray:
    """Rows the class-prior shift over-samples: photos labelled with `PRIOR_CONCEPT`."""
    j = list(obs.classes).index(PRIOR_CONCEPT)
    out: np.ndarray = np.asarray(obs.labels)[:, j] > 0
    return out
