"""Cost of the full evaluation analysis against a plain evaluation pass, side by side.

Trains (or reuses) an AV-digits model, then on the same N samples times, alternating,
``polyfuse.evaluation.evaluate`` (one forward pass: metrics only) and
``polyfuse.evaluation.analysis.analyze`` (the same encoder pass, then every modality
subset, exact Shapley values, permutation importance, agreement, failure analysis,
slices and bootstrap intervals). Prints medians and the ratio.

    python benchmarks/evaluation_cost.py --data ../shared/data --rows 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _manifest(paths: dict[str, Path], work: Path, rows: int) -> Path:
    """The first ``rows`` rows of test + train with absolute paths (labelled, real files)."""
    lines = [ln for split in ("test", "train") for ln in paths[split].read_text().splitlines()]
    base = paths["test"].parent
    recs = []
    for ln in lines[:rows]:
        r = json.loads(ln)
        for key in ("image", "audio"):
            if not Path(r[key]).is_absolute():
                r[key] = str((base / r[key]).resolve())
        recs.append(json.dumps(r))
    data = work / f"eval-{rows}.jsonl"
    data.write_text("\n".join(recs) + "\n")
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/polyfuse-bench/evaluation_cost")
    parser.add_argument("--artifact", help="evaluate this artifact instead of training one")
    parser.add_argument("--rows", type=int, default=1000, help="samples evaluated")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from polyfuse.core.config import Config
    from polyfuse.data.manifest import Manifest
    from polyfuse.datasets.av_digits import AVDigitsSpec, build
    from polyfuse.evaluation import evaluate
    from polyfuse.evaluation.analysis import analyze
    from polyfuse.inference.predict import Predictor
    from polyfuse.train import Trainer

    work = Path(args.work)
    paths = build(args.data, work / "hard", AVDigitsSpec("hard"), progress=False)
    art = Path(args.artifact) if args.artifact else work / "artifact"
    if not args.artifact and not (art / "artifact.json").exists():
        import yaml

        cfg = yaml.safe_load((ROOT / "examples" / "av_digits" / "fused.yaml").read_text())
        cfg["train"]["epochs"] = 3
        print("training a 3-epoch AV-digits model ...", flush=True)
        Trainer(Config.from_dict(cfg), art, progress=False).fit(paths["train"], paths["val"])
    data = _manifest(paths, work, args.rows)
    predictor = Predictor.load(art, "cpu")
    manifest = Manifest.load(data, predictor.modalities, predictor.artifact.config.label)

    def plain() -> Any:
        return evaluate(predictor, manifest, progress=False)

    def full() -> Any:
        return analyze(predictor, manifest, progress=False)

    plain()  # warm-up: imports, allocator, file cache
    times: dict[str, list[float]] = {"plain": [], "full": []}
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("full", full)):
            start = time.perf_counter()
            result = fn()
            times[name].append(time.perf_counter() - start)
    n = result.n
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["full"] / med["plain"]
    ratios = sorted(f / p for f, p in zip(times["full"], times["plain"], strict=True))
    print(
        f"{n} samples, {args.repeats} alternating repeats, torch threads {torch.get_num_threads()}"
    )
    print(f"plain evaluation (metrics only):            median {med['plain']:.2f} s")
    print(f"full analysis (subsets, Shapley, agreement, ...): median {med['full']:.2f} s")
    print(f"ratio full / plain: {ratio:.2f}x (per-repeat {', '.join(f'{r:.2f}' for r in ratios)})")
    print(f"analysis phases of the last run: {result.info['seconds']}")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "command": " ".join([Path(sys.executable).name, *sys.argv]),
                    "n": n,
                    "seconds": times,
                    "median": med,
                    "ratio": ratio,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
