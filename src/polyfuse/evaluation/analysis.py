"""Full evaluation of an artifact: metrics, ablation, contributions, agreement, failures,
slices, corruption robustness and saliency, all from one encoder pass.

`analyze` is the Python API behind ``polyfuse evaluate ARTIFACT --data M --out DIR``: it
encodes the data once into a `FeatureBank`, builds the shared `AnalysisContext` and runs
each analysis of `polyfuse.evaluation.analyses` (a small config + ``calculate``) over it.
`Analysis.to_dict` is what ``metrics.json`` and ``--json`` hold, and
`polyfuse.evaluation.report.html.write_report` renders it as HTML.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from polyfuse.core.errors import ConfigError, PolyfuseError
from polyfuse.data.dataset import BadRow, MultimodalDataset
from polyfuse.data.manifest import Manifest
from polyfuse.evaluation.analyses import (
    Ablation,
    AblationResult,
    Agreement,
    AgreementResult,
    AnalysisContext,
    AnalysisSpec,
    Contributions,
    ContributionsResult,
    Failures,
    FailuresResult,
    Metrics,
    Robustness,
    RobustnessResult,
    Saliency,
    SaliencyResult,
    Slices,
    SlicesResult,
    Sync,
    SyncResult,
)
from polyfuse.evaluation.bank import FeatureBank, Fused, encode_bank, fuse_bank
from polyfuse.evaluation.metrics import headline
from polyfuse.evaluation.saliency import Saliency as SaliencyMap

if TYPE_CHECKING:
    from polyfuse.artifacts.classifier import Artifact
    from polyfuse.inference.predict import Predictor

#: What ``polyfuse evaluate --out`` runs without extra flags.
DEFAULT_ANALYSES: tuple[AnalysisSpec, ...] = (
    Metrics(),
    Ablation(),
    Contributions(),
    Agreement(),
    Failures(),
    Slices(),
    Sync(),
)


@dataclass
class Analysis:
    """Everything `analyze` found. ``to_dict`` is the JSON form (``metrics.json``).

    Attributes:
        metrics: task metrics plus ``roc_auc``, ``calibration`` and ``confidence_intervals``.
        ablation: per modality subset metrics, curves and robustness scores.
        contributions: Shapley values (overall, per class), efficiency error, the
            fusion's own weights and permutation importance.
        agreement: kappa, cross-modality confusion, contradictions (multi-class only).
        failures: categorised and clustered errors (multi-class only).
        slices: metrics and worst-slice gaps per metadata column.
        robustness: metric curves under corruption (when requested).
        sync: each video's sound/picture offset and the metrics in and out of sync (models
            with a video modality).
        info: artifact, data, modalities, sizes and timings.
        bad_rows: rows that could not be evaluated.
        saliency: (manifest row, Integrated Gradients map) of a few errors (not in JSON).
        dataset, bank, fused, shapley: raw material for the report (not in JSON).
    """

    metrics: dict[str, Any]
    ablation: AblationResult | None
    contributions: ContributionsResult | None
    agreement: AgreementResult | None
    failures: FailuresResult | None
    slices: SlicesResult | None
    robustness: RobustnessResult | None
    info: dict[str, Any]
    sync: SyncResult | None = None
    bad_rows: list[BadRow] = field(default_factory=list)
    saliency: list[tuple[int, SaliencyMap]] = field(default_factory=list)
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

        def part(r: Any) -> Any:
            return None if r is None else r.to_dict()

        return {
            **headline(self.metrics),
            "metrics": self.metrics,
            "ablation": part(self.ablation),
            "contributions": part(self.contributions),
            "agreement": part(self.agreement),
            "failures": part(self.failures),
            "slices": part(self.slices),
            "robustness": part(self.robustness),
            **({} if self.sync is None else {"sync": self.sync.to_dict()}),
            "info": self.info,
            "bad_rows": [b.to_dict() for b in self.bad_rows],
        }


def analyses_for(
    *,
    slices: Sequence[str] | None = None,
    robustness: bool = False,
    severities: Sequence[int] | None = None,
    saliency: int = 0,
    bootstrap: int = 1000,
    permutations: int = 5,
    confident: float = 0.8,
    gap: float = 0.05,
    sync_model: str | None = None,
) -> list[AnalysisSpec]:
    """The analysis list of the ``polyfuse evaluate`` flags (defaults: `DEFAULT_ANALYSES`)."""
    out: list[AnalysisSpec] = [
        Metrics(bootstrap=bootstrap),
        Ablation(bootstrap=bootstrap),
        Contributions(permutations=permutations),
        Agreement(confident=confident),
        Failures(),
        Slices(columns=None if slices is None else tuple(slices), gap=gap),
        Sync(model=sync_model),
    ]
    if robustness:
        out.append(Robustness() if severities is None else Robustness(tuple(severities)))
    if saliency:
        out.append(Saliency(count=saliency))
    return out


def analyze(
    artifact: str | Path | Artifact | Predictor,
    data: str | Path | Manifest,
    analyses: Sequence[AnalysisSpec] | None = None,
    *,
    modalities: Sequence[str] | None = None,
    progress: bool = True,
    device: str = "auto",
    seed: int = 0,
) -> Analysis:
    """Evaluate an artifact on a labelled manifest and analyse what each modality does.

    Encoders run once over the data; every analysis fuses the stored features again
    (see `FeatureBank`). Corruption curves re-encode only the corrupted modality.

    Args:
        artifact: artifact folder, `Artifact` or `Predictor`.
        data: labelled manifest.
        analyses: what to compute (default `DEFAULT_ANALYSES`; `analyses_for` builds the
            list of the CLI flags). Metrics are always computed (`Metrics()` unless given).
        modalities: feed only these (the rest count as missing).
        progress: progress bars.
        device: where to run.
        seed: seed of bootstrap, permutations, corruptions and clustering.
    """
    specs = list(DEFAULT_ANALYSES if analyses is None else analyses)
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(
            "analyses",
            f"{repeated} given more than once",
            hint="pass each analysis once, with the parameters you want",
        )
    if "metrics" not in names:
        specs.insert(0, Metrics())
    t0 = time.perf_counter()
    context = build_context(artifact, data, modalities, progress, device, seed)
    t_encode = time.perf_counter() - t0
    seconds = {"encode": round(t_encode, 3)}
    results: dict[str, Any] = {}
    for spec in specs:
        start = time.perf_counter()
        results[spec.name] = spec.calculate(context)
        seconds[spec.name] = round(time.perf_counter() - start, 3)
    seconds["total"] = round(time.perf_counter() - t0, 3)
    return _assemble(context, results, modalities, seconds)


def build_context(
    artifact: str | Path | Artifact | Predictor,
    data: str | Path | Manifest,
    modalities: Sequence[str] | None = None,
    progress: bool = False,
    device: str = "auto",
    seed: int = 0,
) -> AnalysisContext:
    """Load, encode once, fuse with every modality: what every analysis shares."""
    from polyfuse.inference.predict import Predictor

    predictor = Predictor.of(artifact, device)
    art = predictor.artifact
    manifest = (
        data
        if isinstance(data, Manifest)
        else Manifest.load(data, predictor.modalities, art.config.label)
    )
    ds = predictor.dataset(manifest, modalities, on_bad_row="skip", labelled=True)
    predictor.attach_features([ds], progress)
    bank = encode_bank(art.model, predictor.loader(ds), predictor.device, progress=progress)
    if bank.targets is None or not len(bank):
        raise PolyfuseError(
            f"{manifest.path}: no labelled row could be evaluated",
            hint="check the label column and run `polyfuse validate`",
        )
    rows = [manifest.rows[i] for i in bank.indices]
    full = fuse_bank(art.model, bank)
    return AnalysisContext(predictor, manifest, ds, bank, full, bank.targets, rows, seed, progress)


def _assemble(
    context: AnalysisContext,
    results: dict[str, Any],
    modalities: Sequence[str] | None,
    seconds: dict[str, float],
) -> Analysis:
    """The typed `Analysis`, rows renumbered from bank positions to manifest rows."""
    saliency: SaliencyResult | None = results.get("saliency")
    maps = _to_manifest_rows(
        context.bank, results.get("failures"), results.get("agreement"), saliency
    )
    art, model = context.predictor.artifact, context.model
    info = {
        "artifact": str(getattr(art, "path", "") or ""),
        "data": str(context.manifest.path),
        "task": type(context.task).__name__,
        "modalities": context.names,
        "fed": list(context.dataset.contracts),
        "fusion": type(model.fusion).__name__,
        "n": len(context.bank),
        "seconds": seconds,
    }
    return Analysis(
        metrics=results["metrics"],
        ablation=results.get("ablation"),
        contributions=results.get("contributions"),
        agreement=results.get("agreement"),
        failures=results.get("failures"),
        slices=results.get("slices"),
        robustness=results.get("robustness"),
        info=info,
        sync=results.get("sync"),
        bad_rows=context.dataset.problem_rows(),
        saliency=maps,
        dataset=context.dataset,
        bank=context.bank,
        fused=context.full,
        shapley=context.shapley if {"contributions", "slices"} & results.keys() else {},
    )


def _to_manifest_rows(
    bank: FeatureBank,
    fail: FailuresResult | None,
    agree: AgreementResult | None,
    saliency: SaliencyResult | None,
) -> list[tuple[int, SaliencyMap]]:
    """Bank positions -> 1-based manifest rows (as in bad-row reports), in place."""
    line = [i + 1 for i in bank.indices]
    for rec in [*(fail.errors if fail else []), *(agree.contradictions if agree else [])]:
        rec["row"] = line[rec["row"]]
    for cluster in fail.clusters if fail else []:
        cluster["rows"] = [line[p] for p in cluster["rows"]]
    return [(line[pos], sal) for pos, sal in (saliency.maps if saliency else [])]
