"""Training the learned sync model (`polyfuse.models.sync`) on in-sync clips.

Contrastive over lags: each training step crops a window of each clip, computes the
agreement curve of sound and picture over every lag within ``max_offset_ms``, and asks
(cross-entropy) for lag 0 to beat every shifted lag. Each window is shown shifted by a
random known lag (the sound's steps moved against the picture's; uniform over the searched
lags by default), with that lag as the target, so the model cannot learn a preference for
lag 0 instead of the agreement of the two streams.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from polyfuse.core.device import seed_everything
from polyfuse.core.errors import ConfigError
from polyfuse.core.progress import bar
from polyfuse.models.sync import LearnedSync, SyncInputs, SyncNet, SyncSettings, sync_inputs


@dataclass(frozen=True)
class SyncClip:
    """One in-sync clip: ``(T, H, W[, C])`` frames, their times (s), the sound and its rate."""

    frames: np.ndarray
    frame_times: np.ndarray
    wave: np.ndarray
    sample_rate: int


@dataclass(frozen=True)
class SyncTraining:
    """How to train a sync model.

    Attributes:
        epochs: passes over the clips.
        batch_size: windows per step.
        window_s: each window's length (clips shorter than it are padded and masked).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        shift_share: share of windows shown with a random known shift (the rest at lag
            0; 1.0 gives every lag the same prior).
        seed: seeds crops, shifts and initialisation.
    """

    epochs: int = 30
    batch_size: int = 16
    window_s: float = 2.0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    shift_share: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "window_s", "lr"):
            if getattr(self, key) <= 0:
                raise ConfigError(key, f"must be > 0, got {getattr(self, key)}")
        if not 0.0 <= self.shift_share <= 1.0:
            raise ConfigError("shift_share", f"must be in [0, 1], got {self.shift_share}")


def fit_sync(
    clips: Sequence[SyncClip | SyncInputs],
    settings: SyncSettings | None = None,
    training: SyncTraining | None = None,
    *,
    progress: bool = True,
) -> LearnedSync:
    """Train a sync model on in-sync clips (or their streams already on the clock).

    Raises:
        ConfigError: fewer than two clips.
    """
    settings = settings or SyncSettings()
    training = training or SyncTraining()
    if len(clips) < 2:
        raise ConfigError("clips", f"need at least 2 in-sync clips, got {len(clips)}")
    seed_everything(training.seed)
    rng = np.random.default_rng(training.seed)
    data = [
        c
        if isinstance(c, SyncInputs)
        else sync_inputs(settings, c.frames, c.frame_times, c.wave, c.sample_rate)
        for c in clips
    ]
    net = SyncNet(settings)
    opt = torch.optim.AdamW(net.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    length = round(training.window_s * settings.rate_hz)
    k = settings.max_lag
    steps = max(1, len(data) // training.batch_size)
    losses: list[float] = []
    hits: list[float] = []
    net.train()
    for _ in bar(range(training.epochs), enabled=progress, desc="sync model", unit="epoch"):
        order = rng.permutation(len(data))
        epoch_loss, epoch_hit = 0.0, 0.0
        for step in range(steps):
            chosen = order[step * training.batch_size : (step + 1) * training.batch_size]
            audio, video, valid, target = _batch(
                [data[i] for i in chosen], length, k, training.shift_share, rng
            )
            curve = net.curve(audio, video, valid) * net.scale
            loss = F.cross_entropy(curve, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            epoch_loss += float(loss.detach())
            epoch_hit += float((curve.detach().argmax(1) == target).float().mean())
        losses.append(epoch_loss / steps)
        hits.append(epoch_hit / steps)
    metrics: dict[str, Any] = {
        "clips": len(data),
        "epochs": training.epochs,
        "final_loss": round(losses[-1], 4),
        "final_lag_accuracy": round(hits[-1], 4),
    }
    return LearnedSync(net, metrics)


def _batch(
    items: Sequence[SyncInputs], length: int, k: int, shift_share: float, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windows of ``length`` steps, padded; some with the sound shifted by a known lag."""
    n_mels = items[0].audio.shape[1]
    feats = items[0].video.shape[1]
    audio = np.zeros((len(items), length, n_mels), np.float32)
    video = np.zeros((len(items), length, feats), np.float32)
    valid = np.zeros((len(items), length), bool)
    target = np.full(len(items), k)
    for b, x in enumerate(items):
        n = len(x.audio)
        lag = int(rng.integers(-k, k + 1)) if rng.random() < shift_share else 0
        # the sound comes `lag` steps late: rolled[t] = audio[t - lag]
        a = np.roll(x.audio, lag, axis=0)
        ok = x.valid.copy()
        if lag > 0:
            ok[:lag] = False
        elif lag < 0:
            ok[lag:] = False
        start = int(rng.integers(0, max(1, n - length + 1)))
        m = min(length, n - start)
        audio[b, :m] = a[start : start + m]
        video[b, :m] = x.video[start : start + m]
        valid[b, :m] = ok[start : start + m]
        target[b] = k + lag
    return (
        torch.from_numpy(audio),
        torch.from_numpy(video),
        torch.from_numpy(valid),
        torch.from_numpy(target),
    )
