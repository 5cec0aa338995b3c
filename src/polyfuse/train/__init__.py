"""Training: `Trainer` and the one-call `train`."""

from polyfuse.train.dropout import modality_dropout
from polyfuse.train.monitor import StallMonitor
from polyfuse.train.trainer import Trainer, TrainResult, train

__all__ = ["StallMonitor", "TrainResult", "Trainer", "modality_dropout", "train"]
