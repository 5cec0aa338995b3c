"""Prediction heads, adapters into the shared space, and tasks (labels, loss, decoding)."""
