"""A token-level image-text agreement scorer for contradiction detection.

Pooled embeddings in a contrastive space separate topics ("a dog on grass" vs "a kitchen")
but barely notice one wrong attribute: swapping "red" for "blue" in a true caption moves
its MiniLM mean-pooled vector very little (colour-swap AUC about 0.6 on Flickr8k dev).
`ConsistencyScorer` looks at tokens instead: each text token attends over the image's
spatial tokens (7x7 for EfficientNet-Lite0), the attended image evidence is compared
with the token, and the per-token agreements are pooled (mean and minimum, so one
contradicted word can sink the score) into one logit. It is trained with
`fit_consistency` on true pairs against attribute-swapped and random captions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from polyfuse.core.progress import bar
from polyfuse.retrieval.fit import BestEpoch


class ConsistencyScorer(nn.Module):
    """Agreement logit of (item tokens, query tokens) pairs, e.g. (image, caption).

    Args:
        item_dim, query_dim: token widths of the two frozen encoders.
        dim: width of the scorer.
        heads: attention heads of the query-to-item cross-attention.
        dropout: dropout on projected tokens and in the head.
        extra_dim: width of optional per-cell extra item tokens (e.g. `colour_tokens`):
            ``T_i + 1`` of them, one per item token (added to its projection) and one
            whole-item token appended to the sequence; 0 for none.
    """

    def __init__(
        self,
        item_dim: int,
        query_dim: int,
        dim: int = 256,
        heads: int = 4,
        dropout: float = 0.1,
        extra_dim: int = 0,
    ) -> None:
        super().__init__()
        self.extra_dim = extra_dim
        self.extra = nn.Linear(extra_dim, dim) if extra_dim else None
        self.item = nn.Sequential(
            nn.LayerNorm(item_dim), nn.Linear(item_dim, dim), nn.Dropout(dropout)
        )
        self.query = nn.Sequential(
            nn.LayerNorm(query_dim), nn.Linear(query_dim, dim), nn.Dropout(dropout)
        )
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(2 * dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, 1)
        )

    def forward(
        self,
        item: Tensor,
        item_mask: Tensor,
        query: Tensor,
        query_mask: Tensor,
        extra: Tensor | None = None,
    ) -> Tensor:
        """``(B, Ti, Di), (B, Ti), (B, Tq, Dq), (B, Tq)`` [, ``(B, Ti + 1, E)``] -> logits
        ``(B,)``, higher for agreeing pairs."""
        return self.score(*self.encode_items(item, item_mask, extra), query, query_mask)

    def encode_items(
        self, item: Tensor, item_mask: Tensor, extra: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Projected item tokens and their mask (a batch can project each item once)."""
        i = self.item(item)
        if self.extra is None:
            return i, item_mask
        if extra is None:
            raise ValueError("this scorer was trained with extra item tokens; pass `extra`")
        e = self.extra(extra)
        t = i.shape[1]
        tokens = torch.cat([i + e[:, :t], e[:, t:]], dim=1)
        ones = torch.ones(item_mask.shape[0], e.shape[1] - t, dtype=torch.bool, device=i.device)
        return tokens, torch.cat([item_mask, ones], dim=1)

    def score(self, i: Tensor, item_mask: Tensor, query: Tensor, query_mask: Tensor) -> Tensor:
        """Logits from projected item tokens (`encode_items`) and raw query tokens."""
        q = self.query(query)
        seen, _ = self.attn(q, i, i, key_padding_mask=~item_mask, need_weights=False)
        h = seen * q  # per-token agreement features
        w = query_mask.to(h.dtype).unsqueeze(-1)
        mean = (h * w).sum(1) / w.sum(1).clamp_min(1.0)
        low = h.masked_fill(~query_mask.unsqueeze(-1), float("inf")).amin(1)
        logits: Tensor = self.head(torch.cat([mean, low], dim=1)).squeeze(-1)
        return logits


@dataclass
class ConsistencyData:
    """Tokens for scorer training: unique items, unique texts, and true pairs.

    Attributes:
        items, item_mask: ``(I, Ti, Di)`` / ``(I, Ti)`` tokens of each unique item.
        texts, text_mask: ``(Q, Tq, Dq)`` / ``(Q, Tq)`` tokens of every text (true
            captions and their swapped versions).
        pairs: ``(N, 2)`` (item index, text index) of true pairs.
        swaps: per true pair, text indices of its attribute-swapped versions (may be empty).
        extra: ``(I, Ti + 1, E)`` extra item tokens (`ConsistencyScorer` ``extra_dim``).
    """

    items: Tensor
    item_mask: Tensor
    texts: Tensor
    text_mask: Tensor
    pairs: Tensor
    swaps: list[list[int]]
    extra: Tensor | None = None

    def encode(self, model: ConsistencyScorer, items: Tensor) -> tuple[Tensor, Tensor]:
        """`ConsistencyScorer.encode_items` of item indices ``items`` (each distinct one once)."""
        uniq, inv = torch.unique(items, return_inverse=True)
        extra = None if self.extra is None else self.extra[uniq].float()
        tokens, mask = model.encode_items(self.items[uniq].float(), self.item_mask[uniq], extra)
        return tokens[inv], mask[inv]

    def text_batch(self, texts: Tensor) -> tuple[Tensor, Tensor]:
        """Tokens and mask of text indices, cut to the longest text of the batch."""
        mask = self.text_mask[texts]
        width = int(mask.sum(1).max())
        return self.texts[texts, :width].float(), mask[:, :width]


@dataclass
class ConsistencyFit:
    """Outcome of `fit_consistency`: best scorer (by ``score``), its epoch, history."""

    model: ConsistencyScorer
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def score_pairs(
    model: ConsistencyScorer,
    data: ConsistencyData,
    item_idx: Tensor,
    text_idx: Tensor,
    batch_size: int = 512,
) -> Tensor:
    """Logits of (item, text) index pairs, in eval mode without gradients."""
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(item_idx), batch_size):
            ii, tt = item_idx[s : s + batch_size], text_idx[s : s + batch_size]
            out.append(model.score(*data.encode(model, ii), *data.text_batch(tt)))
    return torch.cat(out) if out else torch.zeros(0)


def fit_consistency(
    model: ConsistencyScorer,
    data: ConsistencyData,
    *,
    epochs: int = 8,
    batch_size: int = 128,
    lr: float = 5e-4,
    weight_decay: float = 0.05,
    alternatives_per_step: int = 3,
    seed: int = 0,
    score: Callable[[ConsistencyScorer], float] | None = None,
    progress: bool = True,
) -> ConsistencyFit:
    """Train ``model`` on true pairs against a caption of another item and
    ``alternatives_per_step`` of the pair's swapped captions (drawn with replacement, when
    it has any): binary cross-entropy on all of them plus a listwise term (softmax over the
    true caption and its drawn swaps) that ranks the true caption first on its own item,
    which is how `polyfuse.retrieval.scoring` uses the scorer at inference."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(data.pairs)
    steps_total = epochs * max(1, n // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps_total, pct_start=0.1)
    has_swap = torch.tensor([bool(s) for s in data.swaps])
    best = BestEpoch(model)
    history: list[dict[str, float]] = []
    bce = nn.functional.binary_cross_entropy_with_logits
    for epoch in bar(range(1, epochs + 1), enabled=progress, desc="consistency", leave=False):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total, steps = 0.0, 0
        for start in range(0, n - batch_size + 1, batch_size):
            idx = perm[start : start + batch_size]
            items, texts = data.pairs[idx, 0], data.pairs[idx, 1]
            # a caption of a random pair (of another item but for 1 in #items draws)
            other = data.pairs[torch.randint(n, (len(idx),), generator=gen), 1]
            sw = has_swap[idx]
            k = alternatives_per_step
            swapped = torch.tensor(
                [
                    data.swaps[int(j)][int(c)]
                    for j in idx[sw]
                    for c in torch.randint(len(data.swaps[int(j)]), (k,), generator=gen)
                ],
                dtype=torch.long,
            )
            all_items = torch.cat([items, items, items[sw].repeat_interleave(k)])
            all_texts = torch.cat([texts, other, swapped])
            logits = model.score(*data.encode(model, all_items), *data.text_batch(all_texts))
            b, m = len(idx), int(sw.sum())
            target = torch.cat([torch.ones(b), torch.zeros(b)])
            loss = bce(logits[: 2 * b], target)
            if m:
                alt = logits[2 * b :].view(m, k)
                loss = loss + bce(alt, torch.zeros_like(alt))
                # listwise: the true caption ranks first among its swapped versions
                listwise = torch.cat([logits[:b][sw].unsqueeze(1), alt], dim=1)
                loss = loss + nn.functional.cross_entropy(
                    listwise, torch.zeros(m, dtype=torch.long)
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total, steps = total + float(loss.detach()), steps + 1
        record = {"epoch": float(epoch), "loss": total / max(1, steps)}
        if score is not None:
            record["score"] = score(model)
            best.update(model, epoch, record["score"])
        history.append(record)
    best_epoch = best.restore(model, epochs, score is not None)
    model.eval()
    return ConsistencyFit(model, best_epoch, history)
