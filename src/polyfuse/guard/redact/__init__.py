"""Redaction: masking findings in text, images, audio and documents."""
