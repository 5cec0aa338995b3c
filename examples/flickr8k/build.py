"""Build Flickr8k manifests from the shared data: ``concepts`` (photo + caption -> concepts,
multi-label) or ``align`` (one caption per row, for ``task: contrastive``)."""

import argparse

from polyfuse.datasets.flickr8k import build_alignment, build_concepts

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("task", choices=("concepts", "align"), help="which manifests")
parser.add_argument("--data", default="../shared/data", help="shared data folder")
parser.add_argument("--out", required=True, help="where to write the manifests")
args = parser.parse_args()
build = build_concepts if args.task == "concepts" else build_alignment
for split, path in build(args.data, args.out).items():
    print(f"{split}: {path}")
