"""Multimodal firewall: one PII and prompt-injection policy for text, images and audio.

Heavy dependencies (Presidio, spaCy, rapidocr, faster-whisper) are imported lazily by the
scanners that need them; ``pip install 'polyfuse[guard]'`` installs them.
"""

from polyfuse.guard.findings import ACTIONS, FINDING_VERSION, Finding, Location, TextDetector, mask

__all__ = ["ACTIONS", "FINDING_VERSION", "Finding", "Location", "TextDetector", "mask"]
