"""Saved models on disk: one folder format for every kind of artifact."""
