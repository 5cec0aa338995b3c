"""Flickr8k photos with captions as manifests.

``concepts``: a multi-label text + image task. Labels are visual concepts
(dog, child, water ...) that at least two of an image's five captions mention;
the text input is one caption, so the text alone may miss concepts the image
shows (and the image alone must recognise them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from polyfuse.core.errors import PolyfuseError
from polyfuse.data.manifest import write_jsonl
from polyfuse.data.negatives import attribute_swap

#: concept -> words that count as mentioning it.
CONCEPTS: dict[str, tuple[str, ...]] = {
    "dog": ("dog", "dogs", "puppy", "puppies"),
    "child": (
        "child",
        "children",
        "kid",
        "kids",
        "boy",
        "boys",
        "girl",
        "girls",
        "baby",
        "toddler",
    ),
    "water": ("water", "ocean", "lake", "river", "pool", "sea", "beach", "waves", "wave", "surf"),
    "snow": ("snow", "snowy", "ski", "skier", "skiing", "snowboard", "snowboarder"),
    "grass": ("grass", "grassy", "field", "lawn", "meadow"),
    "ball": ("ball", "balls", "soccer", "football", "basketball", "tennis"),
    "bike": ("bike", "bikes", "bicycle", "bicycles", "biker", "cyclist", "motorcycle", "dirt bike"),
    "street": ("street", "road", "sidewalk", "city", "crowd", "building"),
}
_TOKEN = re.compile(r"[a-z]+")


def concepts_of(caption: str) -> set[str]:
    """Concepts a caption mentions."""
    words = set(_TOKEN.findall(caption.lower()))
    return {c for c, keys in CONCEPTS.items() if words & set(keys)}


def _items(src: Path, file: str) -> list[dict[str, Any]]:
    if not (src / file).is_file():
        raise PolyfuseError(f"{src / file} not found", hint="pass the shared data folder")
    return [json.loads(x) for x in (src / file).read_text(encoding="utf-8").splitlines()]


def build_alignment(data_dir: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write image + caption pair manifests (one caption per row) for alignment.

    ``train_2000.jsonl`` is split 1,800 / 200 images into train / val; ``dev.jsonl``
    (1,000 images, 5,000 captions) is the test set of the retrieval protocol. Rows:
    ``id``, ``image`` (absolute path), ``text``, ``image_id``.
    """
    src = Path(data_dir) / "flickr8k"
    out = Path(out_dir)
    splits = {"train": ("train_2000.jsonl", 0, 1800), "val": ("train_2000.jsonl", 1800, None)}
    splits["dev"] = ("dev.jsonl", 0, None)
    paths = {}
    for split, (file, start, stop) in splits.items():
        rows = []
        for item in _items(src, file)[start:stop]:
            image = str((src / item["image"]).resolve())
            stem = Path(item["image"]).stem
            for k, caption in enumerate(item["captions"]):
                rows.append(
                    {"id": f"{stem}-{k}", "image": image, "text": caption, "image_id": stem}
                )
        paths[split] = write_jsonl(out / f"{split}.jsonl", rows)
    return paths


def build_consistency(
    data_dir: str | Path, out_dir: str | Path, seed: int = 0, neighbours: bool = True
) -> dict[str, Path]:
    """Image-text consistency manifests (``label``: ``match`` / ``mismatch``) for val and dev.

    Per image: its first caption (match), a caption of another image (``kind: random``),
    with ``neighbours`` the first caption of its most similar other image of the split
    (``kind: neighbour``; frozen EfficientNet-Lite0 features, cached) and, when
    possible, an attribute-swapped caption (``kind: swap``) for each caption that has a
    colour, count or object word. Neighbour captions are hard and noisy negatives: a
    near-duplicate photo's caption may describe this photo too.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    src = Path(data_dir) / "flickr8k"
    out = Path(out_dir)
    paths = {}
    for split, (file, start, stop) in {
        "val": ("train_2000.jsonl", 1800, None),
        "dev": ("dev.jsonl", 0, None),
    }.items():
        items = _items(src, file)[start:stop]
        near = (
            _nearest([str((src / it["image"]).resolve()) for it in items]) if neighbours else None
        )
        rows = []
        for j, item in enumerate(items):
            image = str((src / item["image"]).resolve())
            stem = Path(item["image"]).stem
            caps: list[str] = item["captions"]
            other = items[(j + 1 + int(rng.integers(len(items) - 1))) % len(items)]
            base = {"image": image, "image_id": stem}
            rows.append({**base, "id": f"{stem}-match", "text": caps[0], "label": "match"})
            rows.append(
                {
                    **base,
                    "id": f"{stem}-random",
                    "text": other["captions"][0],
                    "label": "mismatch",
                    "kind": "random",
                }
            )
            if near is not None:
                rows.append(
                    {
                        **base,
                        "id": f"{stem}-neighbour",
                        "text": items[near[j]]["captions"][0],
                        "label": "mismatch",
                        "kind": "neighbour",
                    }
                )
            for k, cap in enumerate(caps):
                swapped = attribute_swap(cap, rng)
                if swapped:
                    rows.append(
                        {
                            **base,
                            "id": f"{stem}-swap{k}",
                            "text": swapped,
                            "label": "mismatch",
                            "kind": "swap",
                            "original": cap,
                        }
                    )
                    rows.append(
                        {
                            **base,
                            "id": f"{stem}-orig{k}",
                            "text": cap,
                            "label": "match",
                            "kind": "swap",
                        }
                    )
        paths[split] = write_jsonl(out / f"consistency_{split}.jsonl", rows)
    return paths


def _nearest(paths: list[str]) -> list[int]:
    """Index of each image's most similar other image (cosine of pooled frozen features)."""
    import torch

    from polyfuse.data.pooled import encoded_tokens
    from polyfuse.encoders import build_encoder, resolve_contract

    name = "efficientnet_lite0"
    encoder = build_encoder(name, resolve_contract("image", "image", name, {}, {}), {}).eval()
    pooled = torch.stack([t.mean(0) for t in encoded_tokens(encoder, paths, progress=False)])
    z = torch.nn.functional.normalize(pooled, dim=1)
    sim = z @ z.T
    sim.fill_diagonal_(-2.0)
    return [int(i) for i in sim.argmax(1)]


def build_concepts(
    data_dir: str | Path, out_dir: str | Path, min_votes: int = 2
) -> dict[str, Path]:
    """Write ``train/val/test.jsonl`` for the concepts task (images referenced in place).

    ``train_2000.jsonl`` is split 1,800 / 200 into train / val; ``dev.jsonl`` is the test set.
    """
    src = Path(data_dir) / "flickr8k"
    out = Path(out_dir)
    paths = {}
    for split, file in (("train", "train_2000.jsonl"), ("test", "dev.jsonl")):
        rows = []
        for item in _items(src, file):
            captions: list[str] = item["captions"]
            votes: dict[str, int] = {}
            for cap in captions:
                for c in concepts_of(cap):
                    votes[c] = votes.get(c, 0) + 1
            labels = sorted(c for c, v in votes.items() if v >= min_votes)
            image = str((src / item["image"]).resolve())
            rows.append(
                {
                    "id": Path(item["image"]).stem,
                    "image": image,
                    "caption": captions[0],
                    "label": labels,
                }
            )
        if split == "test":
            paths["test"] = write_jsonl(out / "test.jsonl", rows)
        else:
            paths["train"] = write_jsonl(out / "train.jsonl", rows[:1800])
            paths["val"] = write_jsonl(out / "val.jsonl", rows[1800:])
    return paths
