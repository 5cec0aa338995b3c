"""Run a peer drift detector (Evidently or alibi-detect) on the windows of an input file.

Runs under a peer's own virtual environment (made by ``setup.sh`` beside this file), never under
polyfuse's: it imports only numpy and the peer, so the drift benchmark can feed polyfuse and the
peers exactly the same numbers and compare them side by side::

    /work/peers/evidently/bin/python benchmarks/peers/drift_peer.py --peer evidently \\
        --input IN.npz --out OUT.json
    /work/peers/alibi/bin/python benchmarks/peers/drift_peer.py --peer alibi \\
        --input IN.npz --out OUT.json

Input (``np.savez``; load with ``allow_pickle=False``)
------------------------------------------------------
- ``blocks``: string array of block names, e.g. ``image/statistics``, ``image/embedding``,
  ``audio/statistics``, ``audio/embedding``, ``image/probs``, ``audio/probs``, ``prediction/probs``.
  The last path component is the block's kind and picks the detector: ``statistics`` and
  ``probs`` are tabular (one column per statistic or per class probability), ``embedding`` (or
  ``embeddings``) is an embedding.
- ``ref/<block>``: float array (n_ref, d), the reference.
- ``win<i>/<block>``: float array (n_i, d), current window i = 0..W-1; every window has every
  block (an empty window block is an array of shape (0, d)).
- ``columns/<block>`` (optional): string array (d,) of column names; default ``f0..f{d-1}``.
A row that holds a NaN is an absent sample (the modality was missing): it is dropped from that
block only. A window block left with fewer than 2 rows is not tested (``drift`` null, ``skipped``).

Output (JSON)
-------------
``{"peer", "version", "versions", "settings", "import_seconds", "setup_seconds", "reference":
{block: {"n", "kind", "detector"}}, "windows": [{"seconds", "blocks": {block: {"drift":
bool|null, "p_value": float|null, "score": float|null, "detector": str, "n": int, ...}}}]}``.
``seconds`` is the wall time of all blocks of that window; ``setup_seconds`` the one-off fit
on the reference (alibi builds its detectors, Evidently its reference datasets) and
``import_seconds`` the peer's import, both excluded from the windows. Extra per-block keys:
``columns_drifted``/``columns``/``per_column`` (tabular blocks: each column's test, score,
p-value or threshold), ``threshold`` (null when Evidently derives it by bootstrap: ``bootstrap``
true), ``warnings`` (the peer's warnings on that block), ``skipped``, or ``error`` (the peer
raised; ``drift`` null).

Detectors (each peer's defaults, deviations listed)
---------------------------------------------------
Evidently (0.7 API):
- tabular blocks: ``Report([DataDriftPreset(columns=...)])`` on ``Dataset``s whose
  ``DataDefinition`` declares the block's columns numerical. Per column the preset picks its
  default test (reference <= 1000 rows: K-S p < 0.05, or chi-square/z-test when <= 5 distinct
  values; above 1000 rows: normed Wasserstein >= 0.1, or Jensen-Shannon). The block drifts when
  the share of drifted columns >= 0.5 (``DriftedColumnsCount``, the preset's dataset-drift rule).
  ``score`` = that share, ``p_value`` null (the rule has none).
- embedding blocks: the drift method of Evidently's ``EmbeddingsDrift`` metric with its default,
  ``ModelDriftMethod`` (a domain classifier; ``bootstrap=True`` when the reference has < 1000
  rows, as the metric does; ``score`` = ROC AUC), or ``--embedding-method mmd`` for
  ``MMDDriftMethod`` defaults (``score`` = MMD^2, threshold 0.015). ``p_value`` null.
  Deviation: the method is called directly (``method(current, reference)``, the very call the
  metric makes) instead of through ``Report([EmbeddingsDrift(...)])``, because the 0.7 metric's
  value keeps only the score and drops the drift verdict, and the metric also fits a t-SNE
  projection for its plot, which is not part of detection and would dominate the timing.
Alibi-detect (0.13):
- tabular blocks: ``KSDrift(x_ref)`` defaults: per-column two-sided K-S, Bonferroni correction,
  ``p_val=0.05`` (on the softmax ``probs`` blocks this is BBSDs, "KS on softmax outputs").
  ``p_value`` = Bonferroni-adjusted smallest p-value, min(1, d * min p) (drift iff < 0.05);
  ``score`` = largest K-S statistic.
- embedding blocks: ``MMDDrift(x_ref, backend="pytorch")``: Gaussian RBF kernel, bandwidth by the
  median heuristic on the reference, 100 permutations, ``p_val=0.05``. ``p_value`` = permutation
  p-value, ``score`` = MMD^2. Deviation: alibi's default backend is TensorFlow; the PyTorch backend
  (same test) is used because it installs here without TensorFlow. Inputs are cast to float32.
Both: ``--threads`` (default 1) caps BLAS/OpenMP/torch/joblib threads; ``--seed`` seeds numpy and
torch (alibi's permutations); neither changes a detector's defaults.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

MIN_ROWS = 2
KINDS = {
    "statistics": "tabular",
    "probs": "tabular",
    "embedding": "embedding",
    "embeddings": "embedding",
}
Result = dict[str, Any]


@dataclass
class Inputs:
    """The blocks of an input file: reference arrays, windows and column names."""

    blocks: list[str]
    columns: dict[str, list[str]]
    reference: dict[str, Any]  # block -> (n_ref, d) array
    windows: list[dict[str, Any]]  # window -> block -> (n_i, d) array


def block_kind(block: str) -> str:
    """`tabular` or `embedding`, from the last path component of a block name."""
    kind = KINDS.get(block.rsplit("/", 1)[-1])
    if kind is None:
        raise SystemExit(
            f"block {block!r}: unknown kind; its last path component must be one of {sorted(KINDS)}"
        )
    return kind


def limit_threads(threads: int) -> None:
    """Cap the thread pools of BLAS, OpenMP, numba and joblib (before numpy is imported)."""
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ["LOKY_MAX_CPU_COUNT"] = str(threads)  # joblib's cpu_count (n_jobs=-1)
    os.environ["ITERATIVE_DO_NOT_TRACK"] = "1"  # Evidently telemetry off
    os.environ["EVIDENTLY_DISABLE_TELEMETRY"] = "1"


def load_inputs(path: Path) -> Inputs:
    """Read and check an input file (layout in the module docstring)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    if "blocks" not in arrays:
        raise SystemExit(f"{path}: no `blocks` array (string array of block names)")
    blocks = [str(b) for b in arrays["blocks"]]
    n_windows = len({k.split("/", 1)[0] for k in arrays if k.startswith("win")})

    def get(key: str) -> Any:
        if key not in arrays:
            raise SystemExit(
                f"{path}: missing array {key!r}; write an empty (0, d) array if needed"
            )
        value = np.asarray(arrays[key], dtype=np.float64)
        if value.ndim != 2:
            raise SystemExit(f"{path}: {key!r} has shape {value.shape}, expected (n, d)")
        return value

    reference = {b: get(f"ref/{b}") for b in blocks}
    windows = [{b: get(f"win{i}/{b}") for b in blocks} for i in range(n_windows)]
    columns = {b: column_names(arrays, b, reference[b].shape[1]) for b in blocks}
    return Inputs(blocks, columns, reference, windows)


def column_names(arrays: dict[str, Any], block: str, width: int) -> list[str]:
    """The block's column names (``columns/<block>`` or ``f0..``), checked against its width."""
    names = [str(c) for c in arrays.get(f"columns/{block}", [f"f{j}" for j in range(width)])]
    if len(names) != width or len(set(names)) != width:
        raise SystemExit(f"columns/{block}: {len(names)} names for {width} columns, or duplicates")
    return names


def present_rows(x: Any) -> Any:
    """Rows without NaN (a NaN row is an absent sample)."""
    import numpy as np

    return x[~np.isnan(x).any(axis=1)]


def finite(value: Any) -> float | None:
    """A float for JSON, None when absent or not finite."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class Peer(Protocol):
    """What the runner needs of a peer: fit per block, then test windows."""

    def load(self) -> None: ...
    def version(self) -> str: ...
    def detector(self, kind: str) -> str: ...
    def setup(self, block: str, kind: str, x_ref: Any, columns: list[str]) -> None: ...
    def ready(self, block: str) -> bool: ...
    def detect(self, block: str, kind: str, x: Any) -> Result: ...


class EvidentlyPeer:
    """Evidently 0.7: DataDriftPreset on tabular blocks, EmbeddingsDrift's method on embeddings."""

    name = "evidently"

    def __init__(self, embedding_method: str) -> None:
        self.embedding_method = embedding_method
        self.refs: dict[str, Any] = {}
        self.columns: dict[str, list[str]] = {}

    def load(self) -> None:
        """Import the peer (kept out of the timings)."""
        import evidently.metrics.embeddings
        import evidently.presets  # noqa: F401

    def version(self) -> str:
        import evidently

        return str(evidently.__version__)

    def detector(self, kind: str) -> str:
        if kind == "tabular":
            return "evidently.DataDriftPreset(share>=0.5)"
        return f"evidently.EmbeddingsDrift({self.embedding_method})"

    def setup(self, block: str, kind: str, x_ref: Any, columns: list[str]) -> None:
        import pandas as pd

        frame = pd.DataFrame(x_ref, columns=columns)
        self.columns[block] = columns
        self.refs[block] = self._dataset(frame, columns) if kind == "tabular" else frame

    def ready(self, block: str) -> bool:
        return block in self.refs

    def _dataset(self, frame: Any, columns: list[str]) -> Any:
        from evidently import DataDefinition, Dataset

        definition = DataDefinition(numerical_columns=columns)
        return Dataset.from_pandas(frame, data_definition=definition)

    def detect(self, block: str, kind: str, x: Any) -> Result:
        import pandas as pd

        frame = pd.DataFrame(x, columns=self.columns[block])
        if kind == "tabular":
            return self._tabular(block, frame)
        return self._embedding(block, frame)

    def _tabular(self, block: str, frame: Any) -> Result:
        from evidently import Report
        from evidently.presets import DataDriftPreset

        columns = self.columns[block]
        report = Report([DataDriftPreset(columns=columns)])
        snapshot = report.run(
            current_data=self._dataset(frame, columns), reference_data=self.refs[block]
        )
        metrics = snapshot.dict()["metrics"]
        per_column = {
            m["config"]["column"]: {
                "method": m["config"]["method"],
                "score": finite(m["value"]),
                "threshold": m["config"]["threshold"],
            }
            for m in metrics
            if m["config"]["type"].endswith("ValueDrift")
        }
        for metric in metrics:
            if metric["config"]["type"].endswith("DriftedColumnsCount"):
                share, count = metric["value"]["share"], metric["value"]["count"]
                return {
                    "drift": bool(share >= metric["config"]["drift_share"]),
                    "p_value": None,
                    "score": finite(share),
                    "columns_drifted": int(count),
                    "columns": len(columns),
                    "per_column": per_column,
                }
        raise RuntimeError("DataDriftPreset returned no DriftedColumnsCount metric")

    def _embedding(self, block: str, frame: Any) -> Result:
        from evidently.metrics.embeddings import MMDDriftMethod, ModelDriftMethod

        reference = self.refs[block]
        if self.embedding_method == "mmd":
            method: Any = MMDDriftMethod()
        else:  # the EmbeddingsDriftMetric default: model(bootstrap=reference rows < 1000)
            method = ModelDriftMethod(bootstrap=reference.shape[0] < 1000)
        # The method adds a `target` column to its arguments: give it copies, as the metric does.
        score, drift, _ = method(frame.copy(), reference.copy())
        threshold = None if method.bootstrap else method.threshold
        return {
            "drift": bool(drift),
            "p_value": None,
            "score": finite(score),
            "threshold": threshold,
            "bootstrap": bool(method.bootstrap),
        }


class AlibiPeer:
    """alibi-detect 0.13: KSDrift on tabular blocks, MMDDrift (PyTorch backend) on embeddings."""

    name = "alibi"

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.detectors: dict[str, Any] = {}
        self.columns: dict[str, list[str]] = {}

    def load(self) -> None:
        """Import the peer (kept out of the timings)."""
        import alibi_detect.cd  # noqa: F401

    def version(self) -> str:
        import alibi_detect

        return str(alibi_detect.__version__)

    def detector(self, kind: str) -> str:
        if kind == "tabular":
            return "alibi_detect.KSDrift(bonferroni,p_val=0.05)"
        return "alibi_detect.MMDDrift(pytorch,rbf,100 permutations,p_val=0.05)"

    def setup(self, block: str, kind: str, x_ref: Any, columns: list[str]) -> None:
        import numpy as np
        from alibi_detect.cd import KSDrift, MMDDrift

        x_ref = x_ref.astype(np.float32)
        self.columns[block] = columns
        if kind == "tabular":
            self.detectors[block] = KSDrift(x_ref)
        else:
            self.detectors[block] = MMDDrift(x_ref, backend="pytorch")

    def ready(self, block: str) -> bool:
        return block in self.detectors

    def detect(self, block: str, kind: str, x: Any) -> Result:
        import numpy as np

        data = self.detectors[block].predict(x.astype(np.float32))["data"]
        if kind == "embedding":
            return {
                "drift": bool(data["is_drift"]),
                "p_value": finite(data["p_val"]),
                "score": finite(data["distance"]),
                "threshold": finite(data["threshold"]),
            }
        p_values, d = np.asarray(data["p_val"]), len(data["p_val"])
        per_column = {
            name: {"p_value": finite(p), "score": finite(distance)}
            for name, p, distance in zip(
                self.columns[block], p_values, data["distance"], strict=True
            )
        }
        return {
            "drift": bool(data["is_drift"]),
            "p_value": finite(min(1.0, d * p_values.min())),
            "score": finite(np.max(data["distance"])),
            "threshold": finite(data["threshold"]),
            "columns_drifted": int((p_values < data["threshold"]).sum()),
            "columns": d,
            "per_column": per_column,
        }


def seed_everything(seed: int, peer: str) -> None:
    """Seed numpy (and torch for alibi's permutation test)."""
    import numpy as np

    np.random.seed(seed)
    if peer == "alibi":
        import torch

        torch.manual_seed(seed)


def skipped(reason: str, detector: str, n: int) -> Result:
    """A block that was not tested, and why."""
    return {
        "drift": None,
        "p_value": None,
        "score": None,
        "skipped": reason,
        "detector": detector,
        "n": n,
    }


def detect_block(peer: Peer, block: str, x: Any) -> Result:
    """One block's test; a peer's exception becomes an ``error`` entry, not a crash."""
    kind = block_kind(block)
    detector = peer.detector(kind)
    if not peer.ready(block):
        return skipped("reference unusable", detector, len(x))
    if len(x) < MIN_ROWS:
        return skipped(f"{len(x)} present rows < {MIN_ROWS}", detector, len(x))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = peer.detect(block, kind, x)
        except Exception as exc:  # the peer's own failure is a benchmark finding
            result = {
                "drift": None,
                "p_value": None,
                "score": None,
                "error": f"{type(exc).__name__}: {exc}",
            }
    if caught:  # kept with the block instead of flooding stderr
        result["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
    return {**result, "detector": detector, "n": len(x)}


def run_window(peer: Peer, inputs: Inputs, window: dict[str, Any]) -> dict[str, Any]:
    """Test every block of one window; ``seconds`` is their total wall time."""
    start = time.perf_counter()
    blocks = {b: detect_block(peer, b, present_rows(window[b])) for b in inputs.blocks}
    return {"seconds": time.perf_counter() - start, "blocks": blocks}


def setup_blocks(peer: Peer, inputs: Inputs) -> dict[str, Result]:
    """Fit the peer on each block's reference (rows with NaN dropped)."""
    reference: dict[str, Result] = {}
    for block in inputs.blocks:
        kind, x_ref = block_kind(block), present_rows(inputs.reference[block])
        entry: Result = {"n": len(x_ref), "kind": kind, "detector": peer.detector(kind)}
        if len(x_ref) < MIN_ROWS:
            entry["error"] = f"{len(x_ref)} present reference rows < {MIN_ROWS}"
        else:
            try:
                peer.setup(block, kind, x_ref, inputs.columns[block])
            except Exception as exc:  # reported, the block is then skipped in every window
                entry["error"] = f"{type(exc).__name__}: {exc}"
        reference[block] = entry
    return reference


def versions(peer: str) -> dict[str, str]:
    """Versions of the numeric stack the peer ran on."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    names = ["numpy", "scipy", "scikit-learn", "pandas"]
    names += ["torch", "alibi-detect"] if peer == "alibi" else ["evidently"]
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load the input, fit the peer on the reference, test every window."""
    seed_everything(args.seed, args.peer)
    if args.peer == "alibi":
        import torch

        torch.set_num_threads(args.threads)
        peer: Peer = AlibiPeer(args.seed)
    else:
        peer = EvidentlyPeer(args.embedding_method)
    inputs = load_inputs(args.input)
    start = time.perf_counter()
    peer.load()
    import_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reference = setup_blocks(peer, inputs)
    setup_seconds = time.perf_counter() - start
    windows = [run_window(peer, inputs, window) for window in inputs.windows]
    settings = {"threads": args.threads, "seed": args.seed}
    if args.peer == "evidently":
        settings["embedding_method"] = args.embedding_method
    return {
        "peer": args.peer,
        "version": peer.version(),
        "versions": versions(args.peer),
        "settings": settings,
        "import_seconds": import_seconds,
        "setup_seconds": setup_seconds,
        "reference": reference,
        "windows": windows,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer", choices=["evidently", "alibi"], required=True)
    parser.add_argument("--input", type=Path, required=True, help="IN.npz (layout: see --help)")
    parser.add_argument("--out", type=Path, required=True, help="OUT.json")
    parser.add_argument("--threads", type=int, default=1, help="thread cap (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--embedding-method",
        choices=["model", "mmd"],
        default="model",
        help="Evidently embedding drift method (default: model, its default)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: writes OUT.json, prints one summary line per window."""
    args = parse_args(argv)
    limit_threads(args.threads)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for i, window in enumerate(result["windows"]):
        drifted = [b for b, r in window["blocks"].items() if r["drift"]]
        print(f"{args.peer} window {i}: {window['seconds']:.3f} s, drift in {drifted or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
