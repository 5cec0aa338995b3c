"""Builds contracts and models from a `Config` through the registries."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from polyfuse.core.config import Config
from polyfuse.encoders import build_encoder, resolve_contract
from polyfuse.fusion import build_fusion
from polyfuse.heads.modules import Adapter, PredictionHead
from polyfuse.heads.tasks import Task
from polyfuse.modalities import ModalityContract
from polyfuse.models.multimodal import MultimodalModel


def build_contracts(config: Config) -> dict[str, ModalityContract]:
    """Every modality's contract: encoder preprocessing defaults overridden by the config
    (and its ``source``, the manifest key an audio modality reads a video's soundtrack from)."""
    return {
        name: resolve_contract(
            name,
            mod.kind,
            mod.encoder.name,
            mod.encoder.params,
            {**mod.contract, **({"source": mod.source} if mod.source else {})},
        )
        for name, mod in config.modalities.items()
    }


def build_model(
    config: Config,
    contracts: Mapping[str, ModalityContract],
    task: Task,
    prior_logits: torch.Tensor | None = None,
) -> MultimodalModel:
    """Assemble encoders, adapters, fusion, head and auxiliary heads.

    Args:
        config: the run configuration.
        contracts: fitted contracts (see `build_contracts`).
        task: fitted task (label map).
        prior_logits: answer for samples with no modality; zeros if omitted.
    """
    dim = config.model.dim
    encoders, adapters, aux = {}, {}, {}
    for name, mod in config.modalities.items():
        encoder = build_encoder(mod.encoder.name, contracts[name], mod.encoder.params)
        encoders[name] = encoder
        adapters[name] = Adapter(encoder.out_dim, dim, config.model.adapter, config.model.dropout)
        aux[name] = nn.Linear(dim, task.num_outputs)
    fusion = build_fusion(
        config.model.fusion.name,
        list(config.modalities),
        dim,
        task.num_outputs,
        config.model.fusion.params,
    )
    head = (
        None
        if fusion.produces_logits
        else PredictionHead(
            fusion.out_dim, task.num_outputs, config.model.head_hidden, config.model.dropout
        )
    )
    prior = torch.zeros(task.num_outputs) if prior_logits is None else prior_logits
    detach = frozenset(n for n, m in config.modalities.items() if m.loss_weight == 0)
    return MultimodalModel(encoders, adapters, fusion, head, aux, prior, detach)
