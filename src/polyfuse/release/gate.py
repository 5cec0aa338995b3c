"""The quality gate: may this artifact ship? Rules on measured values, one verdict each.

A rules file (``polyfuse gate ARTIFACT --data MANIFEST --rules gates.yaml``)::

    rules:
      - {metric: accuracy, min: 0.95}                        # any metric `evaluate --json` prints
      - {metric: accuracy, modalities: [audio], min: 0.40}   # the model fed only these modalities
      - {metric: macro_f1, slice: speaker, max_gap: 0.05}    # worst slice vs overall
      - {metric: accuracy, champion: non_inferior, margin: 0.02}
      - {metric: ece, max: 0.08}                             # calibration
      - {metric: accuracy, corruption: audio/noise, severity: 3, min: 0.7}
      - {metric: latency_p95_ms, max: 50}                    # one request at a time, in process

Every rule is measured on the same labelled manifest, the candidate encoded once
(`polyfuse.evaluation.analysis.build_context`) and every modality subset fused from the
stored features. Champion rules compare candidate and champion on the rows both evaluated
with a paired bootstrap (the same resamples for both): ``non_inferior`` passes when the
lower end of the 95% interval of (candidate - champion) is above ``-margin``;
``superior`` when it is above ``margin`` (default 0). Metrics where lower is better
(`LOWER_IS_BETTER`) are compared the other way round.

`run_gate` returns a `GateResult`; its ``to_dict`` is the JSON of ``polyfuse gate --json``:
``{"passed": bool, "rules": [{"rule", "value", "threshold", "passed", ...}], ...}``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from polyfuse.core.config import validate
from polyfuse.core.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

    from polyfuse.evaluation.analyses.base import AnalysisContext
    from polyfuse.evaluation.bank import FeatureBank

#: Metrics where a smaller value is better (gaps and champion comparisons flip).
LOWER_IS_BETTER = frozenset(
    {"log_loss", "ece", "mce", "rmse", "mae", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"}
)
#: Latency metrics, measured by sending manifest rows one at a time through `Predictor`.
LATENCY_METRICS = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
#: Metrics of the missing-modality ablation (MultiBench robustness of the subset curve).
ABLATION = ("relative_robustness", "effective_robustness")


class GateRule(BaseModel):
    """One rule of a rules file: a metric, where it is measured, and what it must satisfy.

    Exactly one check per rule: ``min`` and/or ``max``; ``max_gap`` with ``slice``; or
    ``champion`` (with ``margin``).
    """

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(description="a metric `evaluate --json` prints, ece/mce, latency_pNN_ms")
    name: str | None = Field(None, description="label of the rule in the verdict")
    modalities: list[str] | None = Field(None, description="feed only these modalities")
    slice: str | None = Field(
        None, description="metadata column (or the label column: per class): worst vs overall"
    )
    max_gap: float | None = Field(None, ge=0, description="largest allowed worst-slice gap")
    min_rows: int = Field(10, ge=1, description="slices smaller than this are not judged")
    corruption: str | None = Field(None, description="measure under this corruption")
    severity: int = Field(3, ge=1, le=5, description="corruption severity")
    champion: Literal["non_inferior", "superior"] | None = None
    margin: float = Field(0.0, ge=0, description="non-inferiority margin or superiority")
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_check(self) -> GateRule:
        bounds = self.min is not None or self.max is not None
        checks = [bounds, self.max_gap is not None, self.champion is not None]
        if sum(checks) != 1:
            raise ValueError("give exactly one check: min/max, max_gap (with slice), or champion")
        if (self.max_gap is None) != (self.slice is None):
            raise ValueError("max_gap and slice go together")
        if self.metric in LATENCY_METRICS and (self.modalities or self.corruption or self.slice):
            raise ValueError(
                "latency is measured on whole requests: no modalities/slice/corruption"
            )
        return self

    @property
    def label(self) -> str:
        """How the rule reads in verdicts: ``accuracy[audio] >= 0.4``."""
        if self.name:
            return self.name
        where = self.metric
        if self.modalities:
            where += f"[{'+'.join(sorted(self.modalities))}]"
        if self.corruption:
            where += f" under {self.corruption}@{self.severity}"
        if self.slice is not None:
            return f"{where} worst {self.slice} gap <= {self.max_gap}"
        if self.champion is not None:
            rel = "-" if self.champion == "non_inferior" else "+"
            return (
                f"{where} {self.champion.replace('_', '-')} to champion (margin {rel}{self.margin})"
            )
        parts = [
            f">= {self.min}" if self.min is not None else "",
            f"<= {self.max}" if self.max is not None else "",
        ]
        return f"{where} {' and '.join(p for p in parts if p)}"


class GateFile(BaseModel):
    """A rules file (``polyfuse schema gate``)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    rules: list[GateRule] = Field(min_length=1)
    bootstrap: int = Field(1000, ge=100, description="resamples of intervals and comparisons")
    seed: int = 0
    latency_requests: int = Field(50, ge=5, description="requests timed for latency rules")

    @classmethod
    def load(cls, path: str | Path) -> GateFile:
        """Read and validate a YAML (or JSON) rules file; raises `ConfigError`."""
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(str(path), "rules file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(str(path), f"not valid YAML: {exc}") from exc
        return validate(cls, data or {}, "rules")


@dataclass
class Verdict:
    """One rule's outcome: the measured value, the threshold it was held to, pass or fail."""

    rule: str
    metric: str
    value: float | None
    threshold: float | None
    passed: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: ``{"rule", "metric", "value", "threshold", "passed", ...detail}``."""
        return {
            "rule": self.rule,
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "passed": self.passed,
            **self.detail,
        }


@dataclass
class GateResult:
    """All verdicts of one gate run."""

    verdicts: list[Verdict]
    artifact: str
    data: str
    champion: str | None
    n: int
    seconds: float

    @property
    def passed(self) -> bool:
        """Every rule passed."""
        return all(v.passed for v in self.verdicts)

    @property
    def failed(self) -> list[Verdict]:
        """The rules that failed."""
        return [v for v in self.verdicts if not v.passed]

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``polyfuse gate --json``."""
        return {
            "passed": self.passed,
            "rules": [v.to_dict() for v in self.verdicts],
            "artifact": self.artifact,
            "champion": self.champion,
            "data": self.data,
            "n": self.n,
            "seconds": round(self.seconds, 3),
        }


class _Measured:
    """An artifact encoded once over the manifest, with its metrics computed on demand."""

    def __init__(self, context: AnalysisContext, requests: int) -> None:
        self.context = context
        self.requests = requests
        self._metrics: dict[tuple[frozenset[str], str | None, int], dict[str, Any]] = {}
        self._banks: dict[tuple[str, int], FeatureBank] = {}

    @property
    def names(self) -> list[str]:
        return self.context.names

    def subset(self, modalities: Sequence[str] | None) -> frozenset[str]:
        """The coalition of a rule (every modality when none named)."""
        every = frozenset(self.names)
        if not modalities:
            return every
        chosen = frozenset(modalities)
        unknown = sorted(chosen - every)
        if unknown:
            raise ConfigError(
                "rules.modalities",
                f"the model has no modality {unknown}",
                hint=f"its modalities are {sorted(every)}",
            )
        return chosen

    def probs(self, coalition: frozenset[str], corruption: str | None, severity: int) -> Tensor:
        """Probabilities with only ``coalition`` fed, optionally one modality corrupted."""
        from polyfuse.evaluation.analyses.groups import corrupted_bank
        from polyfuse.evaluation.bank import fuse_bank

        ctx = self.context
        if corruption is None:
            return ctx.task.probabilities(ctx.coalition_logits[coalition])
        key = (corruption, severity)
        if key not in self._banks:
            modality = self._corrupted_modality(corruption)
            self._banks[key] = corrupted_bank(ctx, modality, corruption, severity)
        return ctx.task.probabilities(fuse_bank(ctx.model, self._banks[key], coalition).logits)

    def _corrupted_modality(self, corruption: str) -> str:
        from polyfuse.evaluation.corruptions import corruptions_for

        contracts = self.context.predictor.artifact.contracts
        for m in self.names:
            if corruption in corruptions_for(contracts[m].kind):
                return m
        known = sorted({c for m in self.names for c in corruptions_for(contracts[m].kind)})
        raise ConfigError(
            "rules.corruption",
            f"'{corruption}' applies to none of the model's modalities",
            hint=f"corruptions for this model: {', '.join(known)}",
        )

    def metrics(
        self, coalition: frozenset[str], corruption: str | None = None, severity: int = 3
    ) -> dict[str, Any]:
        """Flat metric name -> value of one coalition (and corruption)."""
        key = (coalition, corruption, severity)
        if key not in self._metrics:
            self._metrics[key] = flat_metrics(
                self.context.task, self.probs(coalition, corruption, severity), self.context.target
            )
        return self._metrics[key]

    @cached_property
    def ablation(self) -> dict[str, Any]:
        from polyfuse.evaluation.analyses import Ablation

        return Ablation(bootstrap=0).calculate(self.context).to_dict()

    @cached_property
    def latency(self) -> dict[str, float]:
        """p50/p95/p99 milliseconds of single requests (load, preprocess, encode, fuse)."""
        return measure_latency(self.context, self.requests)


def flat_metrics(task: Any, probs: Tensor, target: Tensor) -> dict[str, Any]:
    """Every scalar `evaluate --json` prints, plus ``ece``, ``mce`` and ``roc_auc``."""
    from polyfuse.evaluation.metrics import classification_extras, headline, task_metrics

    out = headline(task_metrics(task, probs, target))
    extras = classification_extras(task, probs, target)
    if extras:
        out["roc_auc"] = extras["roc_auc"]["macro"]
        out["ece"] = extras["calibration"]["ece"]
        out["mce"] = extras["calibration"]["mce"]
    return out


def measure_latency(context: AnalysisContext, requests: int, warmup: int = 3) -> dict[str, float]:
    """Send manifest rows one at a time through the predictor; percentiles in milliseconds."""
    import statistics

    predictor, rows = context.predictor, context.rows
    base = context.manifest.path.parent
    times: list[float] = []
    for i in range(warmup + requests):
        row = rows[i % len(rows)]
        start = time.perf_counter()
        predictor.predict(dict(row.values), base_dir=base)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    cuts = statistics.quantiles(times, n=100, method="inclusive")
    return {
        "latency_p50_ms": statistics.median(times),
        "latency_p95_ms": cuts[94],
        "latency_p99_ms": cuts[98],
    }


def _value(measured: _Measured, rule: GateRule) -> tuple[float, dict[str, Any]]:
    """The metric a bounds rule judges, with what else is worth reporting."""
    if rule.metric in LATENCY_METRICS:
        lat = measured.latency
        return lat[rule.metric], {"requests": measured.requests, **lat}
    if rule.metric in ABLATION:
        return float(measured.ablation[rule.metric]), {}
    coalition = measured.subset(rule.modalities)
    values = measured.metrics(coalition, rule.corruption, rule.severity)
    return _pick(values, rule.metric), {}


def _pick(values: Mapping[str, Any], metric: str) -> float:
    if metric not in values:
        raise ConfigError(
            "rules.metric",
            f"'{metric}' is not measured for this model",
            hint=f"choose one of {', '.join(sorted([*values, *LATENCY_METRICS, *ABLATION]))}",
        )
    return float(values[metric])


def _slice_gap(measured: _Measured, rule: GateRule) -> tuple[float, dict[str, Any]]:
    """Worst slice's distance from overall (positive: the slice is worse)."""
    import torch

    ctx = measured.context
    column = str(rule.slice)
    if column == ctx.manifest.label_key:  # slicing on the label: each class is a slice
        values = [str(r.label) if not isinstance(r.label, list) else None for r in ctx.rows]
    else:
        values = [r.metadata.get(column) for r in ctx.rows]
    if all(v is None for v in values):
        raise ConfigError(
            "rules.slice",
            f"no evaluated row has the metadata column '{column}'",
            hint=f"columns: {sorted({k for r in ctx.rows for k in r.metadata})}",
        )
    coalition = measured.subset(rule.modalities)
    probs = measured.probs(coalition, rule.corruption, rule.severity)
    overall = _pick(flat_metrics(ctx.task, probs, ctx.target), rule.metric)
    lower = rule.metric in LOWER_IS_BETTER
    slices: dict[str, float] = {}
    small: list[str] = []
    for v in sorted({str(v) for v in values if v is not None}):
        sel = torch.tensor([str(x) == v if x is not None else False for x in values])
        if int(sel.sum()) < rule.min_rows:
            small.append(v)
            continue
        slices[v] = _pick(flat_metrics(ctx.task, probs[sel], ctx.target[sel]), rule.metric)
    if not slices:
        raise ConfigError(
            "rules.min_rows",
            f"no slice of '{column}' has {rule.min_rows} rows",
            hint="lower min_rows or gate on more data",
        )
    worst = (max if lower else min)(slices, key=lambda k: slices[k])
    gap = (slices[worst] - overall) if lower else (overall - slices[worst])
    return gap, {
        "overall": overall,
        "worst": worst,
        "worst_value": slices[worst],
        "slices": slices,
        "too_small": small,
    }


def _versus(
    cand: _Measured, champ: _Measured, rule: GateRule, samples: int, seed: int
) -> tuple[float, dict[str, Any]]:
    """Paired bootstrap of (candidate - champion) on the rows both evaluated."""
    import torch

    from polyfuse.evaluation.metrics import (
        RESAMPLED_METRICS,
        interval,
        resample_weights,
        resampled,
    )

    a_rows = {int(i): k for k, i in enumerate(cand.context.bank.indices)}
    b_rows = {int(i): k for k, i in enumerate(champ.context.bank.indices)}
    common = sorted(a_rows.keys() & b_rows.keys())
    if not common:
        raise ConfigError("rules.champion", "candidate and champion evaluated no row in common")
    ia = torch.tensor([a_rows[r] for r in common])
    ib = torch.tensor([b_rows[r] for r in common])
    pa = cand.probs(cand.subset(rule.modalities), rule.corruption, rule.severity)[ia]
    pb = champ.probs(champ.subset(rule.modalities), rule.corruption, rule.severity)[ib]
    ta, tb = cand.context.target[ia], champ.context.target[ib]
    weights = resample_weights(len(common), samples, seed)
    metric = rule.metric
    if metric in RESAMPLED_METRICS:
        ra = resampled(cand.context.task, pa, ta, weights).get(metric)
        rb = resampled(champ.context.task, pb, tb, weights).get(metric)
        if ra is None or rb is None:
            raise ConfigError("rules.metric", f"'{metric}' does not apply to this task")
    else:  # any other metric: the same resamples, row indices drawn from the weights
        ra_list, rb_list = [], []
        for w in weights:
            idx = torch.repeat_interleave(torch.arange(len(common)), w.long())
            ra_list.append(_pick(flat_metrics(cand.context.task, pa[idx], ta[idx]), metric))
            rb_list.append(_pick(flat_metrics(champ.context.task, pb[idx], tb[idx]), metric))
        ra = torch.tensor(ra_list, dtype=torch.float64)
        rb = torch.tensor(rb_list, dtype=torch.float64)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    diff = sign * (ra - rb)  # positive: the candidate is better
    ci = interval(diff)
    a_point = _pick(flat_metrics(cand.context.task, pa, ta), metric)
    b_point = _pick(flat_metrics(champ.context.task, pb, tb), metric)
    return ci["low"], {
        "candidate": a_point,
        "champion": b_point,
        "difference": sign * (a_point - b_point),
        "interval": ci,
        "rows": len(common),
        "resamples": samples,
    }


def _judge(rule: GateRule, cand: _Measured, champ: _Measured | None, spec: GateFile) -> Verdict:
    """Measure one rule and hold it to its threshold."""
    if rule.champion is not None:
        assert champ is not None  # run_gate refuses champion rules without a champion
        value, detail = _versus(cand, champ, rule, spec.bootstrap, spec.seed)
        threshold = -rule.margin if rule.champion == "non_inferior" else rule.margin
        passed = value > threshold if rule.champion == "superior" else value >= threshold
        return Verdict(rule.label, rule.metric, value, threshold, passed, detail)
    if rule.slice is not None:
        value, detail = _slice_gap(cand, rule)
        threshold = float(rule.max_gap or 0.0)
        return Verdict(rule.label, rule.metric, value, threshold, value <= threshold, detail)
    value, detail = _value(cand, rule)
    passed = (rule.min is None or value >= rule.min) and (rule.max is None or value <= rule.max)
    if rule.min is not None and rule.max is not None:
        detail["range"] = [rule.min, rule.max]
    bound = rule.min if rule.min is not None else rule.max
    return Verdict(rule.label, rule.metric, value, bound, passed, detail)


def run_gate(
    artifact: Any,
    data: str | Path,
    rules: GateFile | str | Path,
    *,
    champion: Any = None,
    device: str = "auto",
    progress: bool = False,
) -> GateResult:
    """Measure every rule on ``data`` and judge it.

    Args:
        artifact: the candidate (folder, `Artifact` or `Predictor`).
        data: labelled manifest.
        rules: a `GateFile` or the path of a rules file.
        champion: the current champion, needed by ``champion:`` rules.
        device: where to run.
        progress: progress bars while encoding.

    Raises:
        ConfigError: a rule names a metric, modality, column or corruption the model lacks,
            or a champion rule without a champion.
    """
    from polyfuse.evaluation.analysis import build_context

    spec = rules if isinstance(rules, GateFile) else GateFile.load(rules)
    needs_champion = [r.label for r in spec.rules if r.champion is not None]
    if needs_champion and champion is None:
        raise ConfigError(
            "--champion",
            f"rules {needs_champion} compare with a champion but none was given",
            hint="pass --champion ARTIFACT (the model in production)",
        )
    start = time.perf_counter()
    cand = _Measured(
        build_context(artifact, data, progress=progress, device=device, seed=spec.seed),
        spec.latency_requests,
    )
    champ = None
    if champion is not None and needs_champion:
        champ = _Measured(
            build_context(champion, data, progress=progress, device=device, seed=spec.seed),
            spec.latency_requests,
        )
    verdicts = [_judge(rule, cand, champ, spec) for rule in spec.rules]
    art_path = getattr(cand.context.predictor.artifact, "path", None)
    champ_path = getattr(champ.context.predictor.artifact, "path", None) if champ else None
    return GateResult(
        verdicts,
        str(art_path or artifact),
        str(data),
        None if champion is None else str(champ_path or champion),
        len(cand.context.bank),
        time.perf_counter() - start,
    )
