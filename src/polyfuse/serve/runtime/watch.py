"""Drift monitoring of a serving runtime: the glue between `ModelRuntime` and
`polyfuse.monitor.live.LiveMonitor`.

`Watch.load` finds the artifact's reference profile (``monitor/reference``), builds the
live monitor with the runtime's settings, and hands the preprocessing stage what it needs
to compute input statistics (the audio sample rate, the text vocabulary). Per answered
request, `Watch.record` turns the stages' statistics and embeddings and the fusion's
outputs into a `MonitorRecord` (statistics and sketches, never raw content) and feeds it
to the monitor; `Watch.hidden` says which modalities are quarantined. Above
``monitor_rate`` requests per second only that many are monitored (`Watch.sample`): the
input statistics and the window assessments cost the same per monitored request however
cheap the model is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polyfuse.artifacts.classifier import Artifact
from polyfuse.core.errors import PolyfuseError
from polyfuse.monitor.live import LiveMonitor, MonitorRecord, QuarantinePolicy
from polyfuse.monitor.profile import PROFILE_DIR, ReferenceProfile
from polyfuse.serve.runtime.settings import RuntimeConfig

log = logging.getLogger("polyfuse.serve.runtime.watch")


class Watch:
    """The runtime's live drift monitor (see the module docstring).

    Args:
        live: the monitor.
        contexts: modality -> statistics context for the preprocessing stage.
    """

    def __init__(
        self, live: LiveMonitor, contexts: dict[str, dict[str, Any]], rate: float = 0.0
    ) -> None:
        self.live = live
        self.contexts = contexts
        self.rate = rate
        self._tokens = float(live.window)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def sample(self) -> bool:
        """Whether to monitor the next request: all of them up to ``rate`` per second
        (a token bucket holding one window), a share of them above it (0: all)."""
        if self.rate <= 0:
            return True
        with self._lock:
            now = time.monotonic()
            self._tokens = min(
                float(self.live.window), self._tokens + (now - self._last) * self.rate
            )
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    @classmethod
    def load(cls, artifact: Artifact, config: RuntimeConfig) -> Watch | None:
        """The watch of a served artifact, or None when monitoring is off, the artifact is
        not a classifier, or it holds no reference profile (logged)."""
        if (
            not config.monitor
            or artifact.path is None
            or artifact.config.task
            not in (
                "multiclass",
                "multilabel",
            )
        ):
            return None
        folder = Path(artifact.path) / PROFILE_DIR
        if not folder.is_dir():
            log.info("no reference profile in %s: drift monitoring off", artifact.path)
            return None
        try:
            profile = ReferenceProfile.load(folder)
        except PolyfuseError as exc:
            log.warning("drift monitoring off: %s", exc)
            return None
        policy = QuarantinePolicy(enabled=config.quarantine, windows=config.quarantine_windows)
        live = LiveMonitor(
            profile,
            window=config.monitor_window,
            alpha=config.monitor_alpha,
            policy=policy,
            isolate=config.monitor_process,
        )
        contexts = {
            m: {
                "sample_rate": int(getattr(c, "sample_rate", 16000)),
                "vocab": profile.vocab.get(m, frozenset()),
            }
            for m, c in artifact.contracts.items()
        }
        log.info(
            "drift monitoring on: windows of %d requests, quarantine %s",
            config.monitor_window,
            "on" if config.quarantine else "off",
        )
        return cls(live, contexts, rate=config.monitor_rate)

    def hidden(self) -> frozenset[str]:
        """Modalities the fusion must not see now (quarantined)."""
        return self.live.quarantined()

    def record(
        self,
        request_id: str,
        probs: list[float],
        statistics: Mapping[str, list[float] | None],
        pooled: Mapping[str, Any],
        unimodal: Mapping[str, list[float]] | None,
        without: Mapping[str, list[float]] | None,
    ) -> MonitorRecord:
        """Feed one answered request to the monitor; returns its record (the request log's
        ``monitor`` field)."""
        record = MonitorRecord(
            request_id,
            list(probs),
            {m: list(v) for m, v in statistics.items() if v is not None},
            {m: self.live.sketch(m, v) for m, v in pooled.items()},
            dict(unimodal or {}),
            dict(without or {}),
        )
        self.live.record_request(record)
        return record
