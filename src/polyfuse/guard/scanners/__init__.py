"""Scanners: one per modality, running readers and detectors over an input."""
