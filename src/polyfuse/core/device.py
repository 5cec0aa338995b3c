"""Device, precision and seeding helpers shared by training, evaluation and prediction."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import numpy as np
import torch

from polyfuse.core.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError("train.device", f"unknown device '{name}'") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "train.device",
            "CUDA was requested but is not available",
            hint="use device: auto or cpu",
        )
    return device


def use_bf16(device: torch.device, precision: str) -> bool:
    """Whether to autocast to bfloat16: forced by ``bf16``; ``auto`` only on CUDA with bf16
    support (CPU bf16 autocast is slower than fp32 on most CPUs)."""
    if precision == "bf16":
        return True
    if precision == "auto":
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return False


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """Autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    if use_bf16(device, precision):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """All RNG states, for checkpoints."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states saved by `rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
