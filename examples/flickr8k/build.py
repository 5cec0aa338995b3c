"""Build Flickr8k manifests from the shared data: ``concepts`` (photo + caption -> concepts,
multi-label), ``align`` (one caption per row, for ``task: contrastive``) or ``consistency``
(image + text labelled match / mismatch, random and attribute-swap negatives)."""

import argparse

from polyfuse.datasets.flickr8k import build_alignment, build_concepts, build_consistency

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("task", choices=("concepts", "align", "consistency"), help="which manifests")
parser.add_argument("--data", default="../shared/data", help="shared data folder")
parser.add_argument("--out", required=True, help="where to write the manifests")
args = parser.parse_args()
build = {"concepts": build_concepts, "align": build_alignment, "consistency": build_consistency}[
    args.task
]
for split, path in build(args.data, args.out).items():
    print(f"{split}: {path}")
