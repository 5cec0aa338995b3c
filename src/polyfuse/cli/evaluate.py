"""``polyfuse evaluate``: metrics of an artifact, and with --out the full analysis and report."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polyfuse.cli.common import (
    EXIT_OK,
    artifact_data_arguments,
    modality_list,
    render_metrics,
    report_bad,
    resolve_artifact,
    severities,
)


def evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``evaluate``."""
    artifact_data_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (accuracy, n, ...)")
    ev = p.add_argument_group(
        "analysis", "any of these runs the full analysis (subsets, Shapley, agreement, failures)"
    )
    ev.add_argument("--out", metavar="DIR", help="write metrics.json and report.html here")
    ev.add_argument("--full", action="store_true", help="full analysis without writing files")
    ev.add_argument(
        "--slices", type=modality_list, metavar="COL,COL", help="metadata columns to slice on"
    )
    ev.add_argument("--robustness", action="store_true", help="corruption curves (slower)")
    ev.add_argument(
        "--severities",
        type=severities,
        default=(1, 2, 3, 4, 5),
        metavar="1,3,5",
        help="corruption severities (default 1..5)",
    )
    ev.add_argument("--saliency", type=int, default=0, metavar="N", help="IG maps of N errors")
    ev.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="resamples for 95%% intervals"
    )
    ev.add_argument(
        "--confident",
        type=float,
        default=0.8,
        metavar="P",
        help="probability above which disagreeing modalities contradict (default 0.8)",
    )
    ev.add_argument(
        "--gap",
        type=float,
        default=0.05,
        metavar="D",
        help="worst-slice gap that is flagged (default 0.05)",
    )
    p.add_argument(
        "--sync-model",
        metavar="DIR",
        help="a learned sync model for the sync section of video models (default: the "
        "signal baseline)",
    )


def evaluate(args: argparse.Namespace) -> int:
    """Metrics of an artifact on a labelled manifest; with --out, the full analysis and report."""
    from polyfuse.artifacts.kinds import kind_of

    args.artifact = resolve_artifact(args.artifact)  # the evaluators read the folder
    return EVALUATORS[kind_of(args.artifact).name](args)


def _evaluate_captioning(args: argparse.Namespace) -> int:
    """A captioning artifact: BLEU-1..4 and CIDEr-D."""
    from polyfuse.evaluation.captioning import evaluate_captioning

    scores = evaluate_captioning(args.artifact, args.data)
    print(json.dumps(scores) if args.json else ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    return EXIT_OK


def _evaluate_alignment(args: argparse.Namespace) -> int:
    """An alignment artifact: retrieval and consistency metrics."""
    from polyfuse.retrieval.pipeline import evaluate_alignment

    metrics = evaluate_alignment(args.artifact, args.data, progress=not args.quiet)
    if args.json:
        print(json.dumps(metrics))
    else:
        for direction, values in metrics.items():
            print(f"{direction}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
    return EXIT_OK


def _evaluate_classifier(args: argparse.Namespace) -> int:
    """A classifier artifact: metrics, or with --out the full analysis and report."""
    from polyfuse.evaluation import evaluate

    if args.full or args.out or args.slices or args.robustness or args.saliency:
        return _analyse(args)
    result = evaluate(
        args.artifact,
        args.data,
        modalities=args.modalities,
        progress=not args.quiet,
        device=args.device,
    )
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(render_metrics(result.metrics, result.modalities))
        report_bad(result.bad_rows)
    return EXIT_OK


def _analyse(args: argparse.Namespace) -> int:
    """``evaluate --out DIR``: every analysis, ``metrics.json`` and ``report.html``."""
    from polyfuse.evaluation.analysis import analyses_for, analyze

    analyses = analyses_for(
        slices=args.slices,
        robustness=args.robustness,
        severities=args.severities,
        saliency=args.saliency,
        bootstrap=args.bootstrap,
        confident=args.confident,
        gap=args.gap,
        sync_model=args.sync_model,
    )
    analysis = analyze(
        args.artifact,
        args.data,
        analyses,
        modalities=args.modalities,
        progress=not args.quiet,
        device=args.device,
    )
    data = analysis.to_dict()
    written = []
    if args.out:
        from polyfuse.evaluation.report.html import write_report

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(data, indent=2))
        written = [out / "metrics.json", write_report(analysis, out / "report.html")]
    if args.json:
        print(json.dumps(data))
        return EXIT_OK
    print(render_metrics(analysis.metrics, tuple(analysis.info["fed"])))
    print(_render_analysis(data))
    report_bad(analysis.bad_rows)
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def _render_analysis(data: dict[str, Any]) -> str:
    """Text summary of an analysis: subsets, contributions, agreement, failures, slices."""
    ab, contrib = data["ablation"], data["contributions"]
    metric = ab["metric"]
    lines = ["", f"{metric} by modality subset:"]
    for key, v in sorted(ab["subsets"].items(), key=lambda kv: -len(kv[1]["modalities"])):
        lines.append(f"  {key:<28} {v[metric]:.3f}")
    lines.append(
        f"  relative robustness {ab['relative_robustness']:.3f}, "
        f"effective robustness {ab['effective_robustness']:+.3f}"
    )
    for vf, entry in contrib["value_functions"].items():
        shares = ", ".join(f"{m} {v:.0%}" for m, v in entry["share"].items())
        lines.append(f"Shapley share ({vf}): {shares}")
    drops = ", ".join(
        f"{m} {v['mean']:+.3f}" for m, v in contrib["permutation_importance"]["drop"].items()
    )
    lines.append(f"permutation importance ({metric} drop): {drops}")
    if data["agreement"]:
        for pair, v in data["agreement"]["pairs"].items():
            lines.append(
                f"agreement {pair.replace('|', ' vs ')}: kappa {v['kappa']:.3f}, "
                f"{v['contradictions']} confident contradictions"
            )
    if data["failures"]:
        cats = data["failures"]["categories"]
        lines.append(f"errors: {', '.join(f'{k} {n}' for k, n in cats.items()) or 'none'}")
    for col, sl in data["slices"].items():
        if sl["flagged"]:
            lines.append(f"slice gap: {col}={sl['worst']} is {sl['gap']:.3f} below overall")
    return "\n".join(lines)


#: artifact kind -> how ``evaluate`` treats it (keys are the registered kinds).
EVALUATORS: dict[str, Callable[[argparse.Namespace], int]] = {
    "classifier": _evaluate_classifier,
    "alignment": _evaluate_alignment,
    "captioning": _evaluate_captioning,
    "onnx": _evaluate_classifier,  # an export loads as the classifier it came from
}
