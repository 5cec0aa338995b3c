"""Serving: an HTTP inference service over a trained artifact (see docs/serving.md)."""
