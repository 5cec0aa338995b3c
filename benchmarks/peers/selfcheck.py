"""Self-check of the peer drift adapters, and helpers to call them from a benchmark.

Writes a synthetic input in ``drift_peer.py``'s layout (reference N(0, 1); window 0 drawn from the
same distribution; window 1 mean-shifted), runs every installed peer on it through its own venv
and checks: no block drifts in window 0, every block drifts in window 1. Needs only numpy (no
polyfuse); the peers' venvs come from ``setup.sh``::

    bash benchmarks/peers/setup.sh
    python benchmarks/peers/selfcheck.py [--peers-dir /work/peers] [--out DIR]

Exit code 0 when every peer behaves, 1 otherwise. A benchmark reuses `write_input` and
`run_peer` to feed the peers the same numbers it feeds polyfuse.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PEERS = ("evidently", "alibi")
PEERS_DIR = Path(os.environ.get("POLYFUSE_PEERS_DIR", "/work/peers"))


def write_input(
    path: Path,
    reference: Mapping[str, np.ndarray],
    windows: Sequence[Mapping[str, np.ndarray]],
    columns: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Write ``drift_peer.py``'s input: blocks, ``ref/<block>``, ``win<i>/<block>``, columns."""
    blocks = sorted(reference)
    arrays: dict[str, np.ndarray] = {"blocks": np.array(blocks)}
    for block in blocks:
        arrays[f"ref/{block}"] = np.asarray(reference[block], dtype=np.float64)
        for i, window in enumerate(windows):
            arrays[f"win{i}/{block}"] = np.asarray(window[block], dtype=np.float64)
        if columns and block in columns:
            arrays[f"columns/{block}"] = np.array(list(columns[block]))
    np.savez(path, **arrays)  # type: ignore[arg-type]


def peer_python(peer: str, peers_dir: Path = PEERS_DIR) -> Path:
    """The interpreter of a peer's venv (made by setup.sh)."""
    return peers_dir / peer / "bin" / "python"


def run_peer(
    peer: str, input_path: Path, out: Path, *extra: str, peers_dir: Path = PEERS_DIR
) -> dict[str, Any]:
    """Run ``drift_peer.py`` for one peer in its venv; returns its JSON output."""
    python = peer_python(peer, peers_dir)
    if not python.exists():
        raise FileNotFoundError(f"{python} missing: run `bash {HERE / 'setup.sh'}` first")
    command = [str(python), str(HERE / "drift_peer.py"), "--peer", peer]
    command += ["--input", str(input_path), "--out", str(out), *extra]
    subprocess.run(command, check=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def synthetic(rng: np.random.Generator, n: int, shift: float) -> dict[str, np.ndarray]:
    """One sample of every block; ``shift`` moves the mean of each block (logit 0 for probs)."""
    statistics = rng.normal(shift, 1.0, size=(n, 6))
    statistics[rng.random(n) < 0.2] = np.nan  # absent samples: dropped by the adapter
    logits = rng.normal(0.0, 1.0, size=(n, 5))
    logits[:, 0] += shift
    return {
        "audio/statistics": statistics,
        "image/embedding": rng.normal(shift, 1.0, size=(n, 32)),
        "prediction/probs": softmax(logits),
    }


def check(result: Mapping[str, Any]) -> list[str]:
    """Failures: a drift in the unshifted window 0, a miss in the shifted window 1."""
    failures = []
    for block, entry in result["windows"][0]["blocks"].items():
        if entry["drift"] is not False:
            failures.append(f"window 0 (unshifted) {block}: drift={entry['drift']} {entry}")
    for block, entry in result["windows"][1]["blocks"].items():
        if entry["drift"] is not True:
            failures.append(f"window 1 (shifted) {block}: drift={entry['drift']} {entry}")
    return failures


def summary(result: Mapping[str, Any]) -> str:
    """One line per window: time and each block's verdict, score and p-value."""
    lines = [f"{result['peer']} {result['version']}: setup {result['setup_seconds']:.3f} s"]
    for i, window in enumerate(result["windows"]):
        cells = [
            f"{block}={entry['drift']} (score {entry['score']}, p {entry['p_value']})"
            for block, entry in window["blocks"].items()
        ]
        lines.append(f"  window {i}: {window['seconds']:.3f} s; " + "; ".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Write the synthetic input, run each peer, print and check the verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers-dir", type=Path, default=PEERS_DIR)
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS))
    parser.add_argument("--out", type=Path, default=None, help="keep IN.npz and OUT-*.json here")
    parser.add_argument("--shift", type=float, default=1.0)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="peers-selfcheck-"))
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    windows = [synthetic(rng, 200, 0.0), synthetic(rng, 200, args.shift)]
    write_input(out / "IN.npz", synthetic(rng, 500, 0.0), windows)
    failures = []
    for peer in args.peers:
        result = run_peer(peer, out / "IN.npz", out / f"OUT-{peer}.json", peers_dir=args.peers_dir)
        print(summary(result))
        failures += [f"{peer}: {failure}" for failure in check(result)]
    print("\n".join(failures) or f"self-check passed ({out})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
