"""Preprocessing of served inputs: a modality contract's ``load``, its quality gate, then
``preprocess``, in the serving process or in a worker process of a pool (the contract and
the gate travel as JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from polyfuse.core.errors import PolyfuseError
from polyfuse.modalities.base import ModalityContract
from polyfuse.modalities.quality import QualityGate

#: What `statistics_of` needs besides the input: ``sample_rate`` (audio), ``vocab`` (text).
StatisticsContext = dict[str, Any]
#: Contracts, gates and statistics contexts a pool worker has parsed, by their JSON (a
#: worker keeps its own).
_WORKER_STAGES: dict[
    str, tuple[ModalityContract, QualityGate | None, StatisticsContext | None]
] = {}


@dataclass(frozen=True)
class Preprocessed:
    """A worker's answer (picklable: arrays and strings, never exceptions).

    Attributes:
        array: the preprocessed input, or None.
        error: why the input could not be read (a client error).
        hint: how to fix it.
        low_quality: why the modality's quality gate refused a readable input (the
            request goes on without the modality).
        statistics: the input statistics drift monitoring compares
            (`polyfuse.monitor.statistics`), when asked for.
    """

    array: np.ndarray | None
    error: str | None = None
    hint: str | None = None
    low_quality: str | None = None
    statistics: list[float] | None = None


@dataclass(frozen=True)
class Monitored:
    """An input the drift monitor samples: preprocess it and compute its statistics."""

    value: bytes | str


def worker_init() -> None:
    torch.set_num_threads(1)  # workers share the CPU with the encoders


def worker_payload(
    contract: ModalityContract,
    gate: QualityGate | None,
    statistics: StatisticsContext | None = None,
) -> str:
    """What a pool worker needs to preprocess one modality, as JSON."""
    quality = None if gate is None else gate.to_dict()
    stats = (
        None if statistics is None else {**statistics, "vocab": sorted(statistics.get("vocab", ()))}
    )
    return json.dumps(
        {"contract": contract.to_dict(), "quality": quality, "statistics": stats}, sort_keys=True
    )


def preprocess_in_worker(payload: str, value: bytes | str) -> Preprocessed:
    """Load, gate and preprocess in a pool worker; ``payload`` is `worker_payload` (its
    statistics context applies to `Monitored` inputs only)."""
    stage = _WORKER_STAGES.get(payload)
    if stage is None:
        from polyfuse.modalities import contract_from_dict

        data = json.loads(payload)
        contract = contract_from_dict(data["contract"])
        gate = None if data["quality"] is None else QualityGate.from_dict(contract, data["quality"])
        stats = data.get("statistics")
        if stats is not None:
            stats = {**stats, "vocab": frozenset(stats.get("vocab", ()))}
        stage = _WORKER_STAGES[payload] = (contract, gate, stats)
    if isinstance(value, Monitored):
        return preprocess_value(stage[0], value.value, stage[1], stage[2])
    return preprocess_value(stage[0], value, stage[1])


def preprocess_many_in_worker(payload: str, values: list[Any]) -> list[Preprocessed]:
    """`preprocess_in_worker` over several inputs in one pool call."""
    return [preprocess_in_worker(payload, v) for v in values]


def preprocess_value(
    contract: ModalityContract,
    value: Any,
    gate: QualityGate | None = None,
    statistics: StatisticsContext | None = None,
) -> Preprocessed:
    """``contract.load``, the input statistics (when ``statistics`` is given), the quality
    gate (when given), ``contract.preprocess``."""
    try:
        obj = contract.load(value, field=contract.name)
        stats = None
        if statistics is not None:
            from polyfuse.monitor.statistics import statistics_of

            found = statistics_of(contract.kind, obj, statistics)
            stats = None if found is None else [float(v) for v in found]
        if gate is not None:
            verdict = gate(obj)
            if not verdict.ok:
                return Preprocessed(None, low_quality=verdict.reason, statistics=stats)
        x = contract.preprocess(obj)
    except PolyfuseError as exc:
        return Preprocessed(None, exc.message, exc.hint)
    return Preprocessed(x.numpy(), statistics=stats)
