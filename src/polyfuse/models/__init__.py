"""Compositions of encoders, adapters, fusion and heads: the multimodal classifier, the
alignment model and the captioner, and the builder that makes them from a config."""
