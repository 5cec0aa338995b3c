"""Zero-shot concept classification of Flickr8k dev photos with an alignment artifact.

Images whose captions agree (at least 3 of 5) on exactly one of the concepts are
classified by prompt similarity alone (no training on these labels).

    polyfuse train examples/flickr8k/align.yaml --train T --val V --out /tmp/align-run
    python benchmarks/flickr8k_zero_shot.py --artifact /tmp/align-run --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--artifact", required=True, help="alignment artifact")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--labels", default="dog,snow,water,bike,ball")
    parser.add_argument("--template", default="a photo of {}.")
    args = parser.parse_args()

    import torch

    from polyfuse.datasets.flickr8k import concepts_of
    from polyfuse.retrieval.pipeline import Aligner

    labels = args.labels.split(",")
    src = Path(args.data) / "flickr8k"
    images, truth = [], []
    for line in (src / "dev.jsonl").read_text().splitlines():
        item = json.loads(line)
        votes: dict[str, int] = {}
        for caption in item["captions"]:
            for c in concepts_of(caption):
                votes[c] = votes.get(c, 0) + 1
        have = [lab for lab in labels if votes.get(lab, 0) >= 3]
        if len(have) == 1:
            images.append(str(src / item["image"]))
            truth.append(labels.index(have[0]))
    probs = Aligner.load(args.artifact).zero_shot(images, labels, args.template)
    pred = probs.argmax(1)
    y = torch.tensor(truth)
    print(f"{len(images)} dev images, labels {labels}, template {args.template!r}")
    accuracy = float((pred == y).double().mean())
    print(f"zero-shot accuracy {accuracy:.3f} (chance {1 / len(labels):.3f})")
    for k, lab in enumerate(labels):
        sel = y == k
        print(
            f"  {lab:<8} n={int(sel.sum()):<4} recall {float((pred[sel] == k).double().mean()):.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
