"""A learned sound/picture sync model (SyncNet-style), trained in the project.

Both streams go on one clock (``rate_hz``, 100 Hz by default): the sound as log-mel bands,
the picture as small grey frames and their differences, interpolated between frames
(`polyfuse.modalities.sync.on_clock`; gaps longer than ``gap_frames`` frame intervals are
masked, not invented). Two small temporal convolution stacks embed each clock step of each
stream (a receptive field of ``2 * layers * (kernel // 2) + 1`` steps, about 170 ms by
default) into one space. How well sound and picture agree at a lag is the mean cosine
similarity of the sound's embedding at ``t + lag`` and the picture's at ``t`` over the
valid overlap; the estimated offset is the lag of the highest agreement, refined between
clock steps by a parabola. Training (`polyfuse.train.sync.fit_sync`) is contrastive over
lags: for an in-sync clip, the agreement at lag 0 must beat the agreement at every shifted
lag (cross-entropy over the lag curve), so shifted pairs are the negatives.

Sign convention as in `polyfuse.modalities.sync`: ``offset_ms > 0`` is late sound.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyfuse.core.errors import ArtifactError, ConfigError, InvalidInputError
from polyfuse.modalities.sync import (
    DEFAULT_THRESHOLD_MS,
    SyncEstimate,
    audible,
    grey_frames,
    on_clock,
    peak,
)

#: Bump when the same settings would give different features or a different network.
SYNC_FORMAT = 1


@dataclass(frozen=True)
class SyncSettings:
    """Features and network of a sync model (saved with its weights).

    Attributes:
        rate_hz: the common clock.
        sample_rate: the sound is resampled to this before its log-mel bands.
        n_mels: log-mel bands of the sound.
        size: the picture's grey frames are resized to ``size x size``.
        dim: embedding size.
        kernel: temporal kernel of each layer (odd).
        layers: temporal layers per stream.
        max_offset_ms: the largest lag searched (and trained against) either way.
        gap_frames: frame gaps up to this many intervals are interpolated over.
        threshold_ms: offsets at or above it are flagged as out of sync.
    """

    rate_hz: float = 100.0
    sample_rate: int = 16_000
    n_mels: int = 32
    size: int = 16
    dim: int = 64
    kernel: int = 5
    layers: int = 4
    max_offset_ms: float = 500.0
    gap_frames: float = 2.0
    threshold_ms: float = DEFAULT_THRESHOLD_MS

    def __post_init__(self) -> None:
        if self.kernel % 2 == 0 or self.kernel < 1:
            raise ConfigError("kernel", f"must be odd and >= 1, got {self.kernel}")
        for key in ("rate_hz", "max_offset_ms", "dim", "size", "n_mels", "layers"):
            if getattr(self, key) <= 0:
                raise ConfigError(key, f"must be > 0, got {getattr(self, key)}")

    @property
    def max_lag(self) -> int:
        """The largest lag searched, in clock steps."""
        return round(self.max_offset_ms / 1000.0 * self.rate_hz)


@dataclass(frozen=True)
class SyncInputs:
    """One clip's streams on the clock: ``audio (N, n_mels)``, ``video (N, 2 * size**2)``,
    ``valid (N,)`` (clock steps the picture covers)."""

    audio: np.ndarray
    video: np.ndarray
    valid: np.ndarray


def sync_inputs(
    settings: SyncSettings,
    frames: np.ndarray,
    frame_times: np.ndarray,
    wave: np.ndarray,
    sample_rate: int,
) -> SyncInputs:
    """Put a clip's sound and picture on the model's clock (see the module docstring).

    Raises:
        InvalidInputError: frames and timestamps disagree, or the clip is too short.
    """
    f, t = grey_frames(frames, frame_times)
    mel = _log_mel(settings, np.asarray(wave, dtype=np.float32), sample_rate)
    n = len(mel)
    if n < 4 or len(f) < 2:
        raise InvalidInputError(
            "video", "the clip is too short to compare sound and picture", hint="use >= 0.5 s"
        )
    small = _resize(f, settings.size)
    small = (small - small.mean()) / (small.std() + 1e-6)
    diff = np.concatenate([np.zeros_like(small[:1]), np.diff(small, axis=0)])
    pictures = np.concatenate([small, diff], axis=1)
    clock = (np.arange(n) + 0.5) / settings.rate_hz
    interval = float(np.median(np.diff(t)))
    video = on_clock(t, pictures, clock, tolerance_s=settings.gap_frames * interval, name="video")
    return SyncInputs(mel, video.values.astype(np.float32), video.valid)


def _resize(frames: np.ndarray, size: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(frames))[:, None]
    out = F.interpolate(x, size=(size, size), mode="area")
    return out.reshape(len(frames), size * size).numpy()


def _log_mel(settings: SyncSettings, wave: np.ndarray, sample_rate: int) -> np.ndarray:
    from polyfuse.modalities.audio import mel_filterbank

    if wave.ndim == 2:
        wave = wave.mean(axis=0 if wave.shape[0] < wave.shape[1] else 1)
    if sample_rate != settings.sample_rate:
        from scipy.signal import resample_poly

        g = np.gcd(sample_rate, settings.sample_rate)
        wave = resample_poly(wave, settings.sample_rate // g, sample_rate // g).astype(np.float32)
    hop = round(settings.sample_rate / settings.rate_hz)
    n_fft = 1 << int(np.ceil(np.log2(2 * hop)))
    if len(wave) < n_fft:
        return np.zeros((0, settings.n_mels), np.float32)
    x = torch.from_numpy(np.ascontiguousarray(wave))
    spec = torch.stft(
        x, n_fft, hop, window=torch.hann_window(n_fft), center=False, return_complex=True
    )
    rate = settings.sample_rate
    fb = mel_filterbank(rate, n_fft, settings.n_mels, 20.0, rate / 2)
    mel: np.ndarray = torch.log(fb @ spec.abs().pow(2) + 1e-6).T.numpy()
    out: np.ndarray = ((mel - mel.mean()) / (mel.std() + 1e-6)).astype(np.float32)
    return out


class _Stream(nn.Module):
    """Per-step embeddings of one stream: a stack of temporal convolutions."""

    def __init__(self, features: int, dim: int, kernel: int, layers: int) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv1d(features, dim, 1)]
        for _ in range(layers):
            blocks += [nn.GELU(), nn.Conv1d(dim, dim, kernel, padding=kernel // 2)]
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, N, F)`` -> ``(B, N, D)`` unit vectors."""
        return F.normalize(self.net(x.transpose(1, 2)).transpose(1, 2), dim=-1)


class SyncNet(nn.Module):
    """The two streams' embedders and the agreement curve over lags."""

    def __init__(self, settings: SyncSettings) -> None:
        super().__init__()
        self.settings = settings
        s = settings
        self.audio = _Stream(s.n_mels, s.dim, s.kernel, s.layers)
        self.video = _Stream(2 * s.size * s.size, s.dim, s.kernel, s.layers)
        self.scale = nn.Parameter(torch.tensor(10.0))

    def curve(self, audio: Tensor, video: Tensor, valid: Tensor) -> Tensor:
        """Agreement at every lag ``-max_lag..max_lag``: ``(B, 2 * max_lag + 1)``.

        ``audio``/``video`` are ``(B, N, F)`` on one clock, ``valid`` ``(B, N)`` the steps
        both carry. Lags with too little overlap (under a quarter of the clip) get -inf.
        """
        a, v = self.audio(audio), self.video(video)
        k = self.settings.max_lag
        n = a.shape[1]
        # agreement of the sound at step i with the picture at step j, then the sound at
        # t + lag against the picture at t read off the diagonals: (B, lags, N)
        pairs = torch.bmm(a, v.transpose(1, 2)).reshape(a.shape[0], n * n)
        lags = torch.arange(-k, k + 1, device=a.device)[:, None]
        steps = torch.arange(n, device=a.device)[None, :]
        rows = steps + lags
        inside = (rows >= 0) & (rows < n)
        rows = rows.clamp(0, n - 1)
        sim = pairs[:, (rows * n + steps).reshape(-1)].reshape(a.shape[0], 2 * k + 1, n)
        ok = valid[:, rows] & valid[:, None, :] & inside
        count = ok.sum(-1)
        mean = (sim * ok).sum(-1) / count.clamp(min=1)
        enough = count >= (valid.sum(-1, keepdim=True) // 4).clamp(min=2)
        return torch.where(enough, mean, torch.full_like(mean, -torch.inf))


class LearnedSync:
    """A trained `SyncNet` at work: estimates, saving and loading.

    Args:
        net: the trained network (kept in eval mode).
        metrics: what training measured (saved alongside).
    """

    def __init__(self, net: SyncNet, metrics: dict[str, Any] | None = None) -> None:
        self.net = net.eval()
        self.settings = net.settings
        self.threshold_ms = net.settings.threshold_ms
        self.metrics = dict(metrics or {})

    def inputs(
        self, frames: np.ndarray, frame_times: np.ndarray, wave: np.ndarray, sample_rate: int
    ) -> SyncInputs:
        """The clip's streams on this model's clock."""
        return sync_inputs(self.settings, frames, frame_times, wave, sample_rate)

    @torch.no_grad()
    def estimate(
        self,
        frames: np.ndarray,
        frame_times: np.ndarray,
        wave: np.ndarray | None,
        sample_rate: int,
    ) -> SyncEstimate | None:
        """The offset of ``wave`` against ``frames``; ``None`` without sound or with a
        silent track."""
        if wave is None or not audible(wave):
            return None
        x = self.inputs(frames, frame_times, wave, sample_rate)
        return self.estimate_inputs(x)

    @torch.no_grad()
    def estimate_inputs(self, x: SyncInputs) -> SyncEstimate | None:
        """The offset from streams already on the clock."""
        curve = self.net.curve(
            torch.from_numpy(x.audio)[None],
            torch.from_numpy(x.video)[None],
            torch.from_numpy(x.valid)[None],
        )[0].numpy()
        lags_ms = np.arange(-self.settings.max_lag, self.settings.max_lag + 1) * (
            1000.0 / self.settings.rate_hz
        )
        found = peak(lags_ms, curve)
        if found is None:
            return None
        return SyncEstimate(found[0], found[1], self.settings.threshold_ms, "learned")

    def save(self, folder: str | Path) -> Path:
        """Write ``sync.json`` (format, settings, metrics) and ``sync.pt`` (weights)."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": SYNC_FORMAT,
            "settings": dataclasses.asdict(self.settings),
            "metrics": self.metrics,
        }
        (out / "sync.json").write_text(json.dumps(meta, indent=2) + "\n")
        torch.save(self.net.state_dict(), out / "sync.pt")
        return out

    @classmethod
    def load(cls, folder: str | Path) -> LearnedSync:
        """Read a model `save` wrote.

        Raises:
            ArtifactError: the folder holds no sync model, or one of another format.
        """
        path = Path(folder)
        meta_file = path / "sync.json"
        if not meta_file.is_file() or not (path / "sync.pt").is_file():
            raise ArtifactError(
                f"no sync model in '{path.name}'",
                hint="train one with polyfuse.train.sync.fit_sync and save it there",
            )
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != SYNC_FORMAT:
            raise ArtifactError(
                f"sync model format {meta.get('format')}, this polyfuse reads {SYNC_FORMAT}",
                hint="retrain the sync model with this version",
            )
        net = SyncNet(SyncSettings(**meta["settings"]))
        net.load_state_dict(torch.load(path / "sync.pt", weights_only=True))
        return cls(net, meta.get("metrics"))


def load_sync_method(model: str | Path | None) -> Any:
    """What estimates offsets: the signal baseline (`SignalSync`) when ``model`` is None,
    else the learned model saved in that folder (`LearnedSync.load`). Both have
    ``estimate(frames, frame_times, wave, sample_rate)`` and ``threshold_ms``."""
    if model is None:
        from polyfuse.modalities.sync import SignalSync

        return SignalSync()
    return LearnedSync.load(model)
