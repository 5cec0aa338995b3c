"""Where the model goes wrong: agreement between modalities, failures and saliency maps
(multi-class classification only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from polyfuse.evaluation.agreement import agreement
from polyfuse.evaluation.analyses.base import AnalysisContext, Result
from polyfuse.evaluation.saliency import Saliency as SaliencyMap
from polyfuse.evaluation.saliency import integrated_gradients
from polyfuse.heads.tasks import MulticlassTask
from polyfuse.inference.batches import collate_all


@dataclass
class AgreementResult(Result):
    """Agreement between the unimodal heads.

    Attributes:
        confident_threshold: probability above which two disagreeing heads contradict.
        pairs: ``a|b`` -> n, agreement, kappa, confusion, contradictions, contradiction_rate.
        contradiction_rate: confident contradictions over compared pairs.
        contradictions: the contradicting rows (``row`` is a 1-based manifest row).
        fleiss_kappa: Fleiss' kappa over all modalities (three or more modalities).
        fleiss_n: samples with every modality present (with ``fleiss_kappa``).
    """

    confident_threshold: float
    pairs: dict[str, dict[str, Any]]
    contradiction_rate: float
    contradictions: list[dict[str, Any]]
    fleiss_kappa: float | None = None
    fleiss_n: int | None = None


@dataclass(frozen=True)
class Agreement:
    """Cohen's and Fleiss' kappa between unimodal heads, and confident contradictions.

    Attributes:
        confident: probability above which two disagreeing modalities contradict.
    """

    confident: float = 0.8
    name: str = "agreement"

    def calculate(self, context: AnalysisContext) -> AgreementResult | None:
        """Agreement of the unimodal heads (``None`` unless the task is multi-class)."""
        task, full = context.task, context.full
        if not isinstance(task, MulticlassTask):
            return None
        uni = {m: task.probabilities(full.unimodal[m]) for m in context.names}
        out = agreement(uni, full.present, task.labels, context.ids, context.target, self.confident)
        return AgreementResult(**out)


@dataclass
class FailuresResult(Result):
    """Categorised and clustered errors.

    Attributes:
        n_errors: number of wrong fused predictions.
        categories: category (which unimodal heads were right) -> count.
        errors: one record per error (``row`` is a 1-based manifest row).
        clusters: k-means clusters of the errors' fused embeddings.
    """

    n_errors: int
    categories: dict[str, int]
    errors: list[dict[str, Any]]
    clusters: list[dict[str, Any]]


@dataclass(frozen=True)
class Failures:
    """Errors categorised by which unimodal heads were right, and clustered."""

    name: str = "failures"

    def calculate(self, context: AnalysisContext) -> FailuresResult | None:
        """The failure analysis (``None`` unless the task is multi-class)."""
        found = context.failures
        return None if found is None else FailuresResult(**found)


@dataclass
class SaliencyResult(Result):
    """Integrated Gradients maps: (1-based manifest row, map) per error and modality."""

    maps: list[tuple[int, SaliencyMap]]

    def to_dict(self) -> dict[str, Any]:
        """Saliency maps are tensors: they go to the report, not to JSON."""
        return {}


@dataclass(frozen=True)
class Saliency:
    """Integrated Gradients (of the predicted class) of the first few errors.

    Attributes:
        count: how many errors get maps.
    """

    count: int = 2
    name: str = "saliency"

    def calculate(self, context: AnalysisContext) -> SaliencyResult:
        """Maps per float-input modality; rows are bank positions until `analyze` renumbers."""
        found, bank, ds = context.failures, context.bank, context.dataset
        out: list[tuple[int, SaliencyMap]] = []
        for err in (found["errors"] if found else [])[: self.count]:
            pos = err["row"]
            for m in bank.modalities:
                if not bool(bank.present[m][pos]):
                    continue
                x = ds.preprocessed(bank.indices[pos], m)  # raw input, even with cached features
                if not x.is_floating_point():
                    continue  # token ids (text) have no input gradient
                collated = collate_all(ds.contracts[m], [x])
                predicted = int(context.full.logits[pos].argmax())  # what drove the wrong answer
                sal = integrated_gradients(
                    context.model, bank, pos, m, x, predicted, collated.lengths
                )
                out.append((pos, sal))
        return SaliencyResult(out)
