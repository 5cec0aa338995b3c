"""Approximate (IVF-PQ + exact re-ranking) vs exact vector search at 200,000 vectors.

Real vectors: Flickr8k train captions and all 3,000 images embedded by alignment
adapters (frozen EfficientNet-Lite0 / MiniLM features); augmented to ``--rows`` by
jittered copies (Gaussian noise, re-normalised). Queries: dev captions, not in the
index. Both searches run on the same LanceDB table, alternating per query; prints median
latency, the speed-up and recall@10 of the approximate search against the exact one.

    python benchmarks/vector_search.py --data ../shared/data --rows 200000 --queries 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _embeddings(data: str, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """(index vectors from train captions + all images, query vectors from dev captions)."""
    import torch

    from polyfuse.data.manifest import Manifest
    from polyfuse.data.pooled import pair_features
    from polyfuse.datasets.flickr8k import build_alignment
    from polyfuse.encoders import build_encoder, resolve_contract
    from polyfuse.models.alignment import AlignmentModel
    from polyfuse.retrieval.fit import fit_alignment

    encoders = {
        m: build_encoder(name, resolve_contract(m, m, name, {}, {}), {}).eval()
        for m, name in (("image", "efficientnet_lite0"), ("text", "minilm"))
    }
    paths = build_alignment(data, work / "manifests")
    pf = {
        s: pair_features(encoders, Manifest.load(p, ("image", "text")), "image_id", progress=False)
        for s, p in paths.items()
    }
    tr = pf["train"]
    model = AlignmentModel({"image": 1280, "text": 384})
    fit = fit_alignment(
        model,
        tr.feats["image"],
        tr.feats["text"],
        tr.group,
        names=("image", "text"),
        epochs=10,
        progress=False,
    )
    with torch.no_grad():
        parts = [fit.model.embed("text", tr.feats["text"])]
        for s in ("train", "val", "dev"):
            parts.append(fit.model.embed("image", pf[s].feats["image"][pf[s].first]))
        parts.append(fit.model.embed("text", pf["val"].feats["text"]))
        queries = fit.model.embed("text", pf["dev"].feats["text"])
    return torch.cat(parts).numpy(), queries.numpy()


def _augment(real: np.ndarray, rows: int, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """``rows`` vectors: the real ones, then jittered copies (noise of norm ``jitter``)."""
    base = np.tile(real, (-(-rows // len(real)), 1))[:rows]
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise *= jitter / np.linalg.norm(noise, axis=1, keepdims=True)
    noise[: len(real)] = 0  # the real vectors stay as they are
    return np.asarray(base + noise, dtype=np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/polyfuse-bench/vector_search")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobes", type=int, default=20)
    parser.add_argument("--refine", type=int, default=10, help="refine_factor of the re-ranking")
    parser.add_argument("--jitter", type=float, default=0.5, help="noise norm of the copies")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    from polyfuse.retrieval.index import VectorIndex

    work = Path(args.work)
    real, queries = _embeddings(args.data, work)
    rng = np.random.default_rng(0)
    vectors = _augment(real, args.rows, args.jitter, rng)
    ids = [f"v{i}" for i in range(len(vectors))]
    t0 = time.perf_counter()
    index = VectorIndex.create(work / "index", vectors, ids)
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.build_ann()
    t_build = time.perf_counter() - t0
    qs = queries[rng.choice(len(queries), args.queries, replace=False)]
    for q in qs[:5]:  # warm-up: open files, load the index
        index.search(q, args.k)
        index.search(q, args.k, exact=True)
    lat: dict[str, list[float]] = {"exact": [], "ann": []}
    recalls = []
    for q in qs:
        t = time.perf_counter()
        truth = index.search(q, args.k, exact=True)
        lat["exact"].append(time.perf_counter() - t)
        t = time.perf_counter()
        got = index.search(q, args.k, nprobes=args.nprobes, refine_factor=args.refine)
        lat["ann"].append(time.perf_counter() - t)
        recalls.append(len({h.id for h in truth} & {h.id for h in got}) / args.k)
    med = {k: statistics.median(v) * 1000 for k, v in lat.items()}
    recall = float(np.mean(recalls))
    print(
        f"{len(index)} vectors of dim {vectors.shape[1]} ({len(real)} real), "
        f"{args.queries} queries, k={args.k}"
    )
    print(f"write {t_write:.1f} s, IVF-PQ build {t_build:.1f} s")
    print(f"exact search:                      median {med['exact']:.2f} ms/query")
    ann = f"IVF-PQ (nprobes {args.nprobes}) + re-rank x{args.refine}:"
    print(f"{ann:<35}median {med['ann']:.2f} ms/query")
    print(f"speed-up {med['exact'] / med['ann']:.1f}x, recall@{args.k} vs exact {recall:.3f}")
    if args.json_out:
        report: dict[str, Any] = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "median_ms": med,
            "recall": recall,
            "build_s": t_build,
            "write_s": t_write,
        }
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
