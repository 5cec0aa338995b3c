"""Small trainable encoders for every modality."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.encoders.base import Encoder, EncoderOutput, lengths_to_mask
from polyfuse.modalities.base import ModalityContract


def _conv_block(cin: int, cout: int, dims: int) -> nn.Sequential:
    conv = nn.Conv2d if dims == 2 else nn.Conv1d
    norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return nn.Sequential(
        conv(cin, cout, 3, padding=1, bias=False),
        norm(cout),
        nn.ReLU(inplace=True),
        conv(cout, cout, 3, padding=1, bias=False),
        norm(cout),
        nn.ReLU(inplace=True),
    )


def random_shift(images: Tensor, fraction: float) -> Tensor:
    """Translate each image by a random offset of up to ``fraction`` of its size
    (border pixels repeat): ``(B, C, H, W) -> (B, C, H, W)``."""
    batch = images.shape[0]
    offsets = (torch.rand(batch, 2, device=images.device) * 2 - 1) * fraction * 2  # grid units
    theta = torch.zeros(batch, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = offsets.to(images.dtype)
    grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return nn.functional.grid_sample(images, grid, padding_mode="border", align_corners=False)


def spec_augment(spec: Tensor, freq_mask: int, time_mask: int, lengths: Tensor | None) -> Tensor:
    """SpecAugment: zero one random band of up to ``freq_mask`` mel bins and one random
    span of up to ``time_mask`` frames per sample: ``(B, F, T) -> (B, F, T)``."""
    batch, bins, steps = spec.shape
    device = spec.device
    valid = (
        lengths.to(device) if lengths is not None else torch.full((batch,), steps, device=device)
    )
    keep = torch.ones_like(spec, dtype=torch.bool)
    for size, axis_len, axis in (
        (freq_mask, torch.full_like(valid, bins), 1),
        (time_mask, valid, 2),
    ):
        if size <= 0:
            continue
        width = (torch.rand(batch, device=device) * (size + 1)).long()
        start = (torch.rand(batch, device=device) * (axis_len - width).clamp_min(1)).long()
        pos = torch.arange(bins if axis == 1 else steps, device=device)[None]
        band = (pos >= start[:, None]) & (pos < (start + width)[:, None])  # (B, F) or (B, T)
        keep &= ~(band[:, :, None] if axis == 1 else band[:, None, :])
    return spec * keep


class ImageCNN(Encoder):
    """Conv-BN-ReLU stages with 2x max-pooling; tokens are the final feature-map cells and
    the pooled vector is a learned projection of the whole map (where a stroke is matters
    for small images; a global average would throw that away).

    Args:
        widths: channels of each stage; the last is ``out_dim``.
        dropout: spatial dropout after each stage.
        shift: training-time augmentation: random translation of up to this
            fraction of the image size (0 disables).
    """

    kind = "image"

    def __init__(
        self,
        contract: ModalityContract,
        widths: tuple[int, ...] | list[int] = (32, 64, 128),
        dropout: float = 0.1,
        shift: float = 0.0,
    ) -> None:
        super().__init__(contract, widths=list(widths), dropout=dropout, shift=shift)
        self.shift = shift
        channels = int(getattr(contract, "channels", 3))
        stages: list[nn.Module] = []
        for cout in widths:
            stages += [_conv_block(channels, cout, 2), nn.MaxPool2d(2), nn.Dropout2d(dropout)]
            channels = cout
        self.body = nn.Sequential(*stages)
        self.out_dim = channels
        height, width = getattr(contract, "size", (32, 32))
        with torch.no_grad():
            cells = self.body(torch.zeros(1, int(getattr(contract, "channels", 3)), height, width))
        self.project = nn.Linear(cells[0, 0].numel() * channels, channels)

    def pool(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """Learned projection of all cells: ``(B, h*w, D) -> (B, D)``."""
        out: Tensor = self.project(tokens.flatten(1))
        return out

    def forward(self, data: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``(B, C, H, W)`` -> tokens ``(B, h*w, D)``."""
        if self.training and self.shift > 0:
            data = random_shift(data, self.shift)
        fmap = self.body(data)  # (B, D, h, w)
        tokens = fmap.flatten(2).transpose(1, 2)  # (B, h*w, D)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return EncoderOutput(tokens, mask, self.pool(tokens, mask))


class AudioCNN(Encoder):
    """2-D CNN over the log-mel spectrogram; each time step's channels x remaining mel bands
    are projected to one token (spectral shape is kept), pooled by a masked mean over time.

    Args:
        widths: channels of each stage (each halves frequency and time).
        dropout: dropout after each stage.
        freq_mask: training-time SpecAugment: mask up to this many mel bands (0 disables).
        time_mask: training-time SpecAugment: mask up to this many frames (0 disables).
    """

    kind = "audio"

    def __init__(
        self,
        contract: ModalityContract,
        widths: tuple[int, ...] | list[int] = (32, 64, 128),
        dropout: float = 0.1,
        freq_mask: int = 0,
        time_mask: int = 0,
    ) -> None:
        super().__init__(
            contract, widths=list(widths), dropout=dropout, freq_mask=freq_mask, time_mask=time_mask
        )
        self.freq_mask, self.time_mask = freq_mask, time_mask
        channels = 1
        stages: list[nn.Module] = []
        for cout in widths:
            stages += [
                _conv_block(channels, cout, 2),
                nn.MaxPool2d(2, ceil_mode=True),
                nn.Dropout2d(dropout),
            ]
            channels = cout
        self.body = nn.Sequential(*stages)
        self.downsample = 2 ** len(widths)
        bands = int(getattr(contract, "n_mels", 64))
        for _ in widths:
            bands = -(-bands // 2)
        self.project = nn.Linear(channels * bands, channels)
        self.out_dim = channels

    def forward(self, data: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``(B, n_mels, T)`` -> tokens ``(B, ceil(T / 2^stages), D)``."""
        if self.training and (self.freq_mask or self.time_mask):
            data = spec_augment(data, self.freq_mask, self.time_mask, lengths)
        fmap = self.body(data.unsqueeze(1))  # (B, D, mels', T')
        tokens = self.project(fmap.permute(0, 3, 1, 2).flatten(2))  # (B, T', D)
        if lengths is not None:
            lengths = torch.div(
                lengths + self.downsample - 1, self.downsample, rounding_mode="floor"
            )
        mask = lengths_to_mask(lengths, tokens.shape[0], tokens.shape[1], tokens.device)
        return EncoderOutput(tokens, mask, self.pool(tokens, mask))


class TimeSeriesCNN(Encoder):
    """1-D residual CNN over time (channels of the series are input channels).

    Args:
        width: hidden channels; ``out_dim``.
        depth: number of conv blocks; every other block halves time.
        dropout: dropout between blocks.
    """

    kind = "timeseries"

    def __init__(
        self, contract: ModalityContract, width: int = 64, depth: int = 3, dropout: float = 0.1
    ) -> None:
        super().__init__(contract, width=width, depth=depth, dropout=dropout)
        channels = int(getattr(contract, "channels", None) or 1)
        self.stem = nn.Conv1d(channels, width, 5, padding=2)
        self.blocks = nn.ModuleList(_conv_block(width, width, 1) for _ in range(depth))
        self.pools = [i % 2 == 1 for i in range(depth)]
        self.dropout = nn.Dropout(dropout)
        self.out_dim = width

    def forward(self, data: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``(B, T, C)`` -> tokens ``(B, T', D)``."""
        x = self.stem(data.transpose(1, 2))  # (B, D, T)
        for block, pool in zip(self.blocks, self.pools, strict=True):
            x = self.dropout(x + block(x))
            if pool and x.shape[-1] > 1:
                x = nn.functional.max_pool1d(x, 2, ceil_mode=True)
                if lengths is not None:
                    lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
        tokens = x.transpose(1, 2)  # (B, T', D)
        mask = lengths_to_mask(lengths, tokens.shape[0], tokens.shape[1], tokens.device)
        return EncoderOutput(tokens, mask, self.pool(tokens, mask))


class TimeSeriesGRU(Encoder):
    """Bidirectional GRU over time; tokens are the per-step outputs.

    Args:
        hidden: hidden size per direction (``out_dim = 2 * hidden``).
        layers: stacked GRU layers.
        dropout: dropout between layers.
    """

    kind = "timeseries"

    def __init__(
        self, contract: ModalityContract, hidden: int = 64, layers: int = 1, dropout: float = 0.0
    ) -> None:
        super().__init__(contract, hidden=hidden, layers=layers, dropout=dropout)
        channels = int(getattr(contract, "channels", None) or 1)
        self.gru = nn.GRU(
            channels,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.out_dim = 2 * hidden

    def forward(self, data: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``(B, T, C)`` -> tokens ``(B, T, 2 * hidden)``."""
        steps = data.shape[1]
        if lengths is not None:
            packed = nn.utils.rnn.pack_padded_sequence(
                data, lengths.cpu().clamp_min(1), batch_first=True, enforce_sorted=False
            )
            out, _ = self.gru(packed)
            tokens, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=steps)
        else:
            tokens, _ = self.gru(data)  # (B, T, 2H)
        mask = lengths_to_mask(lengths, tokens.shape[0], steps, tokens.device)
        return EncoderOutput(tokens, mask, self.pool(tokens, mask))


class TextTransformer(Encoder):
    """Token embedding + a small transformer encoder (``layers=0``: a bag of embeddings).

    Args:
        width: embedding size; ``out_dim``.
        layers: transformer layers.
        heads: attention heads.
        dropout: dropout in embeddings and layers.
        max_positions: learned positions (sequences longer than this are cut).
    """

    kind = "text"

    def __init__(
        self,
        contract: ModalityContract,
        width: int = 128,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        max_positions: int = 512,
    ) -> None:
        super().__init__(
            contract,
            width=width,
            layers=layers,
            heads=heads,
            dropout=dropout,
            max_positions=max_positions,
        )
        vocab = int(getattr(contract, "vocab_size", 32768))
        self.embed = nn.Embedding(vocab, width, padding_idx=0)
        self.positions = nn.Embedding(max_positions, width)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout, batch_first=True, norm_first=True
        )
        self.layers = (
            nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers else None
        )
        self.max_positions = max_positions
        self.out_dim = width

    def forward(self, data: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``(B, L)`` ids -> tokens ``(B, L, D)``."""
        data = data[:, : self.max_positions]
        steps = data.shape[1]
        if lengths is not None:
            lengths = lengths.clamp_max(self.max_positions)
        mask = lengths_to_mask(lengths, data.shape[0], steps, data.device)
        pos = torch.arange(steps, device=data.device)
        x = self.dropout(self.embed(data) + self.positions(pos)[None])  # (B, L, D)
        if self.layers is not None:
            x = self.layers(x, src_key_padding_mask=~mask)
        return EncoderOutput(x, mask, self.pool(x, mask))
