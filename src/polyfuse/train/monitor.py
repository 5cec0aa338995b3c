"""Per-modality loss monitoring: warn when one modality stalls while the others improve."""

from __future__ import annotations

from collections.abc import Mapping


class StallMonitor:
    """Tracks per-modality training losses epoch by epoch.

    A modality is *stalled* when its loss improved by less than ``tolerance``
    (relative) over the last ``window`` epochs while some other modality
    improved by more than twice that: the fusion is probably learning to ignore it.
    A loss already below ``converged`` times its first value has converged, not stalled.

    Args:
        window: epochs to look back.
        tolerance: relative improvement below which a loss counts as flat.
    """

    def __init__(self, window: int = 3, tolerance: float = 0.01, converged: float = 0.1) -> None:
        self.window = window
        self.tolerance = tolerance
        self.converged = converged
        self.history: dict[str, list[float]] = {}
        self._warned: set[str] = set()

    def update(self, losses: Mapping[str, float]) -> list[str]:
        """Record one epoch of losses; returns warnings for newly stalled modalities."""
        for m, v in losses.items():
            self.history.setdefault(m, []).append(v)
        if len(self.history) < 2:
            return []
        gains = {m: self._gain(h) for m, h in self.history.items() if len(h) > self.window}
        warnings = []
        for m, gain in gains.items():
            others = [g for n, g in gains.items() if n != m]
            done = self.history[m][-1] < self.converged * self.history[m][0]
            if gain < self.tolerance and not done and others and max(others) > 2 * self.tolerance:
                if m not in self._warned:
                    self._warned.add(m)
                    best = max(others)
                    warnings.append(
                        f"modality '{m}' loss stalled at {self.history[m][-1]:.4f} (improved "
                        f"{gain:.1%} in {self.window} epochs) while another improved {best:.1%}: "
                        f"the fusion may be ignoring '{m}'. Try a higher encoder_lr/adapter_lr or "
                        f"loss_weight for '{m}', or modality dropout on the others."
                    )
            elif gain >= self.tolerance:
                self._warned.discard(m)
        return warnings

    def _gain(self, history: list[float]) -> float:
        before, now = history[-1 - self.window], history[-1]
        return (before - now) / max(abs(before), 1e-12)

    def state_dict(self) -> dict[str, object]:
        """For checkpoints."""
        return {"history": self.history, "warned": sorted(self._warned)}

    def load_state_dict(self, state: Mapping[str, object]) -> None:
        """Restore from `state_dict`."""
        self.history = {k: list(v) for k, v in dict(state["history"]).items()}  # type: ignore[call-overload]
        self._warned = set(state["warned"])  # type: ignore[call-overload]
