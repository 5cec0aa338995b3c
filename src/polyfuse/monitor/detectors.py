"""Drift detectors: each a small config with ``calculate(reference, current)``.

The shape is the evaluation layer's: a frozen dataclass holding only its own parameters
and a ``calculate`` returning typed results, one `DetectorResult` per modality it covers
(``prediction`` for the detectors that watch the fused output). Every result says which
modality and which statistic moved.

- `InputStatistics`: two-sample Kolmogorov-Smirnov test per input statistic, Holm-corrected
  within the modality.
- `EmbeddingMMD`: maximum mean discrepancy between the reference's and the current
  adapted embeddings (whitened PCA, Gaussian kernel with the median-distance bandwidth);
  the p-value comes from permutations, with a gamma fitted to them for the tail.
- `OutputShift`: black-box shift detection (Rabanser et al., "Failing Loudly", NeurIPS
  2019): KS tests on each class's softmax output (each label's sigmoid output),
  Bonferroni-corrected, on every unimodal head and on the fusion.
- `DomainClassifier`: a logistic classifier told to separate reference from current on
  statistics + embeddings; out-of-fold AUC, a Mann-Whitney p-value, and the most atypical
  current samples by name.
- `MissingRate`, `AgreementRate`: Fisher's exact test on the share of samples without a
  modality, and of samples whose unimodal heads all agree with the fusion.
- `LabelShift`: chi-squared test on the predicted-class histogram (black-box shift
  estimation's test), with the class-prior ratio estimated from the reference confusion
  matrix when the reference is labelled; for a multi-label model, Fisher's exact test per
  label on how often it is answered, and each label's estimated current share.

Multi-label models read their sigmoid outputs through `polyfuse.monitor.outputs.Outputs`:
black-box shift detection tests each label's probability, agreement means the same label
set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from polyfuse.evaluation.analyses.base import Result
from polyfuse.monitor.observe import ModalityView, Observations

if TYPE_CHECKING:
    from polyfuse.monitor.profile import ReferenceProfile

FloatArray = NDArray[np.float64]

#: The key results use for detectors that watch the fused output.
PREDICTION = "prediction"


@dataclass(frozen=True)
class StatisticShift(Result):
    """One statistic's test: medians before and after, and its (corrected) p-value."""

    name: str
    p_value: float
    statistic: float
    reference: float
    current: float


@dataclass(frozen=True)
class DetectorResult(Result):
    """One detector on one modality (or ``prediction``).

    Attributes:
        detector: detector name (``input_statistics``, ``embedding_mmd`` ...).
        modality: the modality it watched, or ``prediction``.
        p_value: p-value under "no change" (already corrected within the detector).
        score: effect size (KS distance, MMD, AUC - 0.5, rate change ...).
        statistics: per-statistic tests, largest change first (when the detector has them).
        atypical: ids of the most atypical current samples (domain classifier).
        n_reference: reference samples used; n_current: current samples used.
    """

    detector: str
    modality: str
    p_value: float
    score: float
    n_reference: int
    n_current: int
    statistics: list[StatisticShift] | None = None
    atypical: list[str] | None = None
    extra: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (statistics as dicts)."""
        out = super().to_dict()
        if self.statistics is not None:
            out["statistics"] = [s.to_dict() for s in self.statistics]
        return out


def holm(p_values: FloatArray) -> FloatArray:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p
    order = np.argsort(p)
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (p.size - np.arange(p.size))))
    out = np.empty_like(adj)
    out[order] = adj
    return out


def ks(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov distance and p-value (exact when scipy can, else
    asymptotic, without scipy's warning about switching)."""
    import warnings

    from scipy.stats import ks_2samp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        test = ks_2samp(a, b)
    return float(test.statistic), float(test.pvalue)


def _present(view: ModalityView) -> NDArray[np.intp]:
    return np.flatnonzero(view.present)


def _subsample(n: int, cap: int, seed: int) -> NDArray[np.intp]:
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


@dataclass(frozen=True)
class InputStatistics:
    """KS test per input statistic of each modality, Holm-corrected within the modality."""

    name: str = "input_statistics"

    def calculate(self, reference: ReferenceProfile, current: Observations) -> list[DetectorResult]:
        """One result per modality with statistics."""
        results = []
        for m, ref_view in reference.observations.modalities.items():
            cur_view = current.modalities[m]
            ref = ref_view.statistics[_present(ref_view)]
            cur = cur_view.statistics[_present(cur_view)]
            if not ref_view.names or len(ref) < 2 or len(cur) < 2:
                continue
            raw, dist, meds = [], [], []
            for j in range(len(ref_view.names)):
                a, b = ref[:, j], cur[:, j]
                a, b = a[np.isfinite(a)], b[np.isfinite(b)]
                if len(a) < 2 or len(b) < 2:
                    raw.append(1.0)
                    dist.append(0.0)
                    meds.append((float("nan"), float("nan")))
                    continue
                distance, p = ks(a, b)
                raw.append(p)
                dist.append(distance)
                meds.append((float(np.median(a)), float(np.median(b))))
            adjusted = holm(np.array(raw))
            stats = [
                StatisticShift(name, float(p), d, r, c)
                for name, p, d, (r, c) in zip(ref_view.names, adjusted, dist, meds, strict=True)
            ]
            stats.sort(key=lambda s: (s.p_value, -s.statistic))
            results.append(
                DetectorResult(
                    self.name,
                    m,
                    float(adjusted.min()),
                    float(max(dist)),
                    len(ref),
                    len(cur),
                    statistics=stats,
                )
            )
        return results


def mmd_test(
    x: FloatArray, y: FloatArray, permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Biased MMD² between ``x`` and ``y`` with a Gaussian kernel, and its p-value.

    The bandwidth is the median pairwise squared distance of the pooled sample. The
    p-value is the permutation distribution's tail, with a gamma fitted to it by moments
    (so it stays informative below ``1 / permutations``).
    """
    from scipy.stats import gamma

    z = np.vstack([x, y])
    sq = (z**2).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    off = d2[np.triu_indices(len(z), k=1)]
    bandwidth = float(np.median(off)) if off.size else 1.0
    k = np.exp(-d2 / max(bandwidth, 1e-12))
    n, m = len(x), len(y)
    v = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    stat = float(v @ k @ v)
    perms = np.stack([rng.permutation(v) for _ in range(permutations)], axis=1)
    null = (perms * (k @ perms)).sum(axis=0)
    empirical = (1.0 + float((null >= stat).sum())) / (1.0 + permutations)
    mean, var = float(null.mean()), float(null.var())
    if mean > 0 and var > 0:
        tail = float(gamma.sf(stat, a=mean**2 / var, scale=var / mean))
        # trust the fit in the far tail only, where permutations cannot resolve
        p = tail if empirical <= 5.0 / (1.0 + permutations) else empirical
    else:
        p = empirical
    return stat, float(p)


@dataclass(frozen=True)
class EmbeddingMMD:
    """MMD on each modality's adapted embeddings (whitened PCA of the reference)."""

    permutations: int = 200
    max_reference: int = 500
    seed: int = 0
    name: str = "embedding_mmd"

    def calculate(self, reference: ReferenceProfile, current: Observations) -> list[DetectorResult]:
        """One result per modality."""
        rng = np.random.default_rng(self.seed)
        results = []
        for m, ref_view in reference.observations.modalities.items():
            cur_view = current.modalities[m]
            ri, ci = _present(ref_view), _present(cur_view)
            if len(ri) < 2 or len(ci) < 2:
                continue
            ri = ri[_subsample(len(ri), self.max_reference, self.seed)]
            ref, cur = sketch(reference, m, ref_view, ri), sketch(reference, m, cur_view, ci)
            stat, p = mmd_test(ref, cur, self.permutations, rng)
            results.append(DetectorResult(self.name, m, p, stat, len(ref), len(cur)))
        return results


def _bbsd(
    detector: str, modality: str, ref: FloatArray, cur: FloatArray, classes: tuple[str, ...]
) -> DetectorResult | None:
    if len(ref) < 2 or len(cur) < 2:
        return None
    tests = [ks(ref[:, j], cur[:, j]) for j in range(ref.shape[1])]
    raw = np.array([p for _, p in tests])
    adjusted = np.minimum(1.0, raw * len(raw))
    stats = [
        StatisticShift(
            f"p({c})",
            float(p),
            t[0],
            float(ref[:, j].mean()),
            float(cur[:, j].mean()),
        )
        for j, (c, p, t) in enumerate(zip(classes, adjusted, tests, strict=True))
    ]
    stats.sort(key=lambda s: (s.p_value, -s.statistic))
    return DetectorResult(
        detector,
        modality,
        float(adjusted.min()),
        float(max(t[0] for t in tests)),
        len(ref),
        len(cur),
        statistics=stats[:5],
    )


@dataclass(frozen=True)
class OutputShift:
    """Black-box shift detection on every unimodal head's and the fusion's softmax."""

    name: str = "output_shift"

    def calculate(self, reference: ReferenceProfile, current: Observations) -> list[DetectorResult]:
        """One result per modality (its own head) plus ``prediction`` (the fusion)."""
        ref_obs = reference.observations
        results = []
        for m, ref_view in ref_obs.modalities.items():
            cur_view = current.modalities[m]
            r = _bbsd(
                self.name,
                m,
                ref_view.probs[_present(ref_view)],
                cur_view.probs[_present(cur_view)],
                ref_obs.classes,
            )
            if r is not None:
                results.append(r)
        fused = _bbsd(self.name, PREDICTION, ref_obs.probs, current.probs, ref_obs.classes)
        if fused is not None:
            results.append(fused)
        return results


@dataclass(frozen=True)
class DomainClassifier:
    """Separate reference from current per modality; out-of-fold AUC names atypical samples."""

    folds: int = 5
    top: int = 5
    max_reference: int = 1000
    seed: int = 0
    name: str = "domain_classifier"

    def calculate(self, reference: ReferenceProfile, current: Observations) -> list[DetectorResult]:
        """One result per modality."""
        from scipy.stats import mannwhitneyu

        from polyfuse.monitor.estimate import fit_logistic, sigmoid

        results = []
        for m, ref_view in reference.observations.modalities.items():
            cur_view = current.modalities[m]
            ri, ci = _present(ref_view), _present(cur_view)
            ri = ri[_subsample(len(ri), self.max_reference, self.seed)]
            if len(ri) < self.folds or len(ci) < self.folds:
                continue
            x = np.vstack(
                [
                    _domain_features(reference, m, ref_view, ri),
                    _domain_features(reference, m, cur_view, ci),
                ]
            )
            mu = np.nanmean(x[: len(ri)], axis=0)
            sd = np.nanstd(x[: len(ri)], axis=0)
            x = np.nan_to_num((x - mu) / np.where(sd > 1e-9, sd, 1.0), nan=0.0)
            x = np.hstack([np.ones((len(x), 1)), np.clip(x, -20.0, 20.0)])
            y = np.concatenate([np.zeros(len(ri)), np.ones(len(ci))])
            # stratified folds: each class dealt round-robin after a seeded shuffle
            fold = np.empty(len(y), dtype=np.intp)
            rng = np.random.default_rng(self.seed)
            for cls in (0.0, 1.0):
                idx = rng.permutation(np.flatnonzero(y == cls))
                fold[idx] = np.arange(len(idx)) % self.folds
            score = np.empty(len(y))
            for k in range(self.folds):
                test = fold == k
                w = fit_logistic(x[~test], y[~test], l2=10.0)
                score[test] = sigmoid(x[test] @ w)
            u = mannwhitneyu(score[len(ri) :], score[: len(ri)], alternative="greater")
            auc = float(u.statistic) / (len(ci) * len(ri))
            p = float(u.pvalue)
            cur_scores = score[len(ri) :]
            order = np.argsort(-cur_scores)[: self.top]
            atypical = [str(current.ids[int(ci[i])]) for i in order]
            results.append(
                DetectorResult(
                    self.name,
                    m,
                    p,
                    auc - 0.5,
                    len(ri),
                    len(ci),
                    atypical=atypical,
                    extra={"auc": auc},
                )
            )
        return results


def sketch(
    reference: ReferenceProfile, m: str, view: ModalityView, idx: NDArray[np.intp]
) -> FloatArray:
    """Rows ``idx`` of ``view``'s embeddings in the reference projection of modality ``m``
    (as they are when the view already holds sketches, e.g. from a service's log)."""
    x = view.embedding[idx]
    return x if view.projected else reference.projections[m](x)


def _domain_features(
    reference: ReferenceProfile, m: str, view: ModalityView, idx: NDArray[np.intp]
) -> FloatArray:
    """Embedding sketches and input statistics of rows ``idx``."""
    parts = [sketch(reference, m, view, idx)]
    if view.names:
        parts.append(view.statistics[idx])
    return np.concatenate(parts, axis=1)


def fisher(a_hits: int, a_n: int, b_hits: int, b_n: int) -> float:
    """Two-sided Fisher exact p-value for hits/n in two groups."""
    from scipy.stats import fisher_exact

    if a_n == 0 or b_n == 0:
        return 1.0
    table = [[a_hits, a_n - a_hits], [b_hits, b_n - b_hits]]
    return float(fisher_exact(table).pvalue)


@dataclass(frozen=True)
class MissingRate:
    """Fisher's exact test on each modality's missing share."""

    name: str = "missing_rate"

    def calculate(self, reference: ReferenceProfile, current: Observations) -> list[DetectorResult]:
        """One result per modality; ``extra`` holds both rates."""
        results = []
        for m, ref_view in reference.observations.modalities.items():
            cur_view = current.modalities[m]
            rn, cn = len(ref_view.present), len(cur_view.present)
            rm, cm = int((~ref_view.present).sum()), int((~cur_view.present).sum())
            r_rate, c_rate = rm / max(rn, 1), cm / max(cn, 1)
            results.append(
                DetectorResult(
                    self.name,
                    m,
                    fisher(rm, rn, cm, cn),
                    c_rate - r_rate,
                    rn,
                    cn,
                    extra={"reference": r_rate, "current": c_rate},
                )
            )
        return results


def agreement(obs: Observations) -> NDArray[np.bool_]:
    """Per sample: every present modality's own head gives the fused answer."""
    ok = np.ones(len(obs), dtype=bool)
    for view in obs.modalities.values():
        ok &= ~view.present | obs.outputs.agree(view.probs, obs.probs)
    return ok


@dataclass(frozen=True)
class AgreementRate:
    """Fisher's exact test on the share of samples whose unimodal heads agree with the fusion."""

    name: str = "agreement_rate"

    def calculate(self, reference: ReferenceProfile, current: Observations) -> list[DetectorResult]:
        """One ``prediction`` result (none for one-modality models)."""
        if len(reference.observations.modalities) < 2:
            return []
        ref, cur = agreement(reference.observations), agreement(current)
        r_rate = float(ref.mean()) if len(ref) else 0.0
        c_rate = float(cur.mean()) if len(cur) else 0.0
        p = fisher(int(ref.sum()), len(ref), int(cur.sum()), len(cur))
        extra = {"reference": r_rate, "current": c_rate}
        return [
            DetectorResult(
                self.name, PREDICTION, p, c_rate - r_rate, len(ref), len(cur), extra=extra
            )
        ]


@dataclass(frozen=True)
class LabelShift:
    """Has the mix of answers changed? Chi-squared test of the predicted-class histogram
    (per label, Fisher's exact test of how often it is answered, Bonferroni-corrected, for
    a multi-label model); the estimated class-prior ratios when the reference is labelled."""

    name: str = "label_shift"

    def calculate(self, reference: ReferenceProfile, current: Observations) -> list[DetectorResult]:
        """One ``prediction`` result; ``extra["weights"]`` = estimated q(y) / p(y)
        (single-label) or ``extra["prevalence"]`` = estimated share of each label now
        (multi-label)."""
        ref_obs = reference.observations
        if len(current) == 0:
            return []
        if ref_obs.outputs.multilabel:
            return self._labels(ref_obs, current)
        from scipy.stats import chi2_contingency

        k = len(ref_obs.classes)
        ref_counts = np.bincount(ref_obs.predicted, minlength=k)
        cur_counts = np.bincount(current.predicted, minlength=k)
        used = (ref_counts + cur_counts) > 0
        if used.sum() < 2:
            return []
        table = np.stack([ref_counts[used], cur_counts[used]])
        test = chi2_contingency(table)
        weights = class_weights(ref_obs, current)
        extra: dict[str, Any] = {}
        if weights is not None:
            extra["weights"] = {c: float(w) for c, w in zip(ref_obs.classes, weights, strict=True)}
        tv = 0.5 * float(
            np.abs(ref_counts / ref_counts.sum() - cur_counts / cur_counts.sum()).sum()
        )
        return [
            DetectorResult(
                self.name,
                PREDICTION,
                float(test.pvalue),
                tv,
                len(ref_obs),
                len(current),
                extra=extra,
            )
        ]

    def _labels(self, ref_obs: Observations, current: Observations) -> list[DetectorResult]:
        ref_on, cur_on = ref_obs.predicted, current.predicted
        nr, nc = len(ref_obs), len(current)
        stats = []
        for j, c in enumerate(ref_obs.classes):
            a, b = int(ref_on[:, j].sum()), int(cur_on[:, j].sum())
            p = min(1.0, len(ref_obs.classes) * fisher(a, nr, b, nc))
            stats.append(StatisticShift(f"answered({c})", p, abs(b / nc - a / nr), a / nr, b / nc))
        stats.sort(key=lambda s: (s.p_value, -s.statistic))
        extra: dict[str, Any] = {}
        prevalence = label_prevalence(ref_obs, current)
        if prevalence is not None:
            extra["prevalence"] = {
                c: float(q) for c, q in zip(ref_obs.classes, prevalence, strict=True)
            }
        return [
            DetectorResult(
                self.name,
                PREDICTION,
                stats[0].p_value,
                max(s.statistic for s in stats),
                nr,
                nc,
                statistics=stats[:5],
                extra=extra,
            )
        ]


def class_weights(reference: Observations, current: Observations) -> FloatArray | None:
    """Black-box shift estimation of q(y) / p(y) (Lipton et al., 2018) for a single-label
    model; None when unlabelled.

    Solves ``C w = mu`` with ``C[i, j] = P_ref(predicted i, label j)`` and ``mu`` the
    current predicted-class distribution, then clips to non-negative weights.
    """
    if reference.labels is None or reference.outputs.multilabel:
        return None
    keep = reference.labels >= 0
    if not keep.any() or len(current) == 0:
        return None
    k = len(reference.classes)
    pred, lab = reference.predicted[keep], reference.labels[keep]
    conf = np.zeros((k, k))
    np.add.at(conf, (pred, lab), 1.0)
    conf /= keep.sum()
    mu = np.bincount(current.predicted, minlength=k) / len(current)
    w, *_ = np.linalg.lstsq(conf + 1e-6 * np.eye(k), mu, rcond=None)
    prior = np.bincount(lab, minlength=k) / keep.sum()
    w = np.clip(w, 0.0, None)
    if (w * prior).sum() <= 0:
        return None
    out: FloatArray = w / (w * prior).sum()
    return out


def label_prevalence(reference: Observations, current: Observations) -> FloatArray | None:
    """Per label of a multi-label model, its estimated share of current samples: black-box
    shift estimation label by label, ``(answered - fpr) / (tpr - fpr)`` with the reference's
    true- and false-positive rates (the reference share where the label's decision is too
    weak, ``tpr - fpr < 0.2``, to invert). None when the reference is unlabelled."""
    if reference.labels is None or not reference.outputs.multilabel or len(current) == 0:
        return None
    keep = reference.outputs.labelled(reference.labels)
    if not keep.any():
        return None
    truth = reference.labels[keep] > 0
    said = reference.predicted[keep]
    answered = current.predicted.mean(axis=0)
    out = truth.mean(axis=0).astype(np.float64)
    for j in range(truth.shape[1]):
        pos, neg = truth[:, j], ~truth[:, j]
        if not pos.any() or not neg.any():
            continue
        tpr, fpr = said[pos, j].mean(), said[neg, j].mean()
        if tpr - fpr >= 0.2:
            out[j] = (answered[j] - fpr) / (tpr - fpr)
    clipped: FloatArray = np.clip(out, 0.005, 0.995)
    return clipped


def sample_weights(reference: Observations, current: Observations) -> FloatArray | None:
    """Importance weights of the labelled reference samples (in order) under the current
    label distribution; None when it cannot be estimated.

    Single-label: the class ratio `class_weights` of each sample's class. Multi-label: the
    weights closest to uniform (raking, iterative proportional fitting) under which each
    label's reference share equals its estimated current share (`label_prevalence`).
    """
    if reference.labels is None:
        return None
    keep = reference.outputs.labelled(reference.labels)
    if not reference.outputs.multilabel:
        weights = class_weights(reference, current)
        return None if weights is None else weights[reference.labels[keep]]
    target = label_prevalence(reference, current)
    if target is None:
        return None
    truth = reference.labels[keep] > 0
    w = np.ones(len(truth))
    for _ in range(50):
        for j in range(truth.shape[1]):
            pos = truth[:, j]
            share = w[pos].sum() / w.sum()
            if 0.0 < share < 1.0:
                w[pos] *= target[j] / share
                w[~pos] *= (1.0 - target[j]) / (1.0 - share)
    out: FloatArray = w / w.mean()
    return out


@dataclass(frozen=True)
class Detectors:
    """The detector set `monitor` runs (each replaceable)."""

    inputs: InputStatistics = field(default_factory=InputStatistics)
    embeddings: EmbeddingMMD = field(default_factory=EmbeddingMMD)
    outputs: OutputShift = field(default_factory=OutputShift)
    domain: DomainClassifier | None = field(default_factory=DomainClassifier)
    missing: MissingRate = field(default_factory=MissingRate)
    agreement: AgreementRate = field(default_factory=AgreementRate)
    labels: LabelShift = field(default_factory=LabelShift)
