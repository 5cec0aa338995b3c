"""Human review routing on a held-apart labelled stream: how many answers go to people, and
how many of the model's errors they hold.

The artifact answers every row of ``--stream`` once (`polyfuse.monitor.observe`: the fused
output and the leave-one-modality-out outputs the service computes per request under
``--review``), and `polyfuse.serve.review.routing.Router` (the service's own rules) judges
each answer. Confidences are calibrated as the service calibrates them: with the
artifact's reference profile when it holds one, else fitted the same way
(`polyfuse.monitor.estimate.Calibration`) on ``--reference`` (default: the validation
manifest recorded in the artifact's lineage). Nothing is fitted on the stream.

Per reason and combined, at the default settings and over a sweep of the confidence
threshold: the routed share, the accuracy of the answers not routed, and the precision /
recall of routing over the model's errors (precision: share of routed answers that were
wrong; recall: share of the wrong answers that were routed). One more row routes a fixed
share (``--budget``) of the least confident answers: the most the confidence signal can
catch at that share, whatever the threshold. The firewall and shadow
reasons need a firewall and a shadow model and are not part of an offline stream.
Accuracy only, no timing.

    python benchmarks/review_routing.py --artifact /tmp/avfull/runs/hard-concat+dropout-s0 \\
        --stream /tmp/avfull/hard/test.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Row:
    """One routing setting's figures on the stream."""

    name: str
    routed: float  # share of answers routed
    unrouted_accuracy: float
    precision: float  # share of routed answers that were wrong
    recall: float  # share of the wrong answers that were routed
    n_routed: int

    def line(self) -> str:
        return (
            f"| {self.name} | {self.routed:.3f} ({self.n_routed}) | {self.unrouted_accuracy:.3f} "
            f"| {self.precision:.3f} | {self.recall:.3f} |"
        )


def figures(name: str, routed: NDArray[np.bool_], wrong: NDArray[np.bool_]) -> Row:
    """The row of a routing mask over answers with known errors."""
    n_routed = int(routed.sum())
    kept = ~routed
    return Row(
        name,
        float(routed.mean()),
        float(1.0 - wrong[kept].mean()) if kept.any() else float("nan"),
        float(wrong[routed].mean()) if n_routed else float("nan"),
        float((routed & wrong).sum() / max(1, wrong.sum())),
        n_routed,
    )


def observe_manifest(predictor: Any, path: str | Path) -> Any:
    from polyfuse.data.manifest import Manifest
    from polyfuse.monitor.observe import observe

    artifact = predictor.artifact
    manifest = Manifest.load(path, predictor.modalities, artifact.config.label)
    return observe(predictor, manifest, progress=False)


def calibration_of(predictor: Any, reference: str | None) -> tuple[Any, str]:
    """The reference calibration and where it came from."""
    from polyfuse.monitor.estimate import Calibration
    from polyfuse.monitor.profile import PROFILE_DIR, ReferenceProfile

    folder = Path(predictor.artifact.path) / PROFILE_DIR
    if reference is None and folder.is_dir():
        return ReferenceProfile.load(folder).calibration, f"the artifact's profile ({folder})"
    if reference is None:
        lineage = predictor.artifact.info.get("lineage", {})
        reference = (lineage.get("val") or {}).get("path")
        if reference is None:
            sys.exit("no reference profile and no validation manifest in the lineage: --reference")
    return Calibration.fit(observe_manifest(predictor, reference)), str(reference)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from polyfuse.inference.predict import Predictor
    from polyfuse.serve.review.routing import Confidences, Router, RoutingPolicy

    predictor = Predictor.load(args.artifact, device=args.device)
    calibration, source = calibration_of(predictor, args.reference)
    stream = observe_manifest(predictor, args.stream)
    if stream.labels is None:
        sys.exit(f"{args.stream} is not labelled")
    wrong = ~stream.outputs.correct(stream.probs, stream.labels)
    without = {m: v.without for m, v in stream.modalities.items()}
    present = {m: v.present for m, v in stream.modalities.items()}
    confidences = {
        "calibrated": Confidences.of(calibration, stream.outputs),
        "raw": Confidences(stream.outputs),
    }

    def mask(threshold: float, contradiction: float, reasons: tuple[str, ...], how: str) -> Any:
        policy = RoutingPolicy(threshold, contradiction, reasons)
        decided = Router(policy, confidences[how]).decide_many(stream.probs, without, present)
        return np.array([d.routed for d in decided], dtype=bool)

    t, c = args.threshold, args.contradiction
    rows = [
        figures(f"low_confidence < {t}", mask(t, c, ("low_confidence",), "calibrated"), wrong),
        figures(f"contradiction >= {c}", mask(t, c, ("contradiction",), "calibrated"), wrong),
        figures(
            "default (both)", mask(t, c, ("low_confidence", "contradiction"), "calibrated"), wrong
        ),
        figures(
            "default, raw confidences",
            mask(t, c, ("low_confidence", "contradiction"), "raw"),
            wrong,
        ),
    ]
    # the best the confidence signal can do at a fixed share: the least confident answers
    conf = confidences["calibrated"].fused_confidence(stream.probs)
    budget = np.zeros(len(conf), dtype=bool)
    budget[np.argsort(conf, kind="stable")[: round(args.budget * len(conf))]] = True
    rows.append(figures(f"least confident {args.budget:.0%} (a fixed share)", budget, wrong))
    sweep = []
    for threshold in args.sweep:
        for reasons, label in (
            (("low_confidence",), "low_confidence"),
            (("low_confidence", "contradiction"), "both"),
        ):
            routed = mask(threshold, c, reasons, "calibrated")
            sweep.append(figures(f"{label}, threshold {threshold}", routed, wrong))
    return {
        "artifact": str(args.artifact),
        "stream": str(args.stream),
        "calibration": source,
        "n": len(stream),
        "accuracy": float(1.0 - wrong.mean()),
        "errors": int(wrong.sum()),
        "default": [vars(r) for r in rows],
        "sweep": [vars(r) for r in sweep],
        "table": [r.line() for r in rows],
        "sweep_table": [r.line() for r in sweep],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", required=True, help="artifact folder")
    ap.add_argument("--stream", required=True, help="held-apart labelled manifest")
    ap.add_argument(
        "--reference",
        help="labelled manifest to calibrate on (default: the artifact's profile, else the "
        "validation manifest of its lineage)",
    )
    ap.add_argument("--threshold", type=float, default=0.5, help="default of --review-threshold")
    ap.add_argument(
        "--contradiction", type=float, default=0.9, help="default of --review-contradiction"
    )
    ap.add_argument(
        "--sweep",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[0.4, 0.5, 0.6, 0.7, 0.8],
        help="confidence thresholds to sweep (comma list)",
    )
    ap.add_argument("--budget", type=float, default=0.1, help="share routed by the fixed-share row")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    result = evaluate(args)
    header = "| routing | routed share (n) | accuracy not routed | precision | recall |"
    rule = "|---|---|---|---|---|"
    print(f"{result['stream']}: {result['n']} answers, accuracy {result['accuracy']:.3f},")
    print(f"{result['errors']} errors; calibrated on {result['calibration']}\n")
    print("\n".join([header, rule, *result["table"]]))
    print("\nconfidence threshold sweep (contradiction at the default):\n")
    print("\n".join([header, rule, *result["sweep_table"]]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
