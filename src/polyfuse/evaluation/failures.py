"""Failure analysis: which modality caused each error, and clusters of similar errors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

ALL_WRONG = "all modalities wrong"


def categorise(
    fused_pred: int,
    true: int,
    unimodal_pred: Mapping[str, int],
) -> str:
    """Name the cause of one error from the unimodal predictions of the modalities present.

    * ``"<m> misled the fusion"``: the fusion followed the wrong answer of ``m``
      (several names joined by ``+``) while another modality was right;
    * ``"fusion wrong although <m> was right"``: some modality was right and the
      fusion followed none of the wrong ones;
    * ``"all modalities wrong"`` (``"both wrong"`` with two) when none was right;
    * ``"only <m> present"`` prefixes single-modality samples.
    """
    if not unimodal_pred:
        return "no modality present"
    right = sorted(m for m, p in unimodal_pred.items() if p == true)
    if len(unimodal_pred) == 1:
        (m,) = unimodal_pred
        return f"only {m} present, {'fusion wrong although it was right' if right else 'wrong'}"
    if not right:
        return "both wrong" if len(unimodal_pred) == 2 else ALL_WRONG
    misled = sorted(m for m, p in unimodal_pred.items() if p == fused_pred and p != true)
    if misled:
        return f"{'+'.join(misled)} misled the fusion"
    verb = "was" if len(right) == 1 else "were"
    return f"fusion wrong although {'+'.join(right)} {verb} right"


def kmeans(x: Tensor, k: int, iters: int = 50, seed: int = 0) -> tuple[Tensor, Tensor]:
    """k-means++ on rows of ``x``; returns ``(assignments (N,), centres (k, D))``."""
    n = x.shape[0]
    k = max(1, min(k, n))
    gen = torch.Generator().manual_seed(seed)
    x = x.double()
    centres = x[torch.randint(n, (1,), generator=gen)]
    for _ in range(1, k):
        d = torch.cdist(x, centres).min(1).values.pow(2)
        if float(d.sum()) <= 0:
            break
        centres = torch.cat([centres, x[torch.multinomial(d / d.sum(), 1, generator=gen)]])
    assign = torch.zeros(n, dtype=torch.long)
    for _ in range(iters):
        new = torch.cdist(x, centres).argmin(1)
        if bool((new == assign).all()) and _ > 0:
            break
        assign = new
        for j in range(centres.shape[0]):
            members = x[assign == j]
            if len(members):
                centres[j] = members.mean(0)
    return assign, centres.float()


def failure_analysis(
    fused: Tensor,
    target: Tensor,
    unimodal: Mapping[str, Tensor],
    present: Mapping[str, Tensor],
    embedding: Tensor,
    labels: Sequence[str],
    ids: Sequence[str],
    clusters: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Categorise and cluster the errors of a multi-class model.

    Args:
        fused: ``(N,)`` fused predictions.
        target: ``(N,)`` true classes.
        unimodal: modality -> ``(N,)`` auxiliary-head predictions.
        present: modality -> ``(N,)``.
        embedding: ``(N, D)`` fused embeddings.
        clusters: k for k-means over the errors (default: about one per 15 errors, 2..8).

    Returns:
        ``errors`` (one record per error, row order), ``categories`` (counts) and
        ``clusters`` (size, dominant true/predicted label and category, rows).
    """
    wrong = (fused != target).nonzero().flatten().tolist()
    records = []
    for i in wrong:
        uni = {m: int(unimodal[m][i]) for m in sorted(unimodal) if bool(present[m][i])}
        records.append(
            {
                "row": i,
                "id": ids[i],
                "true": labels[int(target[i])],
                "predicted": labels[int(fused[i])],
                "unimodal": {m: labels[p] for m, p in uni.items()},
                "category": categorise(int(fused[i]), int(target[i]), uni),
            }
        )
    out: dict[str, Any] = {
        "n_errors": len(records),
        "categories": dict(Counter(r["category"] for r in records).most_common()),
        "errors": records,
        "clusters": [],
    }
    if len(records) >= 4:
        k = clusters or max(2, min(8, len(records) // 15))
        emb = embedding[torch.tensor(wrong)]
        emb = emb / emb.norm(dim=1, keepdim=True).clamp_min(1e-8)
        assign, _ = kmeans(emb, k, seed=seed)
        for j in range(int(assign.max()) + 1):
            members = [records[i] for i in (assign == j).nonzero().flatten().tolist()]
            if not members:
                continue
            for r in members:
                r["cluster"] = j
            out["clusters"].append(
                {
                    "cluster": j,
                    "size": len(members),
                    "top_true": Counter(r["true"] for r in members).most_common(3),
                    "top_predicted": Counter(r["predicted"] for r in members).most_common(3),
                    "top_category": Counter(r["category"] for r in members).most_common(1)[0][0],
                    "rows": [r["row"] for r in members],
                }
            )
        out["clusters"].sort(key=lambda c: -c["size"])
    return out
