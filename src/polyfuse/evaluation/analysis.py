"""Full evaluation of an artifact: metrics, ablation, contributions, agreement, failures,
slices, corruption robustness and saliency, all from one encoder pass.

`analyze` is the Python API behind ``polyfuse evaluate ARTIFACT --data M --out DIR``;
`Analysis.to_dict` is what ``metrics.json`` and ``--json`` hold, and
`polyfuse.evaluation.report.html.write_report` renders it as HTML.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polyfuse.core.errors import PolyfuseError
from polyfuse.core.progress import bar
from polyfuse.data.dataset import BadRow, MultimodalDataset
from polyfuse.data.manifest import Manifest, Row
from polyfuse.evaluation import shapley as shap
from polyfuse.evaluation.agreement import agreement
from polyfuse.evaluation.bank import FeatureBank, Fused, encode_bank, fuse_bank
from polyfuse.evaluation.corruptions import SEVERITIES, Corruption, corruptions_for
from polyfuse.evaluation.failures import failure_analysis
from polyfuse.evaluation.metrics import (
    bootstrap_ci,
    bootstrap_ci_multilabel,
    calibration,
    headline,
    roc_auc_ovr,
    task_metrics,
)
from polyfuse.evaluation.robustness import effective_robustness, relative_robustness
from polyfuse.evaluation.saliency import Saliency, integrated_gradients
from polyfuse.evaluation.slices import slice_columns, slice_metrics
from polyfuse.heads.tasks import MulticlassTask, MultilabelTask, Task
from polyfuse.inference.collect import subset_key

log = logging.getLogger("polyfuse.evaluation")


@dataclass
class Analysis:
    """Everything `analyze` found. ``to_dict`` is the JSON form (``metrics.json``).

    Attributes:
        metrics: task metrics plus ``roc_auc``, ``calibration`` and ``confidence_intervals``.
        ablation: per modality subset metrics, curves and robustness scores.
        contributions: Shapley values (overall, per class), efficiency error, the
            fusion's own weights and permutation importance.
        agreement: kappa, cross-modality confusion, contradictions (classification).
        failures: categorised and clustered errors (multi-class).
        slices: metrics and worst-slice gaps per metadata column.
        robustness: accuracy curves under corruption (when requested).
        saliency: Integrated Gradients of a few errors (when requested; not in JSON).
        info: artifact, data, modalities, sizes and timings.
        bad_rows: rows that could not be evaluated.
        dataset, bank, fused, shapley: raw material for the report (not in JSON).
    """

    metrics: dict[str, Any]
    ablation: dict[str, Any]
    contributions: dict[str, Any]
    agreement: dict[str, Any] | None
    failures: dict[str, Any] | None
    slices: dict[str, Any]
    robustness: dict[str, Any] | None
    info: dict[str, Any]
    bad_rows: list[BadRow] = field(default_factory=list)
    saliency: list[tuple[int, Saliency]] = field(default_factory=list)
    dataset: MultimodalDataset | None = None
    bank: FeatureBank | None = None
    fused: Fused | None = None
    shapley: dict[str, Tensor] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of evaluated samples."""
        return int(self.metrics.get("n", 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON form: headline metrics at the top level, then one key per analysis."""
        return {
            **headline(self.metrics),
            "metrics": self.metrics,
            "ablation": self.ablation,
            "contributions": self.contributions,
            "agreement": self.agreement,
            "failures": self.failures,
            "slices": self.slices,
            "robustness": self.robustness,
            "info": self.info,
            "bad_rows": [b.to_dict() for b in self.bad_rows],
        }


def analyze(
    artifact: Any,
    data: str | Path | Manifest,
    *,
    modalities: Sequence[str] | None = None,
    slices: Sequence[str] | None = None,
    robustness: bool = False,
    severities: Sequence[int] = SEVERITIES,
    saliency: int = 0,
    bootstrap: int = 1000,
    permutations: int = 5,
    confident: float = 0.8,
    gap_threshold: float = 0.05,
    progress: bool = True,
    device: str = "auto",
    seed: int = 0,
) -> Analysis:
    """Evaluate an artifact on a labelled manifest and analyse what each modality does.

    Encoders run once over the data; every other analysis fuses the stored features
    again (see `FeatureBank`). Corruption curves re-encode only the corrupted modality.

    Args:
        artifact: artifact folder, `Artifact` or `Predictor`.
        data: labelled manifest.
        modalities: feed only these (the rest count as missing).
        slices: metadata columns to slice on; default: every categorical-looking column.
        robustness: also compute corruption curves (slower: re-encodes per corruption).
        severities: corruption severities (1..5) for the curves.
        saliency: Integrated Gradients for this many errors (0: none).
        bootstrap: resamples for the confidence intervals (0: none).
        permutations: repeats of the permutation-importance check.
        confident: probability above which two disagreeing modalities contradict.
        gap_threshold: worst-slice gap that gets flagged.
        progress: progress bars.
        device: where to run.
        seed: seed of bootstrap, permutations, corruptions and clustering.
    """
    from polyfuse.inference.predict import Predictor

    t0 = time.perf_counter()
    predictor = Predictor.of(artifact, device)
    art = predictor.artifact
    model, task = art.model, art.task
    manifest = (
        data
        if isinstance(data, Manifest)
        else Manifest.load(data, predictor.modalities, art.config.label)
    )
    ds = predictor.dataset(manifest, modalities, on_bad_row="skip", labelled=True)
    predictor.attach_features([ds], progress)
    bank = encode_bank(model, predictor.loader(ds), predictor.device, progress=progress)
    if bank.targets is None or not len(bank):
        raise PolyfuseError(
            f"{manifest.path}: no labelled row could be evaluated",
            hint="check the label column and run `polyfuse validate`",
        )
    t_encode = time.perf_counter() - t0
    target = bank.targets
    rows = [manifest.rows[i] for i in bank.indices]
    ids = [r.id for r in rows]
    full = fuse_bank(model, bank)
    probs = task.probabilities(full.logits)
    metrics = _detailed_metrics(task, probs, target, bootstrap, seed)

    names = list(model.modalities)
    coalition_logits = {
        c: (full.logits if len(c) == len(names) else fuse_bank(model, bank, c).logits)
        for c in shap.coalitions(names)
    }
    ablation = _ablation(task, model.modalities, coalition_logits, full, target)
    per_coalition = _values(task, coalition_logits, target)  # coalition -> name -> (N,)
    values = {
        name: {c: v[name] for c, v in per_coalition.items()}
        for name in per_coalition[frozenset(names)]
    }
    phis = {name: shap.shapley_values(v, names) for name, v in values.items()}
    contributions = _contributions(
        model, task, bank, full, target, values, phis, names, permutations, seed
    )
    t_core = time.perf_counter() - t0

    agree = fail = None
    if isinstance(task, MulticlassTask):
        uni_probs = {m: task.probabilities(full.unimodal[m]) for m in names}
        agree = agreement(uni_probs, full.present, task.labels, ids, target, confident)
        fail = failure_analysis(
            full.logits.argmax(1),
            target,
            {m: full.unimodal[m].argmax(1) for m in names},
            full.present,
            full.embedding,
            task.labels,
            ids,
            seed=seed,
        )
    t_agree = time.perf_counter() - t0

    sliced = _slices(task, rows, probs, target, phis, names, slices, gap_threshold)
    robust = None
    if robustness:
        robust = _robustness(predictor, manifest, bank, full, severities, target, seed, progress)
    maps: list[tuple[int, Saliency]] = []
    if saliency and fail is not None:
        maps = _saliency(model, ds, bank, full, fail, saliency)
    maps = _to_manifest_rows(bank, fail, agree, maps)
    info = {
        "artifact": str(getattr(art, "path", "") or ""),
        "data": str(manifest.path),
        "task": type(task).__name__,
        "modalities": names,
        "fed": list(ds.contracts),
        "fusion": type(model.fusion).__name__,
        "n": len(bank),
        "seconds": {
            "encode": round(t_encode, 3),
            "ablation_and_shapley": round(t_core - t_encode, 3),
            "agreement_and_failures": round(t_agree - t_core, 3),
            "total": round(time.perf_counter() - t0, 3),
        },
    }
    return Analysis(
        metrics=metrics,
        ablation=ablation,
        contributions=contributions,
        agreement=agree,
        failures=fail,
        slices=sliced,
        robustness=robust,
        info=info,
        bad_rows=ds.problem_rows(),
        saliency=maps,
        dataset=ds,
        bank=bank,
        fused=full,
        shapley=phis,
    )


def _to_manifest_rows(
    bank: FeatureBank,
    fail: dict[str, Any] | None,
    agree: dict[str, Any] | None,
    maps: list[tuple[int, Saliency]],
) -> list[tuple[int, Saliency]]:
    """Bank positions -> 1-based manifest rows (as in bad-row reports), in place."""
    line = [i + 1 for i in bank.indices]
    for rec in [*(fail["errors"] if fail else []), *(agree["contradictions"] if agree else [])]:
        rec["row"] = line[rec["row"]]
    for cluster in fail["clusters"] if fail else []:
        cluster["rows"] = [line[p] for p in cluster["rows"]]
    return [(line[pos], sal) for pos, sal in maps]


def _detailed_metrics(
    task: Task, probs: Tensor, target: Tensor, bootstrap: int, seed: int
) -> dict[str, Any]:
    metrics = task_metrics(task, probs, target)
    if isinstance(task, MulticlassTask):
        k = len(task.labels)
        onehot = torch.nn.functional.one_hot(target.long(), k)
        conf, pred = probs.max(1)
        metrics["roc_auc"] = roc_auc_ovr(probs, onehot, task.labels)
        metrics["calibration"] = calibration(conf, pred == target.long())
        metrics["confidence_intervals"] = bootstrap_ci(probs, target, k, bootstrap, seed=seed)
    elif isinstance(task, MultilabelTask):
        truth = target >= 0.5
        metrics["roc_auc"] = roc_auc_ovr(probs, truth, task.labels)
        pred = probs >= task.threshold
        conf = torch.where(pred, probs, 1 - probs)
        metrics["calibration"] = calibration(conf.flatten(), (pred == truth).flatten())
        metrics["confidence_intervals"] = bootstrap_ci_multilabel(
            probs, target, task.threshold, bootstrap, seed=seed
        )
    return metrics


def _values(
    task: Task, logits: dict[frozenset[str], Tensor], target: Tensor
) -> dict[frozenset[str], dict[str, Tensor]]:
    return {c: shap.value_functions(task, v, target) for c, v in logits.items()}


def _score(task: Task, logits: Tensor, target: Tensor) -> dict[str, Any]:
    return headline(task_metrics(task, task.probabilities(logits), target))


def _ablation(
    task: Task,
    modalities: Sequence[str],
    logits: dict[frozenset[str], Tensor],
    full: Fused,
    target: Tensor,
) -> dict[str, Any]:
    """Metrics per non-empty subset; curves by number removed; MultiBench robustness."""
    metric = _metric(task)
    subsets: dict[str, Any] = {}
    reference: dict[str, float] = {}
    for c, lg in logits.items():
        if not c:
            continue
        key = subset_key(c)
        subsets[key] = {"modalities": sorted(c), **_score(task, lg, target)}
        reference[key] = _late_reference(task, full, c, target, metric)
    m = len(modalities)
    curve, ref_curve = [], []
    for removed in range(m):
        keys = [subset_key(c) for c in logits if c and len(c) == m - removed]
        curve.append(sum(subsets[k][metric] for k in keys) / len(keys))
        ref_curve.append(sum(reference[k] for k in keys) / len(keys))
    return {
        "metric": metric,
        "subsets": subsets,
        "late_fusion_reference": reference,
        "curve": curve,
        "reference_curve": ref_curve,
        "relative_robustness": relative_robustness(curve),
        "effective_robustness": effective_robustness(curve, ref_curve),
    }


def _late_reference(
    task: Task, full: Fused, shown: frozenset[str], target: Tensor, metric: str
) -> float:
    """Metric of the mean of the unimodal heads' probabilities over the shown, present ones."""
    names = sorted(shown)
    if _is_regression(task):
        stacked = torch.stack([full.unimodal[m] for m in names])
    else:
        stacked = torch.stack([task.probabilities(full.unimodal[m]) for m in names])
    mask = torch.stack([full.present[m] for m in names]).float()
    mask = mask.view(*mask.shape, *([1] * (stacked.dim() - 2)))
    mean = (stacked * mask).sum(0) / mask.sum(0).clamp_min(1)
    if isinstance(task, MulticlassTask):
        logits = mean.clamp_min(1e-12).log()
    elif isinstance(task, MultilabelTask):
        p = mean.clamp(1e-6, 1 - 1e-6)
        logits = (p / (1 - p)).log()
    else:
        logits = mean
    return float(_score(task, logits, target)[metric])


def _is_regression(task: Task) -> bool:
    return not isinstance(task, MulticlassTask | MultilabelTask)


def _metric(task: Task) -> str:
    """Headline metric of curves and gaps (higher is better)."""
    return "neg_rmse" if _is_regression(task) else "accuracy"


def _contributions(
    model: Any,
    task: Task,
    bank: FeatureBank,
    full: Fused,
    target: Tensor,
    values: dict[str, dict[frozenset[str], Tensor]],
    phis: dict[str, Tensor],
    names: list[str],
    permutations: int,
    seed: int,
) -> dict[str, Any]:
    every = frozenset(names)
    out: dict[str, Any] = {"modalities": names, "value_functions": {}}
    for vf, phi in phis.items():
        gap = values[vf][every] - values[vf][frozenset()]
        err = (phi.sum(1) - gap).abs()
        entry: dict[str, Any] = {
            **shap.summarise(phi, names),
            "efficiency_max_error": float(err.max()) if len(err) else 0.0,
            "v_all": float(values[vf][every].mean()),
            "v_none": float(values[vf][frozenset()].mean()),
        }
        if isinstance(task, MulticlassTask):
            per_class = shap.summarise(phi, names, target.long())
            entry["per_class"] = {task.labels[int(k)]: v for k, v in per_class.items()}
        out["value_functions"][vf] = entry
    if full.weights is not None:
        every_present = torch.stack([full.present[m] for m in names], 1).all(1)
        w = full.weights[every_present]
        order = list(model.fusion.modalities)
        out["fusion_weights"] = {
            "kind": "attention mass" if model.fusion.uses_tokens else "weights",
            "mean": {m: float(w[:, order.index(m)].mean()) if len(w) else 0.0 for m in names},
            "n": int(every_present.sum()),
        }
    out["permutation_importance"] = _permutation(
        model, task, bank, full, target, names, permutations, seed
    )
    return out


def _permutation(
    model: Any,
    task: Task,
    bank: FeatureBank,
    full: Fused,
    target: Tensor,
    names: list[str],
    repeats: int,
    seed: int,
) -> dict[str, Any]:
    """Drop in the headline metric when one modality's features are shuffled across samples."""
    metric = _metric(task)
    base = float(_score(task, full.logits, target)[metric])
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {"metric": metric, "baseline": base, "repeats": repeats, "drop": {}}
    for m in names:
        drops = []
        have = bank.present[m].nonzero().flatten()
        for _ in range(repeats):
            perm = torch.arange(len(bank))
            perm[have] = have[torch.randperm(len(have), generator=gen)]
            lg = fuse_bank(model, bank, permute={m: perm}).logits
            drops.append(base - float(_score(task, lg, target)[metric]))
        mean = sum(drops) / max(1, len(drops))
        std = math.sqrt(sum((d - mean) ** 2 for d in drops) / max(1, len(drops) - 1))
        out["drop"][m] = {"mean": mean, "std": std}
    return out


def _slices(
    task: Task,
    rows: list[Row],
    probs: Tensor,
    target: Tensor,
    phis: dict[str, Tensor],
    names: list[str],
    columns: Sequence[str] | None,
    gap_threshold: float,
) -> dict[str, Any]:
    metadata = [r.metadata for r in rows]
    cols = list(columns) if columns is not None else slice_columns(metadata)
    unknown = [c for c in cols if not any(c in m for m in metadata)]
    if unknown:
        raise PolyfuseError(
            f"no row has the slice column(s) {unknown}",
            hint=f"metadata columns are {sorted({k for m in metadata for k in m})}",
        )
    metric = _metric(task)
    phi = phis.get("log_prob", next(iter(phis.values())))

    def compute(sel: Tensor) -> dict[str, Any]:
        res = headline(task_metrics(task, probs[sel], target[sel]))
        res["shapley"] = shap.summarise(phi[sel], names)["mean"]
        return res

    return slice_metrics(metadata, cols, compute, metric, gap_threshold)


def _robustness(
    predictor: Any,
    manifest: Manifest,
    bank: FeatureBank,
    clean: Fused,
    severities: Sequence[int],
    target: Tensor,
    seed: int,
    progress: bool,
) -> dict[str, Any]:
    """Accuracy under each corruption of each modality, re-encoding only that modality."""
    model, task = predictor.artifact.model, predictor.artifact.task
    metric = _metric(task)
    clean_score = float(_score(task, clean.logits, target)[metric])
    clean_ref = _late_reference(task, clean, frozenset(model.modalities), target, metric)
    jobs = [
        (m, name, s)
        for m in model.modalities
        if bool(bank.present[m].any())
        for name in corruptions_for(predictor.artifact.contracts[m].kind)
        for s in severities
    ]
    curves: dict[str, Any] = {}
    for m, name, s in bar(jobs, enabled=progress, desc="corruptions", leave=False):
        contract = predictor.artifact.contracts[m]
        ds = MultimodalDataset(
            manifest,
            {m: contract},
            None,
            on_bad_row="skip",
            require_label=False,
            allow_empty=True,
            transforms={m: Corruption(name, s, seed)},
        )
        sub = encode_bank(model, predictor.loader(ds), predictor.device)
        fused = fuse_bank(model, bank.replace(m, sub))
        entry = curves.setdefault(
            name,
            {"modality": m, "severities": [0], metric: [clean_score], "reference": [clean_ref]},
        )
        entry["severities"].append(s)
        entry[metric].append(float(_score(task, fused.logits, target)[metric]))
        entry["reference"].append(
            _late_reference(task, fused, frozenset(model.modalities), target, metric)
        )
    for entry in curves.values():
        entry["relative_robustness"] = relative_robustness(entry[metric])
        entry["effective_robustness"] = effective_robustness(entry[metric], entry["reference"])
    return {"metric": metric, "curves": curves}


def _saliency(
    model: Any,
    ds: MultimodalDataset,
    bank: FeatureBank,
    full: Fused,
    failures: dict[str, Any],
    count: int,
) -> list[tuple[int, Saliency]]:
    """IG maps (of the predicted class) of the first ``count`` errors, per float-input modality."""
    out: list[tuple[int, Saliency]] = []
    for err in failures["errors"][:count]:
        pos = err["row"]
        row = bank.indices[pos]
        for m in bank.modalities:
            if not bool(bank.present[m][pos]):
                continue
            x = ds.preprocessed(row, m)  # the raw input, even when features were cached
            if not x.is_floating_point():
                continue  # token ids (text) have no input gradient
            collated = ds.contracts[m].collate([x], torch.ones(1, dtype=torch.bool))
            predicted = int(full.logits[pos].argmax())  # what drove the wrong answer
            out.append(
                (pos, integrated_gradients(model, bank, pos, m, x, predicted, collated.lengths))
            )
    return out
