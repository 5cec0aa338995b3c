"""Video decoding + sampling throughput, and the frame-feature cache's second epoch.

Part 1 (decoding): writes H.264 MP4s (moving noise texture, 2 s GOP) and takes ``--frames``
frames at the centres of equal segments from each, side by side in interleaved rounds:

* ``polyfuse (seek)``: `polyfuse.modalities.readers.video.decode_video`, uniform sampling,
  seeking to the keyframe before a far target;
* ``polyfuse (no seek)``: the same reader decoding every frame in order;
* ``PyAV loop``: a plain loop over ``container.decode`` keeping the frames at the target
  indices;
* ``decord``: ``VideoReader.get_batch`` (run by benchmarks/peers/video_peer.py under the peer
  venv made by ``bash benchmarks/peers/setup.sh video``).

Frames/s counts sampled frames returned (RGB arrays) per second; medians over rounds.

Part 2 (cache): a frozen EfficientNet-Lite0 on every frame (`video_frames`, mean
aggregation) over short clips: epoch 1 decodes, encodes and writes the frame tokens to the
feature cache; epoch 2 (a fresh dataset) finds them all and reads them back.

    python benchmarks/video_decode.py --rounds 5

The machine may be shared: only the ratios measured in one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "benchmarks" / "peers" / "video_peer.py"


def write_videos(
    folder: Path, count: int, seconds: float, fps: int, size: tuple[int, int]
) -> list[Path]:
    """``count`` H.264 MP4s of a drifting noise texture (keyframe every 2 s)."""
    import av

    width, height = size
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 255, (height * 2, width * 2, 3), dtype=np.uint8)
    paths = []
    for k in range(count):
        path = folder / f"clip{k}.mp4"
        with av.open(str(path), "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"preset": "veryfast", "g": str(2 * fps), "threads": "1"}
            for i in range(round(seconds * fps)):
                x, y = (3 * i + 17 * k) % width, (2 * i) % height
                frame = av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(texture[y : y + height, x : x + width]), format="rgb24"
                )
                out.mux(stream.encode(frame))
            out.mux(stream.encode())
        paths.append(path)
    return paths


def ours(paths: list[Path], frames: int, seek: bool) -> int:
    from polyfuse.modalities.readers.video import FrameSampling, decode_video

    sampling = FrameSampling(frames=frames, seek=seek)
    return sum(len(decode_video(p.read_bytes(), sampling=sampling).frames) for p in paths)


def pyav_loop(paths: list[Path], frames: int) -> int:
    """The loop one writes without a reader: decode everything, keep the target indices."""
    import av

    total = 0
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            count = stream.frames
            wanted = {min(count - 1, int((i + 0.5) * count / frames)) for i in range(frames)}
            kept = [
                f.to_ndarray(format="rgb24")
                for i, f in enumerate(container.decode(stream))
                if i in wanted
            ]
            total += len(kept)
    return total


def decord_round(python: str, paths: list[Path], frames: int) -> dict[str, Any] | None:
    if not Path(python).exists():
        return None
    cmd = [python, str(PEER), "--frames", str(frames), "--rounds", "1", *map(str, paths)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)["rounds"][0]
    return result


def decoding(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    width, height = (int(v) for v in args.size.split("x"))
    paths = write_videos(folder, args.videos, args.seconds, args.fps, (width, height))
    timed: dict[str, list[float]] = {}

    def record(name: str, seconds: float, count: int) -> None:
        timed.setdefault(name, []).append(count / seconds)

    for _ in range(args.rounds):
        for seek in (True, False):
            start = time.perf_counter()
            count = ours(paths, args.frames, seek)
            record(
                f"polyfuse ({'seek' if seek else 'no seek'})", time.perf_counter() - start, count
            )
        start = time.perf_counter()
        count = pyav_loop(paths, args.frames)
        record("PyAV loop", time.perf_counter() - start, count)
        peer = decord_round(args.peer_python, paths, args.frames)
        if peer is not None:
            record("decord", peer["seconds"], peer["frames"])
    return {name: statistics.median(v) for name, v in timed.items()}


def cache_epochs(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    """Seconds of epoch 1 (encode + write the cache) and epoch 2 (read it back)."""
    import torch

    from polyfuse.data import Manifest, MultimodalDataset
    from polyfuse.data.features import attach_frozen_features
    from polyfuse.encoders import build_encoder, resolve_contract

    torch.set_num_threads(2)
    paths = write_videos(folder, args.cache_clips, 2.0, 10, (96, 96))
    manifest = folder / "clips.jsonl"
    manifest.write_text("".join(json.dumps({"video": p.name}) + "\n" for p in paths))
    params = {"frame": "efficientnet_lite0", "aggregator": "mean"}
    contract = resolve_contract("video", "video", "video_frames", params, {"frames": 8})
    encoder = build_encoder("video_frames", contract, params)
    cache = folder / "cache"
    seconds = {}
    for epoch in (1, 2):
        start = time.perf_counter()
        ds = MultimodalDataset(
            Manifest.load(manifest, ["video"]), {"video": contract}, None, require_label=False
        )
        attach_frozen_features({"video": encoder}, [ds], cache_dir=cache, progress=False)
        tokens = [ds[i] for i in range(len(ds))]
        assert all(t.encoded == frozenset({"video"}) for t in tokens)  # type: ignore[union-attr]
        seconds[f"epoch {epoch}"] = time.perf_counter() - start
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--frames", type=int, default=8, help="frames sampled per video")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache-clips", type=int, default=24)
    parser.add_argument("--peer-python", default="/work/peers/video/bin/python")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rates = decoding(args, Path(tmp))
        epochs = cache_epochs(args, Path(tmp))
    base = rates["PyAV loop"]
    clips = f"{args.videos} x {args.seconds:g} s {args.size} H.264 at {args.fps} fps"
    print(f"decoding + uniform sampling of {args.frames} frames from {clips}")
    print(f"(median of {args.rounds} interleaved rounds):")
    for name, rate in rates.items():
        print(f"  {name:<20} {rate:8.1f} frames/s  ({rate / base:.2f} x the PyAV loop)")
    if "decord" not in rates:
        print("  decord: not measured (bash benchmarks/peers/setup.sh video)")
    e1, e2 = epochs["epoch 1"], epochs["epoch 2"]
    print(f"frame-feature cache, {args.cache_clips} clips x 8 frames, frozen EfficientNet-Lite0:")
    print(f"  epoch 1 {e1:.2f} s, epoch 2 {e2:.2f} s: {e1 / e2:.1f} x faster from the cache")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"rates": rates, "epochs": epochs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
