"""Decode and sample videos with decord, the peer of benchmarks/video_decode.py.

Runs under the peer's own virtual environment (``bash benchmarks/peers/setup.sh video``),
never under polyfuse's: it imports only numpy and decord. For every round it opens each
video, takes ``--frames`` frames at the centres of equal segments (decord's
``get_batch``; the same targets as polyfuse's ``uniform`` sampling) and converts them to
numpy, timing the whole pass::

    /work/peers/video/bin/python benchmarks/peers/video_peer.py --frames 8 --rounds 5 A.mp4 B.mp4

Prints one JSON object: ``{"peer", "version", "rounds": [{"seconds", "frames"}]}``.
"""

from __future__ import annotations

import argparse
import json
import time

import decord
import numpy as np


def sample(path: str, frames: int) -> int:
    """Open ``path`` and return how many frames the uniform sample held."""
    reader = decord.VideoReader(path, num_threads=1)
    count, fps = len(reader), reader.get_avg_fps()
    duration = count / fps
    targets = (np.arange(frames) + 0.5) * duration / frames
    index = np.minimum((targets * fps + 1e-6).astype(int), count - 1)
    batch = reader.get_batch(sorted(set(index.tolist()))).asnumpy()  # (T, H, W, 3)
    return int(batch.shape[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="+")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--all", action="store_true", help="decode every frame instead")
    args = parser.parse_args()
    rounds = []
    for _ in range(args.rounds):
        start, total = time.perf_counter(), 0
        for path in args.videos:
            if args.all:
                reader = decord.VideoReader(path, num_threads=1)
                total += int(reader.get_batch(list(range(len(reader)))).asnumpy().shape[0])
            else:
                total += sample(path, args.frames)
        rounds.append({"seconds": time.perf_counter() - start, "frames": total})
    print(json.dumps({"peer": "decord", "version": decord.__version__, "rounds": rounds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
