"""Training: `Trainer`, the one-call `train`, and `TRAINERS` (task -> trainer)."""

from polyfuse.train.dropout import modality_dropout
from polyfuse.train.monitor import StallMonitor
from polyfuse.train.tasks import TRAINERS, TrainRequest, TrainSummary, trainer_for
from polyfuse.train.trainer import Trainer, TrainResult, train

__all__ = [
    "TRAINERS",
    "StallMonitor",
    "TrainRequest",
    "TrainResult",
    "TrainSummary",
    "Trainer",
    "modality_dropout",
    "train",
    "trainer_for",
]
