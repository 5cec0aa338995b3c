"""Build the Flickr8k concepts manifests (photo + caption -> concepts) from the shared data."""

import argparse

from polyfuse.datasets.flickr8k import build_concepts

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--data", default="../shared/data", help="shared data folder")
parser.add_argument("--out", required=True, help="where to write the manifests")
args = parser.parse_args()
for split, path in build_concepts(args.data, args.out).items():
    print(f"{split}: {path}")
