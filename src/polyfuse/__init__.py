"""polyfuse: production multimodal AI for text, image, audio and time series.

Heavy submodules load lazily, so ``import polyfuse`` (and ``polyfuse --help``) is instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Config": "polyfuse.core.config",
    "Predictor": "polyfuse.inference.predict",
    "Prediction": "polyfuse.inference.predict",
    "Trainer": "polyfuse.train",
    "train": "polyfuse.train",
    "evaluate": "polyfuse.evaluation",
    "load_artifact": "polyfuse.artifacts.classifier",
    "Manifest": "polyfuse.data.manifest",
    "PolyfuseError": "polyfuse.core.errors",
}

if TYPE_CHECKING:
    from polyfuse.artifacts.classifier import load_artifact
    from polyfuse.core.config import Config
    from polyfuse.core.errors import PolyfuseError
    from polyfuse.data.manifest import Manifest
    from polyfuse.evaluation import evaluate
    from polyfuse.inference.predict import Prediction, Predictor
    from polyfuse.train import Trainer, train


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'polyfuse' has no attribute {name!r}")


__all__ = [
    "Config",
    "Manifest",
    "PolyfuseError",
    "Prediction",
    "Predictor",
    "Trainer",
    "__version__",
    "evaluate",
    "load_artifact",
    "train",
]
