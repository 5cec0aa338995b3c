"""polyfuse: production multimodal AI for text, image, audio and time series.

Heavy submodules load lazily, so ``import polyfuse`` (and ``polyfuse --help``) is instant.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Config": "polyfuse.config",
    "Predictor": "polyfuse.predict",
    "Prediction": "polyfuse.predict",
    "Trainer": "polyfuse.train",
    "train": "polyfuse.train",
    "evaluate": "polyfuse.evaluation",
    "load_artifact": "polyfuse.artifact",
    "Manifest": "polyfuse.data.manifest",
    "PolyfuseError": "polyfuse.errors",
}

if TYPE_CHECKING:
    from polyfuse.artifact import load_artifact
    from polyfuse.config import Config
    from polyfuse.data.manifest import Manifest
    from polyfuse.errors import PolyfuseError
    from polyfuse.evaluation import evaluate
    from polyfuse.predict import Prediction, Predictor
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
