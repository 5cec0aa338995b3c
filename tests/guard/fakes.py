"""A regex text detector: the test boundary for the guard's orchestration tests."""

from __future__ import annotations

import re

from polyfuse.guard.findings import Finding, Location, TextDetector, mask


class RegexDetector(TextDetector):
    """Finds ``pattern`` and reports it as ``type_`` with a fixed score."""

    name = "test.regex"
    version = "1"

    def __init__(self, pattern: str, type_: str, score: float = 0.9) -> None:
        self.pattern = re.compile(pattern)
        self.type = type_
        self.score = score

    def detect(self, text: str, *, source: str = "text") -> list[Finding]:
        return [
            Finding(
                self.type,
                self.score,
                "text",
                Location(span=m.span(), source=source),
                self.name,
                self.version,
                mask(m.group()),
                "test pattern",
                m.group(),
            )
            for m in self.pattern.finditer(text)
        ]
