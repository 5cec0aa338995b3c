"""Agreement between the unimodal predictions of a model (its auxiliary heads)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from polyfuse.evaluation.metrics import confusion_matrix


def cohen_kappa(a: Tensor, b: Tensor, num_classes: int) -> float:
    """Cohen's kappa of two raters' labels: (p_o - p_e) / (1 - p_e).

    Returns 1.0 when both raters agree perfectly on a single category (p_e = 1)
    and 0.0 for no samples.
    """
    n = int(a.numel())
    if n == 0:
        return 0.0
    cm = confusion_matrix(b, a, num_classes).double()  # rows: a, columns: b
    p_o = float(cm.diag().sum()) / n
    p_e = float((cm.sum(1) * cm.sum(0)).sum()) / n**2
    if p_e >= 1.0:
        return 1.0 if p_o >= 1.0 else 0.0
    return (p_o - p_e) / (1 - p_e)


def fleiss_kappa(labels: Tensor, num_classes: int) -> float:
    """Fleiss' kappa of ``(N, R)`` labels from R raters over N subjects."""
    n, r = labels.shape
    if n == 0 or r < 2:
        return 0.0
    counts = torch.zeros(n, num_classes, dtype=torch.float64)
    counts.scatter_add_(1, labels.long(), torch.ones(n, r, dtype=torch.float64))
    p_i = ((counts * (counts - 1)).sum(1)) / (r * (r - 1))
    p_bar = float(p_i.mean())
    p_j = counts.sum(0) / (n * r)
    p_e = float((p_j**2).sum())
    if p_e >= 1.0:
        return 1.0 if p_bar >= 1.0 else 0.0
    return (p_bar - p_e) / (1 - p_e)


def agreement(
    probs: Mapping[str, Tensor],
    present: Mapping[str, Tensor],
    labels: Sequence[str],
    ids: Sequence[str],
    target: Tensor | None = None,
    confident: float = 0.8,
    max_listed: int = 200,
) -> dict[str, Any]:
    """Kappa, cross-modality confusion and contradictions between unimodal predictions.

    Args:
        probs: modality -> ``(N, K)`` unimodal class probabilities.
        present: modality -> ``(N,)``; a pair is compared where both are present.
        labels: class names.
        ids: sample ids (for the contradiction list).
        target: ``(N,)`` true classes, to say which side of a contradiction was right.
        confident: both predictions at least this probable counts as confident.
        max_listed: longest contradiction list kept.

    Returns:
        ``pairs`` (per pair: n, agreement, kappa, confusion, contradictions,
        contradiction_rate), ``fleiss_kappa`` (M > 2, samples with every modality),
        ``contradiction_rate`` over all compared pairs and ``contradictions``.
    """
    k = len(labels)
    names = sorted(probs)
    pairs: dict[str, Any] = {}
    listed: list[dict[str, Any]] = []
    compared = flagged = 0
    for a, b in itertools.combinations(names, 2):
        both = present[a] & present[b]
        pa, pb = probs[a][both], probs[b][both]
        ca, ya = pa.max(1)
        cb, yb = pb.max(1)
        clash = (ya != yb) & (ca >= confident) & (cb >= confident)
        n = int(both.sum())
        compared += n
        flagged += int(clash.sum())
        rows = both.nonzero().flatten()
        for i in clash.nonzero().flatten().tolist():
            if len(listed) >= max_listed:
                break
            row = int(rows[i])
            item: dict[str, Any] = {
                "row": row,
                "id": ids[row],
                "modalities": [a, b],
                a: {"label": labels[int(ya[i])], "confidence": float(ca[i])},
                b: {"label": labels[int(yb[i])], "confidence": float(cb[i])},
            }
            if target is not None:
                item["true"] = labels[int(target[row])]
            listed.append(item)
        pairs[f"{a}|{b}"] = {
            "n": n,
            "agreement": float((ya == yb).double().mean()) if n else 0.0,
            "kappa": cohen_kappa(ya, yb, k),
            "confusion": confusion_matrix(yb, ya, k).tolist(),  # rows: a, columns: b
            "contradictions": int(clash.sum()),
            "contradiction_rate": float(clash.double().mean()) if n else 0.0,
        }
    out: dict[str, Any] = {
        "confident_threshold": confident,
        "pairs": pairs,
        "contradiction_rate": flagged / compared if compared else 0.0,
        "contradictions": listed,
    }
    if len(names) > 2:
        every = torch.stack([present[m] for m in names], 1).all(1)
        preds = torch.stack([probs[m][every].argmax(1) for m in names], 1)
        out["fleiss_kappa"] = fleiss_kappa(preds, k)
        out["fleiss_n"] = int(every.sum())
    return out
