"""Human review routing on a held-apart labelled stream: how many answers go to people, and
how many of the model's errors they hold.

The artifact answers every row of ``--stream`` once (`polyfuse.monitor.observe`: the fused
output, each modality's own head and the leave-one-modality-out outputs, what the service
computes per request under ``--review``), and the service's own router
(`polyfuse.serve.review.routing.Router.of_profile`: calibration and error model fitted on
the reference profile) judges the answers in the order they were served. The reference
is the artifact's profile when it holds one, else ``--reference`` (default: the
validation manifest recorded in the artifact's lineage) observed the same way. Nothing
is fitted on the stream.

``--mix served`` replays the stream as served traffic instead of pristine pairs (see
`served_rows` and `MIX`: complete pairs, requests without one modality, and inputs
degraded by `polyfuse.evaluation.corruptions`, drawn per request with ``--seed``;
``--passes`` requests per row, each with its own draw); the corrupted files are written
under ``--work``. A request whose every input fails its quality gate is refused
by the service (422) and is not an answer. Either way the rows are replayed in an order
shuffled with ``--seed`` (the manifests are sorted by digit).

Printed, for each reason alone and for the default (``predicted_error`` at ``--share``):
routed share, accuracy of the answers not routed, precision (share of routed answers that
were wrong) and recall (share of the model's errors that were routed). Then each error
signal alone, ranked over the whole stream with the same share routed (the most that
signal can catch at that share), the error model likewise, and the served mix per
condition. The firewall and shadow reasons need a firewall and a shadow model and are not
part of an offline stream. Accuracy only, no timing.

    python benchmarks/review_routing.py --train-clean --data ../shared/data --work /tmp/review-bench
    python benchmarks/review_routing.py --artifact /tmp/review-bench/model \\
        --stream /tmp/review-bench/clean/test.jsonl --mix served --work /tmp/review-bench
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

ROOT = Path(__file__).resolve().parents[1]
#: The served mix: condition -> share of requests. Corrupted requests degrade one
#: modality with a corruption of its kind at a severity drawn from 1..5.
MIX = {"complete": 0.55, "no_audio": 0.10, "no_image": 0.10, "image_bad": 0.125, "audio_bad": 0.125}


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


def top_share(score: NDArray[np.float64], share: float) -> NDArray[np.bool_]:
    """The ``share`` of answers with the highest ``score`` (a ranking, not a threshold)."""
    out = np.zeros(len(score), dtype=bool)
    out[np.argsort(-score, kind="stable")[: round(share * len(score))]] = True
    return out


# ---------------------------------------------------------------- the clean model
def train_clean(data: Path, work: Path) -> tuple[Path, Path]:
    """The clean AV-digits build and `examples/av_digits/fused.yaml` trained on it (once:
    an existing artifact is reused), with its reference profile (no model card)."""
    import yaml

    from polyfuse.core.config import Config
    from polyfuse.datasets.av_digits import AVDigitsSpec, build
    from polyfuse.train import Trainer

    manifests = build(data, work / "clean", AVDigitsSpec(variant="clean"), progress=False)
    artifact = work / "model"
    if not (artifact / "artifact.json").exists():
        cfg = yaml.safe_load((ROOT / "examples" / "av_digits" / "fused.yaml").read_text())
        Trainer(Config.from_dict(cfg), artifact, progress=False, card=False).fit(
            manifests["train"], manifests["val"]
        )
    return artifact, manifests["test"]


# ---------------------------------------------------------------- served traffic
def served_rows(
    manifest: Path, predictor: Any, work: Path, seed: int, passes: int = 1
) -> list[dict[str, Any]]:
    """The rows of ``manifest`` as served requests, ``passes`` times over: per request a
    condition drawn from `MIX` (``condition`` column), corrupted inputs written as PNG /
    16-bit WAV under ``work``."""
    import soundfile as sf
    from PIL import Image

    from polyfuse.evaluation.corruptions import Corruption, corruptions_for

    contracts = predictor.artifact.contracts
    rng = np.random.default_rng(seed)
    names = list(MIX)
    folder = work / f"served-{manifest.parent.name}-{manifest.stem}-s{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    lines = manifest.read_text().splitlines()
    out = []
    for i, line in enumerate(lines * passes):
        row = json.loads(line)
        row["id"] = f"{row['id']}/{i // len(lines)}"
        for m in ("image", "audio"):
            row[m] = str((manifest.parent / row[m]).resolve())
        condition = names[int(rng.choice(len(names), p=list(MIX.values())))]
        if condition.startswith("no_"):
            row.pop(condition[3:])
        elif condition.endswith("_bad"):
            m = condition[:-4]
            kinds = corruptions_for(contracts[m].kind)
            name = kinds[int(rng.integers(len(kinds)))]
            severity = int(rng.integers(1, 6))
            obj = Corruption(name, severity, seed)(contracts[m].load(row[m]), i)
            path = folder / f"{i}.{'png' if m == 'image' else 'wav'}"
            if m == "image":
                Image.fromarray(obj[:, :, 0] if obj.shape[2] == 1 else obj).save(path)
            else:
                wave = np.clip(obj, -1.0, 1.0).astype(np.float32)
                sf.write(path, wave, contracts[m].sample_rate, subtype="PCM_16")
            row[m] = str(path)
            condition = f"{name}@{severity}"
        row["condition"] = condition
        out.append(row)
    return out


def shuffled(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """``rows`` in the order they are served."""
    order = np.random.default_rng(seed + 1).permutation(len(rows))
    return [rows[int(i)] for i in order]


# ---------------------------------------------------------------- observing
def observe_manifest(predictor: Any, path: str | Path) -> Any:
    from polyfuse.data.manifest import Manifest
    from polyfuse.monitor.observe import observe

    manifest = Manifest.load(path, predictor.modalities, predictor.artifact.config.label)
    return observe(predictor, manifest, progress=False)


def reference_of(predictor: Any, reference: str | None) -> tuple[Any, str]:
    """The reference profile and where it came from."""
    from polyfuse.monitor.profile import PROFILE_DIR, ReferenceProfile

    folder = Path(predictor.artifact.path) / PROFILE_DIR
    if reference is None and folder.is_dir():
        return ReferenceProfile.load(folder), f"the artifact's profile ({folder})"
    if reference is None:
        lineage = predictor.artifact.info.get("lineage", {})
        reference = (lineage.get("val") or {}).get("path")
        if reference is None:
            sys.exit("no reference profile and no validation manifest in the lineage: --reference")
    return ReferenceProfile(observe_manifest(predictor, reference)), str(reference)


def stream_of(args: argparse.Namespace, predictor: Any) -> tuple[Any, list[str], int]:
    """Observations of the stream as served, each answer's condition, and the number of
    requests refused (every input failed its quality gate)."""
    src = Path(args.stream)
    if args.mix == "served":
        rows = served_rows(src, predictor, Path(args.work), args.seed, args.passes)
    else:
        rows = [json.loads(line) for line in src.read_text().splitlines()]
        for r in rows:
            r.update({m: str((src.parent / r[m]).resolve()) for m in ("image", "audio") if m in r})
            r["condition"] = "complete"
    rows = shuffled(rows, args.seed)
    path = Path(args.work) / f"{src.parent.name}-{src.stem}-{args.mix}-s{args.seed}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    obs = observe_manifest(predictor, path)
    condition = {str(r["id"]): str(r["condition"]) for r in rows}
    return obs, [condition[i] for i in obs.ids], len(rows) - len(obs)


# ---------------------------------------------------------------- routing
def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from polyfuse.inference.predict import Predictor
    from polyfuse.serve.review.errors import FEATURES, Answers, features
    from polyfuse.serve.review.routing import REASONS, Router, RoutingPolicy

    predictor = Predictor.load(args.artifact, device=args.device)
    profile, source = reference_of(predictor, args.reference)
    stream, conditions, refused = stream_of(args, predictor)
    if stream.labels is None:
        sys.exit(f"{args.stream} is not labelled")
    wrong = ~stream.outputs.correct(stream.probs, stream.labels)
    answers = Answers.of(stream)

    def routed(reasons: tuple[str, ...], model: bool = True) -> Any:
        policy = RoutingPolicy(args.share, args.window, args.threshold, args.contradiction, reasons)
        router = Router.of_profile(policy, profile, stream.outputs)  # a fresh window
        if not model:  # ablation: the predicted error is one minus the confidence
            router = Router(policy, router.confidences, None, modalities=router.modalities)
            ref = Answers.of(profile.observations)
            router.reset(router.error_probability(ref).tolist())
        decided = router.decide_many(
            stream.probs, answers.without, answers.present, None, answers.unimodal
        )
        return np.array([d.routed for d in decided], dtype=bool), router

    t, c, s = args.threshold, args.contradiction, args.share
    default, router = routed(("predicted_error",))
    rows = [
        figures(f"predicted_error, share {s} (default)", default, wrong),
        figures(
            f"predicted_error, share {s}, confidence only (no error model)",
            routed(("predicted_error",), model=False)[0],
            wrong,
        ),
        figures(f"low_confidence < {t}", routed(("low_confidence",))[0], wrong),
        figures(f"contradiction >= {c}", routed(("contradiction",))[0], wrong),
        figures(
            "low_confidence + contradiction (old default)",
            routed(("low_confidence", "contradiction"))[0],
            wrong,
        ),
        figures("every reason", routed(REASONS)[0], wrong),
    ]
    # each signal alone, ranked over the whole stream (no window): the most it can do
    x = features(answers, router.confidences, router.errors.heads if router.errors else {})
    sign = {"confidence": -1.0, "margin": -1.0}
    signals = [
        figures(f"{name} (top {s:.0%})", top_share(sign.get(name, 1.0) * x[:, j], s), wrong)
        for j, name in enumerate(FEATURES)
    ]
    risk = router.error_probability(answers)
    signals.append(figures(f"error model (top {s:.0%})", top_share(risk, s), wrong))
    per_condition = []
    family = [k.split("@")[0] for k in conditions]  # a corruption at every severity
    for cond in sorted(set(family), key=lambda k: (k != "complete", k)):
        pick = np.array([k == cond for k in family])
        per_condition.append(
            {
                "condition": cond,
                "n": int(pick.sum()),
                "accuracy": float(1.0 - wrong[pick].mean()),
                "routed": float(default[pick].mean()),
                "errors": int(wrong[pick].sum()),
                "caught": int((wrong & default)[pick].sum()),
            }
        )
    errors = router.errors
    return {
        "artifact": str(args.artifact),
        "stream": str(args.stream),
        "mix": args.mix,
        "reference": source,
        "error_model": None
        if errors is None
        else {
            "rows": errors.rows,
            "errors": errors.errors,
            "coef": dict(zip(("intercept", *FEATURES), errors.coef.round(3).tolist(), strict=True)),
        },
        "n": len(stream),
        "refused": refused,
        "accuracy": float(1.0 - wrong.mean()),
        "errors": int(wrong.sum()),
        "reasons": [vars(r) for r in rows],
        "signals": [vars(r) for r in signals],
        "conditions": per_condition,
    }


def report(result: dict[str, Any]) -> None:
    header = "| routing | routed share (n) | accuracy not routed | precision | recall |"
    rule = "|---|---|---|---|---|"
    print(
        f"{result['stream']} ({result['mix']}): {result['n']} answers "
        f"({result['refused']} requests refused), accuracy {result['accuracy']:.3f}, "
        f"{result['errors']} errors; reference: {result['reference']}"
    )
    print(f"error model: {result['error_model']}\n")
    print("\n".join([header, rule, *(Row(**r).line() for r in result["reasons"])]))
    print("\neach signal alone, ranked over the whole stream:\n")
    print("\n".join([header, rule, *(Row(**r).line() for r in result["signals"])]))
    if len(result["conditions"]) > 1:
        print("\nper condition, corruptions over severities 1-5 (default routing):\n")
        print("| condition | answers | accuracy | routed share | errors caught |")
        print("|---|---|---|---|---|")
        for c in result["conditions"]:
            print(
                f"| {c['condition']} | {c['n']} | {c['accuracy']:.3f} | {c['routed']:.3f} "
                f"| {c['caught']} / {c['errors']} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-clean", action="store_true", help="build and train the clean model")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/review-bench", help="files written here")
    ap.add_argument("--artifact", help="artifact folder")
    ap.add_argument("--stream", help="held-apart labelled manifest")
    ap.add_argument("--mix", choices=("none", "served"), default="none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--passes", type=int, default=3, help="--mix served: requests per stream row")
    ap.add_argument(
        "--reference",
        help="labelled manifest to fit on (default: the artifact's profile, else the "
        "validation manifest of its lineage)",
    )
    ap.add_argument("--share", type=float, default=0.1, help="default of --review-share")
    ap.add_argument("--window", type=int, default=200, help="default of --review-window")
    ap.add_argument("--threshold", type=float, default=0.5, help="default of --review-threshold")
    ap.add_argument(
        "--contradiction", type=float, default=0.9, help="default of --review-contradiction"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    if args.train_clean:
        artifact, test = train_clean(Path(args.data), Path(args.work))
        print(f"artifact {artifact}\ntest stream {test}")
        return
    if not args.artifact or not args.stream:
        ap.error("--artifact and --stream (or --train-clean)")
    result = evaluate(args)
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
