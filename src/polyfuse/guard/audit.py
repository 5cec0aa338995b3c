"""Append-only JSONL audit log of firewall decisions, without the sensitive content.

Each line records when, which input (its SHA-256, size, detected type and the path or
a caller-given id), the policy digest, the action, and the findings as `Finding.to_dict`
gives them (type, score, location, detector, masked snippet): never the raw text, pixels
or audio, so the log itself holds no PII.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from pathlib import Path
from typing import Any

from polyfuse import __version__
from polyfuse.guard.findings import FINDING_VERSION

_LOCK = threading.Lock()


class AuditLog:
    """Appends one JSON object per decision to ``path`` (created with its folder).

    Lines are written whole under a lock with ``O_APPEND``, so threads of one process
    and several processes appending to the same file do not interleave lines.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` with a timestamp and versions."""
        line = {
            "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"),
            "polyfuse": __version__,
            "finding_version": FINDING_VERSION,
            **record,
        }
        data = (json.dumps(line, sort_keys=False, default=str) + "\n").encode()
        with _LOCK:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
