"""A vector index on disk (LanceDB, embedded): approximate search, then exact re-ranking.

Stage 1 searches an IVF-PQ index (compressed vectors in ``nprobes`` of the IVF
partitions) for ``k * refine_factor`` candidates; stage 2 re-ranks those candidates
on their full-precision vectors and returns the best ``k``. ``exact=True`` scans every
full vector instead (the ground truth the approximate search is measured against).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyfuse.core.errors import PolyfuseError

TABLE = "items"


@dataclass(frozen=True)
class Hit:
    """One search result: the item's id, cosine similarity and metadata."""

    id: str
    score: float
    metadata: dict[str, Any]


def _lancedb() -> Any:
    try:
        import lancedb
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise PolyfuseError(
            "vector search needs LanceDB", hint="pip install 'polyfuse[search]'"
        ) from exc
    return lancedb


class VectorIndex:
    """Embeddings with ids and metadata in a LanceDB folder.

    Build one with `VectorIndex.create`, open an existing one with `VectorIndex.open`.
    Similarity is cosine (vectors are normalised when written).
    """

    def __init__(self, path: Path, table: Any, name: str = TABLE) -> None:
        self.path = path
        self.table = table
        self.name = name

    @classmethod
    def create(
        cls,
        path: str | Path,
        vectors: np.ndarray,
        ids: Sequence[str],
        metadata: Sequence[Mapping[str, Any]] | None = None,
        batch_rows: int = 50_000,
        name: str = TABLE,
    ) -> VectorIndex:
        """Write (replacing) the index at ``path``.

        Args:
            vectors: ``(N, D)`` embeddings.
            ids: one id per row.
            metadata: JSON-able mapping per row (item references, captions ...).
            batch_rows: rows written per batch (bounds memory on big indexes).
            name: table name (one folder may hold several, e.g. one per modality).
        """
        import pyarrow as pa

        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(ids):
            raise PolyfuseError(
                f"need (N, D) vectors and N ids, got {vectors.shape} and {len(ids)}"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.maximum(norms, 1e-12)
        meta = [json.dumps(dict(m), sort_keys=True) for m in (metadata or [{}] * len(ids))]
        dim = vectors.shape[1]

        def batches() -> Any:
            for s in range(0, len(ids), batch_rows):
                flat = pa.array(vectors[s : s + batch_rows].reshape(-1), type=pa.float32())
                yield pa.RecordBatch.from_arrays(
                    [
                        pa.array([str(i) for i in ids[s : s + batch_rows]], type=pa.string()),
                        pa.FixedSizeListArray.from_arrays(flat, dim),
                        pa.array(meta[s : s + batch_rows], type=pa.string()),
                    ],
                    names=["id", "vector", "metadata"],
                )

        schema = pa.schema(
            [
                ("id", pa.string()),
                ("vector", pa.list_(pa.float32(), dim)),
                ("metadata", pa.string()),
            ]
        )
        db = _lancedb().connect(str(path))
        table = db.create_table(name, data=batches(), schema=schema, mode="overwrite")
        return cls(Path(path), table, name)

    @classmethod
    def open(cls, path: str | Path, name: str = TABLE) -> VectorIndex:
        """Open table ``name`` of an index written by `create`."""
        if not Path(path).is_dir():
            raise PolyfuseError(
                f"no vector index at {path}", hint="build one with `polyfuse index`"
            )
        db = _lancedb().connect(str(path))
        if name not in db.list_tables().tables:
            raise PolyfuseError(f"{path} holds no '{name}' table", hint="rebuild the index")
        return cls(Path(path), db.open_table(name), name)

    def __len__(self) -> int:
        return int(self.table.count_rows())

    def build_ann(
        self, num_partitions: int | None = None, num_sub_vectors: int | None = None
    ) -> None:
        """Train the IVF-PQ index (defaults: sqrt(N) partitions, 8 dims per sub-vector)."""
        n = len(self)
        dim = int(self.table.schema.field("vector").type.list_size)
        from lancedb.index import IvfPq

        config = IvfPq(
            distance_type="cosine",
            num_partitions=num_partitions or max(1, int(math.sqrt(n))),
            num_sub_vectors=num_sub_vectors or max(1, dim // 8),
        )
        self.table.create_index("vector", config=config, replace=True)  # column, then config

    def search(
        self,
        query: np.ndarray,
        k: int = 10,
        *,
        nprobes: int = 20,
        refine_factor: int = 10,
        exact: bool = False,
    ) -> list[Hit]:
        """The ``k`` items most similar to ``query`` (one ``(D,)`` vector).

        Args:
            nprobes: IVF partitions scanned by the approximate stage.
            refine_factor: candidates re-ranked on full vectors, as a multiple of ``k``.
            exact: scan every full vector (no index).
        """
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        req = self.table.search(q, vector_column_name="vector").distance_type("cosine").limit(k)
        req = (
            req.bypass_vector_index()
            if exact
            else req.nprobes(nprobes).refine_factor(refine_factor)
        )
        rows = req.select(["id", "metadata", "_distance"]).to_list()
        return [
            Hit(str(r["id"]), 1.0 - float(r["_distance"]), json.loads(r["metadata"] or "{}"))
            for r in rows
        ]
