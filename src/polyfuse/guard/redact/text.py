"""Text redaction (image and audio redaction live beside their scanners)."""

from __future__ import annotations

from collections.abc import Sequence

from polyfuse.guard.findings import Finding


def redact_text(text: str, findings: Sequence[Finding], style: str = "type") -> str:
    """``text`` with every finding's span replaced.

    Args:
        style: ``type`` writes ``<US_SSN>``; ``mask`` writes ``*`` for each letter or
            digit and keeps separators (the length stays the same).

    Overlapping spans are merged (the earliest finding's type names the merged span).
    """
    spans = sorted(
        (f.location.span[0], f.location.span[1], f.type)
        for f in findings
        if f.location.span is not None
    )
    merged: list[tuple[int, int, str]] = []
    for s, e, t in spans:
        if merged and s < merged[-1][1]:
            ps, pe, pt = merged[-1]
            merged[-1] = (ps, max(pe, e), pt)
        else:
            merged.append((s, e, t))
    out: list[str] = []
    pos = 0
    for start, end, t in merged:
        out.append(text[pos:start])
        piece = text[start:end]
        if style == "mask":
            out.append("".join("*" if c.isalnum() else c for c in piece))
        else:
            out.append(f"<{t}>")
        pos = end
    out.append(text[pos:])
    return "".join(out)
