"""The LanceDB vector index: round trip, exact vs approximate, a planted match on real vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from polyfuse.core.errors import PolyfuseError
from polyfuse.retrieval.index import VectorIndex

pytest.importorskip("lancedb")


def test_round_trip_and_exact_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    meta = [{"caption": f"item {i}", "n": i} for i in range(300)]
    VectorIndex.create(tmp_path / "db", vectors, [f"i{i}" for i in range(300)], meta)
    index = VectorIndex.open(tmp_path / "db")
    assert len(index) == 300
    hits = index.search(vectors[17], k=5, exact=True)
    assert hits[0].id == "i17" and hits[0].metadata == {"caption": "item 17", "n": 17}
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    # cosine: a scaled query finds the same neighbours
    assert [h.id for h in index.search(3 * vectors[17], k=5, exact=True)] == [h.id for h in hits]
    # brute-force check of the whole top-5
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    top = np.argsort(-(unit @ unit[17]))[:5]
    assert [h.id for h in hits] == [f"i{i}" for i in top]


def test_approximate_search_after_building_the_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((20, 32))
    vectors = centres[rng.integers(20, size=2000)] + 0.3 * rng.standard_normal((2000, 32))
    index = VectorIndex.create(tmp_path / "db", vectors, [str(i) for i in range(2000)])
    index.build_ann(num_partitions=8, num_sub_vectors=4)
    recalls = []
    for q in vectors[:20]:
        exact = {h.id for h in index.search(q, 10, exact=True)}
        approx = {h.id for h in index.search(q, 10, nprobes=8, refine_factor=10)}
        recalls.append(len(exact & approx) / 10)
    assert np.mean(recalls) > 0.9


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(PolyfuseError, match="no vector index"):
        VectorIndex.open(tmp_path / "missing")
    with pytest.raises(PolyfuseError, match="N ids"):
        VectorIndex.create(tmp_path / "db", np.zeros((3, 4)), ["a"])


@pytest.mark.integration
def test_planted_match_is_found_first_in_a_real_index(shared_data: Path, tmp_path: Path) -> None:
    """Real MiniLM caption vectors; a query phrased like one planted caption finds it first."""
    from polyfuse.encoders import build_encoder, resolve_contract

    lines = (shared_data / "flickr8k" / "dev.jsonl").read_text().splitlines()[:40]
    import json

    captions = [json.loads(x)["captions"][0] for x in lines]
    planted = "a purple giraffe is juggling seven teapots on a frozen lake"
    captions.insert(23, planted)
    contract = resolve_contract("text", "text", "minilm", {}, {})
    encoder = build_encoder("minilm", contract, {}).eval()
    with torch.no_grad():
        xs = [contract.preprocess(contract.load(c)) for c in captions]
        batch = contract.collate(xs, torch.ones(len(xs), dtype=torch.bool))
        vectors = encoder(batch.data, batch.lengths).pooled.numpy()
        q = [contract.preprocess(contract.load("giraffe juggling teapots on ice"))]
        qb = contract.collate(q, torch.ones(1, dtype=torch.bool))
        query = encoder(qb.data, qb.lengths).pooled.numpy()[0]
    index = VectorIndex.create(
        tmp_path / "db",
        vectors,
        [f"c{i}" for i in range(len(captions))],
        [{"text": c} for c in captions],
    )
    hit = index.search(query, k=3, exact=True)[0]
    assert hit.id == "c23" and hit.metadata["text"] == planted
