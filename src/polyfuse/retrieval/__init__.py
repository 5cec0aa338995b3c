"""Shared embedding space: contrastive alignment losses and cross-modal retrieval metrics."""

from polyfuse.retrieval.losses import info_nce
from polyfuse.retrieval.metrics import querybank_normalise, retrieval_metrics

__all__ = ["info_nce", "querybank_normalise", "retrieval_metrics"]
