"""Build BasicMotions manifests from the shared data folder."""

import argparse

from polyfuse.datasets.basicmotions import build

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--data", default="../shared/data", help="shared data folder")
parser.add_argument("--out", required=True, help="where to write series and manifests")
args = parser.parse_args()
for split, path in build(args.data, args.out).items():
    print(f"{split}: {path}")
