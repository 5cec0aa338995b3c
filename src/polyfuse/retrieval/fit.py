"""Training alignment adapters on pooled frozen features with symmetric InfoNCE."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from polyfuse.core.progress import bar
from polyfuse.models.alignment import AlignmentModel
from polyfuse.retrieval.losses import info_nce


class BestEpoch:
    """Keeps the weights of the best-scoring epoch of a training loop (higher is better)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.state = copy.deepcopy(model.state_dict())
        self.score = float("-inf")
        self.epoch = 0

    def update(self, model: torch.nn.Module, epoch: int, score: float) -> None:
        """Remember ``model``'s weights if ``score`` beats the best so far."""
        if score > self.score:
            self.state, self.score, self.epoch = copy.deepcopy(model.state_dict()), score, epoch

    def restore(self, model: torch.nn.Module, epochs: int, scored: bool) -> int:
        """Load the best weights into ``model`` (when epochs were scored) and return the
        epoch they come from (the last epoch otherwise)."""
        if not scored:
            return epochs
        model.load_state_dict(self.state)
        return self.epoch


@dataclass
class AlignmentFit:
    """Outcome of `fit_alignment`.

    Attributes:
        model: the adapters of the best epoch (by ``score``), in eval mode.
        best_epoch: that epoch (1-based).
        history: per epoch: mean training loss and the validation score.
    """

    model: AlignmentModel
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def fit_alignment(
    model: AlignmentModel,
    a: Tensor,
    b: Tensor,
    groups: Tensor,
    *,
    names: tuple[str, str],
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.5,
    seed: int = 0,
    score: Callable[[AlignmentModel], float] | None = None,
    progress: bool = True,
) -> AlignmentFit:
    """Train ``model`` so row ``i`` of ``a`` and of ``b`` (and rows of one group) align.

    Args:
        a, b: ``(N, D_a)``, ``(N, D_b)`` pooled features of modalities ``names``.
        groups: ``(N,)`` group per row (e.g. the image id of each caption): rows of a
            group are positives of each other (multi-positive InfoNCE).
        score: validation score of the model after each epoch (higher is better);
            the best epoch's weights are kept. Without it, the last epoch is kept.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.fit_standardisation({names[0]: a, names[1]: b})
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = a.shape[0]
    best = BestEpoch(model)
    history = []
    for epoch in bar(range(1, epochs + 1), enabled=progress, desc="aligning", leave=False):
        model.train()
        perm = torch.randperm(n, generator=gen)
        total, steps = 0.0, 0
        for start in range(0, n - batch_size + 1, batch_size):
            idx = perm[start : start + batch_size]
            za, zb = model.embed(names[0], a[idx]), model.embed(names[1], b[idx])
            loss = info_nce(za, zb, model.logit_scale.clamp(max=4.6052), groups[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, steps = total + float(loss.detach()), steps + 1
        model.eval()
        record = {"epoch": float(epoch), "loss": total / max(1, steps)}
        if score is not None:
            with torch.no_grad():
                record["score"] = score(model)
            best.update(model, epoch, record["score"])
        history.append(record)
    best_epoch = best.restore(model, epochs, score is not None)
    model.eval()
    return AlignmentFit(model, best_epoch, history)
