"""What the service hands back: never a server file path, and every text of an answer
under the firewall policy's ``outputs`` section.

Server paths: an answer's strings and every error (message, hint, details) pass
`scrub`: an absolute path (``/srv/data/cat.jpg``, ``file:///...``, ``C:\\data\\cat.jpg``)
becomes its file name (``cat.jpg``), inside a longer text too. The service's own routes
(``/v1/...``, ``/v2/...``, ``/docs`` ...) and URLs (``sqlite:///...``, ``http://...``)
are left as they are. This runs with or without a firewall.

Texts: the firewall scans an answer's strings (`polyfuse.guard.outputs.scan_answer`);
`LabelNames` holds the public names of a classifier's labels, scanned once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from polyfuse.guard.redact.text import redact_text

if TYPE_CHECKING:
    from polyfuse.guard.outputs import OutputScan

#: First path segments of this server's own routes: never taken for file paths.
ROUTE_ROOTS = frozenset(
    {"v1", "v2", "docs", "redoc", "metrics", "healthz", "readyz", "web", "review", "openapi.json"}
)

_SEGMENT = r"[^\s/\\'\"`<>|:;,()\[\]{}*?]+"
#: A file:// URL, an absolute POSIX path or one under ``~`` (not inside a word, a URL or
#: a relative path), or a Windows drive path.
_PATH = re.compile(
    rf"file://(?:/{_SEGMENT})+/?"
    rf"|(?<![\w.:/~\\-])~?(?:/{_SEGMENT})+/?"
    rf"|(?<![\w])[A-Za-z]:[\\/](?:{_SEGMENT}[\\/]?)*"
)


def public_path(path: str) -> str:
    """The file name of an absolute path (what an answer may show of it)."""
    parts = [p for p in re.split(r"[\\/]+", path.removeprefix("file://")) if p]
    if len(parts) == 1 and parts[0].endswith(":"):  # a bare drive, "C:\\"
        return ""
    return parts[-1] if parts else ""


def scrub_paths(text: str) -> str:
    """``text`` with every absolute server path replaced by its file name (routes of
    this server kept)."""
    if "/" not in text and "\\" not in text:  # the common case, without the regex
        return text
    return _PATH.sub(_public_match, text)


def _public_match(match: re.Match[str]) -> str:
    found = match.group()
    if found.startswith("/") and found[1:].split("/", 1)[0] in ROUTE_ROOTS:
        return found
    return public_path(found)


def scrub(value: Any) -> Any:
    """``value`` (JSON: dicts, lists, strings, numbers) with `scrub_paths` applied to
    every string, dict keys included."""
    if isinstance(value, str):
        return scrub_paths(value)
    if isinstance(value, Mapping):
        return {scrub_paths(str(k)): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def blocked_as_redacted(report: dict[str, Any]) -> dict[str, Any]:
    """An output scan's report (`OutputScan.to_dict`) with ``block`` counted as
    ``redact``: what `LabelNames` does with a label the policy blocks."""
    findings = [
        {**f, "action": "redact" if f["action"] == "block" else f["action"]}
        for f in report["findings"]
    ]
    redacted: dict[str, int] = {}
    for f in findings:
        if f["action"] == "redact":
            redacted[f["type"]] = redacted.get(f["type"], 0) + 1
    action = "redact" if report["action"] == "block" else report["action"]
    return {"action": action, "redacted": redacted, "findings": findings}


class LabelNames:
    """A classifier's labels as answers show them: the label itself, or its redacted
    text when the output policy redacts (or blocks: a label is the model's vocabulary,
    so blocking it would refuse every answer) something in it, made unique with ``#2``
    ... so probabilities keep one key per label.

    Args:
        labels: the model's labels, in order.
        scan: the firewall's output scan of ``labels`` with the fields `fields` names.
    """

    def __init__(self, labels: Sequence[str], scan: OutputScan) -> None:
        self.scan = blocked_as_redacted(scan.to_dict())
        self.names: dict[str, str] = {}
        taken: set[str] = set()
        for label, where in zip(labels, self.fields(labels), strict=True):
            spans = [
                f
                for f, a in scan.findings
                if a in ("redact", "block") and f.location.source == f"output:{where}"
            ]
            public = redact_text(label, spans)
            name, n = public, 1
            while name in taken:
                n += 1
                name = f"{public} #{n}"
            taken.add(name)
            if name != label:
                self.names[label] = name

    @staticmethod
    def fields(labels: Sequence[str]) -> list[str]:
        """The field of each label in the scan (``labels[0]`` ...)."""
        return [f"labels[{i}]" for i in range(len(labels))]

    def name(self, label: Any) -> Any:
        """The public name of a label (a list of labels for a multi-label answer)."""
        if not self.names:
            return label
        if isinstance(label, list | tuple):
            return [self.names.get(str(x), x) for x in label]
        return self.names.get(str(label), label)

    def keys(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` keyed by public label names."""
        if not self.names:
            return dict(values)
        return {self.names.get(k, k): v for k, v in values.items()}


__all__ = [
    "LabelNames",
    "blocked_as_redacted",
    "public_path",
    "scrub",
    "scrub_paths",
]
