"""Consistency scoring of (item, query) pairs: cosine in the shared space, optionally
combined with token-level scorers (`polyfuse.retrieval.consistency`).

`pair_tokens` turns lists of raw pairs into `ConsistencyData` (frozen tokens from the
feature cache, colour tokens, pooled features); `train_scorers` trains the scorer
members on true pairs vs attribute-swapped and random captions; `Combination` mixes
cosine and scorer logit with weights fitted on validation pairs (logistic regression).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from polyfuse.core.progress import bar
from polyfuse.data.pooled import encoded_tokens, pad_tokens
from polyfuse.encoders.base import Encoder
from polyfuse.inference.batches import load_batch
from polyfuse.retrieval.consistency import (
    ConsistencyData,
    ConsistencyScorer,
    fit_consistency,
    score_pairs,
)

#: Longest query kept for the scorer, in tokens.
MAX_QUERY_TOKENS = 48


@dataclass
class PairTokens:
    """`ConsistencyData` plus pooled features of its unique items and texts."""

    data: ConsistencyData
    item_pooled: Tensor
    text_pooled: Tensor


def _pool(encoder: Encoder, seqs: Sequence[Tensor]) -> Tensor:
    out = []
    for s in seqs:
        mask = torch.ones(1, s.shape[0], dtype=torch.bool)
        out.append(encoder.pool(s[None].float(), mask)[0])
    return torch.stack(out)


def pair_tokens(
    encoders: Mapping[str, Encoder],
    item: str,
    query: str,
    pairs: Sequence[tuple[Any, Any]],
    *,
    swaps: Sequence[Sequence[Any]] | None = None,
    colour: bool = False,
    cached: bool = True,
    progress: bool = True,
) -> PairTokens:
    """Tokens of ``(item value, query value)`` pairs and of optional swapped queries.

    Args:
        pairs: raw values, e.g. ``(image path, caption)``.
        swaps: per pair, alternative (contradicting) queries for training.
        colour: add colour-name tokens of every item (`polyfuse.retrieval.colour`).
        cached: read tokens through the disk feature cache (values must be paths or
            strings); otherwise run the encoders directly (any loadable value).
    """
    items = list(dict.fromkeys(_key(p[0]) for p in pairs))
    texts = list(dict.fromkeys(str(p[1]) for p in pairs))
    if swaps is not None:
        texts = list(dict.fromkeys([*texts, *(str(s) for ss in swaps for s in ss)]))
    raw_items = {_key(p[0]): p[0] for p in pairs}
    iix = {k: i for i, k in enumerate(items)}
    tix = {t: i for i, t in enumerate(texts)}
    item_seqs = _tokens(encoders[item], [raw_items[k] for k in items], cached, progress)
    text_seqs = _tokens(encoders[query], texts, cached, progress)
    it, im = pad_tokens([s.half() for s in item_seqs])
    tt, tm = pad_tokens([s.half() for s in text_seqs], MAX_QUERY_TOKENS)
    extra = None
    if colour:
        from polyfuse.retrieval.colour import colour_tokens

        contract = encoders[item].contract
        extra = torch.stack(
            [
                torch.from_numpy(colour_tokens(contract.load(raw_items[k], field=item)))
                for k in bar(items, enabled=progress, desc="colour tokens", leave=False)
            ]
        )
    data = ConsistencyData(
        it,
        im,
        tt,
        tm,
        torch.tensor([(iix[_key(a)], tix[str(b)]) for a, b in pairs], dtype=torch.long).view(-1, 2),
        [[tix[str(s)] for s in ss] for ss in swaps] if swaps is not None else [[] for _ in pairs],
        extra,
    )
    return PairTokens(data, _pool(encoders[item], item_seqs), _pool(encoders[query], text_seqs))


def _key(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _tokens(encoder: Encoder, values: Sequence[Any], cached: bool, progress: bool) -> list[Tensor]:
    if cached:
        return encoded_tokens(encoder, values, progress=progress)
    contract = encoder.contract
    out: list[Tensor] = []
    with torch.no_grad():
        for s in range(0, len(values), 32):
            mb = load_batch(contract, values[s : s + 32])
            enc = encoder(mb.data, mb.lengths)
            out.extend(t[m] for t, m in zip(enc.tokens, enc.mask, strict=True))
    return out


def train_scorers(
    train: ConsistencyData,
    val: ConsistencyData,
    val_swapped: Tensor,
    val_label: Tensor,
    *,
    members: int,
    epochs: int,
    dim: int,
    seed: int,
    alternatives_per_step: int = 3,
    progress: bool = True,
) -> list[ConsistencyScorer]:
    """Scorers with seeds ``seed + k``, each keeping its best epoch by validation AUC of
    true pairs against their swapped versions (rows ``val_swapped`` of ``val.pairs``)."""
    from polyfuse.evaluation.metrics import roc_auc

    out = []
    for k in range(members):
        torch.manual_seed(seed + k)
        model = ConsistencyScorer(
            int(train.items.shape[2]),
            int(train.texts.shape[2]),
            dim=dim,
            extra_dim=0 if train.extra is None else int(train.extra.shape[2]),
        )
        sel = val.pairs[val_swapped]

        def score(m: ConsistencyScorer, sel: Tensor = sel) -> float:
            s = score_pairs(m, val, sel[:, 0], sel[:, 1])
            return roc_auc(s, val_label[val_swapped]) or 0.0

        fit = fit_consistency(
            model,
            train,
            epochs=epochs,
            alternatives_per_step=alternatives_per_step,
            seed=seed + k,
            score=score,
            progress=progress,
        )
        out.append(fit.model)
    return out


def scorer_logits(scorers: Sequence[ConsistencyScorer], data: ConsistencyData) -> Tensor:
    """Mean logit of ``scorers`` on every pair of ``data``."""
    logits = [score_pairs(m, data, data.pairs[:, 0], data.pairs[:, 1]) for m in scorers]
    return torch.stack(logits).mean(0)


def relative_scores(
    scorers: Sequence[ConsistencyScorer], data: ConsistencyData, owner: Tensor, n: int
) -> tuple[Tensor, Tensor]:
    """Scorer logit of each of ``n`` queries and its log-probability among its variants.

    ``data.pairs`` holds, for each query ``j`` (``owner == j``), first the query itself
    and then its single-word alternatives (`polyfuse.data.negatives.alternatives`). The
    relative score ``logit - logsumexp(logits of the query and its alternatives)`` asks
    "does the image fit this colour / count / object better than the other choices?",
    free of how well the image fits captions in general; it is 0 for a query without
    alternatives.
    """
    logits = scorer_logits(scorers, data)
    starts = torch.zeros(n + 1, dtype=torch.long)
    starts[1:] = torch.bincount(owner, minlength=n).cumsum(0)
    first = starts[:-1]
    lse = torch.full((n,), float("-inf")).scatter_reduce(0, owner, logits, "amax")
    lse = lse + torch.zeros(n).index_add(0, owner, (logits - lse[owner]).exp()).log()
    return logits[first], logits[first] - lse


@dataclass
class Combination:
    """Agreement log-odds from three calibrated signals:

    ``softmin(cosine_w * cosine + cosine_b, (scorer + relative) / 2)`` with
    ``scorer = scorer_w * logit + scorer_b``, ``relative = relative_w * rel + relative_b``
    and ``softmin(a, b) = -log(exp(-a) + exp(-b))``.

    The cosine (calibrated on true pairs vs random captions) catches captions about
    something else; the scorers (calibrated on true pairs vs attribute swaps) catch a wrong
    colour, count or object; the (smooth) minimum flags a pair when either kind of evidence
    contradicts it. Without scorers the agreement is the calibrated cosine alone.
    """

    cosine_w: float = 1.0
    cosine_b: float = 0.0
    scorer_w: float = 0.0
    scorer_b: float = 0.0
    relative_w: float = 0.0
    relative_b: float = 0.0

    def __call__(
        self, cosine: Tensor, logit: Tensor | None = None, rel: Tensor | None = None
    ) -> Tensor:
        out = self.cosine_w * cosine + self.cosine_b
        if logit is None or rel is None:
            return out
        tokens = (
            self.scorer_w * logit + self.scorer_b + self.relative_w * rel + self.relative_b
        ) / 2
        return -torch.logsumexp(torch.stack([-out, -tokens]), dim=0)

    @classmethod
    def fit(
        cls, cosine: Tensor, logit: Tensor, rel: Tensor, agree: Tensor, kinds: Sequence[str]
    ) -> Combination:
        """One-feature logistic regressions: the cosine on true pairs vs ``random``
        mismatches, the scorer logit and the relative score on true pairs vs ``swap``."""
        kind = torch.tensor([k == "random" for k in kinds])
        swap = torch.tensor([k == "swap" for k in kinds])
        cw, cb = _logistic(cosine[agree | kind], agree[agree | kind])
        sw, sb = _logistic(logit[agree | swap], agree[agree | swap])
        rw, rb = _logistic(rel[agree | swap], agree[agree | swap])
        return cls(cw, cb, sw, sb, rw, rb)


def _logistic(x: Tensor, y: Tensor) -> tuple[float, float]:
    """Weight and bias of a class-balanced one-feature logistic regression."""
    x, t = x.double(), y.double()
    pos = float(t.sum())
    w = torch.where(y, 0.5 / max(pos, 1.0), 0.5 / max(len(t) - pos, 1.0))
    params = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([params], max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        z = x * params[0] + params[1]
        loss = (w * nn.functional.binary_cross_entropy_with_logits(z, t, reduction="none")).sum()
        loss = loss + 1e-6 * params[0] ** 2
        loss.backward()
        return loss

    opt.step(closure)
    weight, bias = params.detach().tolist()
    return float(weight), float(bias)


def signals(
    model: Any,
    scorers: Sequence[ConsistencyScorer],
    encoders: Mapping[str, Encoder],
    item: str,
    query: str,
    pairs: Sequence[tuple[Any, Any]],
    *,
    colour: bool,
    cached: bool,
    progress: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Cosine in the shared space of every pair (``model``: an alignment model) and, with
    scorers, their logit and relative score (`relative_scores`)."""
    from polyfuse.data.negatives import alternatives

    owner: list[int] = []
    expanded: list[tuple[Any, Any]] = []
    for j, (a, b) in enumerate(pairs):
        variants = [b, *alternatives(b)] if scorers and isinstance(b, str) else [b]
        expanded.extend((a, v) for v in variants)
        owner.extend([j] * len(variants))
    tok = pair_tokens(
        encoders,
        item,
        query,
        expanded,
        colour=colour and bool(scorers),
        cached=cached,
        progress=progress,
    )
    own = torch.tensor(owner, dtype=torch.long)
    first = torch.zeros(len(pairs) + 1, dtype=torch.long)
    first[1:] = torch.bincount(own, minlength=len(pairs)).cumsum(0)
    p = tok.data.pairs[first[:-1]]
    with torch.no_grad():
        zi = model.embed(item, tok.item_pooled)
        zq = model.embed(query, tok.text_pooled)
    cosine = (zi[p[:, 0]] * zq[p[:, 1]]).sum(1)
    if not scorers:
        return cosine, None, None
    logit, rel = relative_scores(scorers, tok.data, own, len(pairs))
    return cosine, logit, rel
