"""Preprocessing of served inputs: a modality contract's ``load`` + ``preprocess``, in the
serving process or in a worker process of a pool (the contract travels as JSON)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from polyfuse.core.errors import PolyfuseError
from polyfuse.modalities.base import ModalityContract

#: Contracts a pool worker has parsed, by their JSON (a worker process keeps its own).
_WORKER_CONTRACTS: dict[str, ModalityContract] = {}


@dataclass(frozen=True)
class Preprocessed:
    """A worker's answer (picklable: arrays and strings, never exceptions)."""

    array: np.ndarray | None
    error: str | None = None
    hint: str | None = None


def worker_init() -> None:
    torch.set_num_threads(1)  # workers share the CPU with the encoders


def preprocess_in_worker(contract_json: str, value: bytes | str) -> Preprocessed:
    """``contract.load`` + ``preprocess`` in a pool worker; the contract travels as JSON."""
    contract = _WORKER_CONTRACTS.get(contract_json)
    if contract is None:
        from polyfuse.modalities import contract_from_dict

        contract = contract_from_dict(json.loads(contract_json))
        _WORKER_CONTRACTS[contract_json] = contract
    return preprocess_value(contract, value)


def preprocess_many_in_worker(contract_json: str, values: list[Any]) -> list[Preprocessed]:
    """`preprocess_in_worker` over several inputs in one pool call."""
    return [preprocess_in_worker(contract_json, v) for v in values]


def preprocess_value(contract: ModalityContract, value: Any) -> Preprocessed:
    try:
        x = contract.preprocess(contract.load(value, field=contract.name))
    except PolyfuseError as exc:
        return Preprocessed(None, exc.message, exc.hint)
    return Preprocessed(x.numpy())
