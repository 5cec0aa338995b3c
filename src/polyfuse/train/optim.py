"""AdamW parameter groups per modality and the warm-up + cosine schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from polyfuse.core.config import Config
from polyfuse.models.multimodal import MultimodalModel


def _split_decay(
    params: list[tuple[str, nn.Parameter]],
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Weights decay; biases, norms, embeddings of one vector (``ndim < 2``) do not."""
    decay = [p for _, p in params if p.ndim >= 2]
    no_decay = [p for _, p in params if p.ndim < 2]
    return decay, no_decay


def param_groups(model: MultimodalModel, config: Config) -> list[dict[str, Any]]:
    """One group per (modality, encoder|adapter) plus fusion/head, each with its lr.

    Frozen parameters are left out. Every group carries a ``name`` for logging.
    """
    base = config.train.lr
    wd = config.train.weight_decay
    groups: list[dict[str, Any]] = []

    def add(name: str, module_params: list[tuple[str, nn.Parameter]], lr: float) -> None:
        if lr == 0:  # a rate of 0 keeps the weights as initialised: nothing to optimise
            return
        trainable = [(n, p) for n, p in module_params if p.requires_grad]
        decay, no_decay = _split_decay(trainable)
        if decay:
            groups.append({"name": name, "params": decay, "lr": lr, "weight_decay": wd})
        if no_decay:
            groups.append(
                {"name": f"{name}/no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0}
            )

    for m, mod in config.modalities.items():
        encoder_lr = base if mod.encoder_lr is None else mod.encoder_lr
        add(f"{m}/encoder", list(model.encoders[m].named_parameters()), encoder_lr)
        adapter_params = list(model.adapters[m].named_parameters()) + list(
            model.aux_heads[m].named_parameters()
        )
        add(f"{m}/adapter", adapter_params, mod.adapter_lr or base)
    rest = list(model.fusion.named_parameters())
    if model.head is not None:
        rest += list(model.head.named_parameters())
    add("fusion", rest, base)
    return groups


def warmup_cosine(total_steps: int, warmup_fraction: float, min_ratio: float) -> Any:
    """LR multiplier: linear warm-up to 1, then cosine decay to ``min_ratio``."""
    warmup = max(1, int(total_steps * warmup_fraction)) if warmup_fraction > 0 else 0

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def make_optimizer(
    model: MultimodalModel, config: Config, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over `param_groups` and its LambdaLR schedule."""
    optimizer = torch.optim.AdamW(param_groups(model, config), lr=config.train.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total_steps, config.train.warmup, config.train.min_lr_ratio)
    )
    return optimizer, schedule
