"""Frozen pretrained encoders: EfficientNet-Lite0 (images), MiniLM or any BERT-like model (text),
the Whisper base encoder (speech).

Weights come from `polyfuse.core.weights.resolve`: a local path, a package that
ships them (offline), or the Hugging Face hub. They are frozen by default and
their outputs are cached; ``trainable: true`` fine-tunes them instead.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyfuse.core.errors import ConfigError, DependencyError
from polyfuse.core.weights import resolve, weights_digest
from polyfuse.encoders.base import Encoder, EncoderOutput, lengths_to_mask, masked_mean
from polyfuse.modalities.audio import WHISPER_FRONT_END
from polyfuse.modalities.base import ModalityContract

#: EfficientNet-Lite expects RGB 224x224 scaled as (x - 127.5) / 128.
_EFFNET_MEAN = (127.5 / 255.0,)
_EFFNET_STD = (128.0 / 255.0,)


class EfficientNetLite0(Encoder):
    """EfficientNet-Lite0 (ImageNet-1k): 7x7 spatial tokens of 1280-d at 224x224.

    Args:
        weights: model name or path of the ``.pth`` weights.
        trainable: fine-tune instead of freezing (disables the feature cache).
    """

    kind = "image"
    pretrained = True

    def __init__(
        self,
        contract: ModalityContract,
        weights: str = "efficientnet-lite0",
        trainable: bool = False,
    ) -> None:
        super().__init__(contract, weights=weights, trainable=trainable)
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise DependencyError(
                "efficientnet-lite-pytorch", "the efficientnet_lite0 encoder", "pretrained"
            ) from exc
        self._weights_path = resolve(weights)
        net = EfficientNet.from_name("efficientnet-lite0")
        state = torch.load(self._weights_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        del net._fc, net._dropout, net._avg_pooling  # classification layers are not used
        self.net = net
        self.out_dim = 1280
        if not trainable:
            self.freeze()

    @classmethod
    def contract_defaults(cls, **params: Any) -> dict[str, Any]:
        """RGB 224x224, normalised as the weights were trained."""
        return {
            "size": [224, 224],
            "channels": 3,
            "mean": list(_EFFNET_MEAN),
            "std": list(_EFFNET_STD),
        }

    def forward(self, data: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``(B, 3, H, W)`` -> tokens ``(B, h*w, 1280)`` (7x7 at 224x224)."""
        if data.shape[1] == 1:
            data = data.expand(-1, 3, -1, -1)
        fmap = self.net.extract_features(data)  # (B, 1280, h, w)
        tokens = fmap.flatten(2).transpose(1, 2)  # (B, h*w, 1280)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return EncoderOutput(tokens, mask, self.pool(tokens, mask))

    def weights_digest(self) -> str:
        """sha256 of the weights file."""
        return weights_digest(Path(self._weights_path))


class HFTextEncoder(Encoder):
    """A BERT-like Hugging Face model; tokens are last hidden states, pooled is their
    masked mean, L2-normalised (the sentence-transformers recipe of all-MiniLM-L6-v2).

    Args:
        model: model name or folder (default: all-MiniLM-L6-v2, bundled offline).
        trainable: fine-tune instead of freezing.
        normalize: L2-normalise the pooled vector.
    """

    kind = "text"
    pretrained = True

    def __init__(
        self,
        contract: ModalityContract,
        model: str = "sentence-transformers/all-MiniLM-L6-v2",
        trainable: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__(contract, model=model, trainable=trainable, normalize=normalize)
        try:
            from transformers import AutoModel
        except ImportError as exc:
            raise DependencyError(
                "transformers", f"the text encoder '{model}'", "pretrained"
            ) from exc
        from transformers.utils import logging as hf_logging

        self._model_dir = resolve(model)
        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a bar per model load is noise in our logs
        try:
            self.net = AutoModel.from_pretrained(str(self._model_dir))
        finally:
            if shown:
                hf_logging.enable_progress_bar()
        self.normalize = normalize
        self.out_dim = int(self.net.config.hidden_size)
        if not trainable:
            self.freeze()

    @classmethod
    def contract_defaults(cls, **params: Any) -> dict[str, Any]:
        """The model's own tokenizer."""
        model = params.get("model", "sentence-transformers/all-MiniLM-L6-v2")
        return {"tokenizer": "huggingface", "model": model, "max_tokens": 128}

    def forward(self, data: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``(B, L)`` token ids -> tokens ``(B, L, hidden)``."""
        if lengths is None:
            mask = torch.ones_like(data, dtype=torch.bool)
        else:
            mask = torch.arange(data.shape[1], device=data.device)[None] < lengths[:, None]
        out = self.net(input_ids=data, attention_mask=mask.long())
        tokens = out.last_hidden_state  # (B, L, hidden)
        return EncoderOutput(tokens, mask, self.pool(tokens, mask))

    def pool(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """Masked mean, L2-normalised if configured."""
        pooled = masked_mean(tokens, mask)
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def weights_digest(self) -> str:
        """sha256 of the weight files."""
        return weights_digest(Path(self._model_dir))


#: Whisper's encoder sees at most 30 s: 3,000 log-mel frames, 1,500 output frames.
_WHISPER_MAX_FRAMES = 3000


def _ctranslate2() -> Any:
    """The ``ctranslate2`` module (installed with faster-whisper)."""
    try:
        import ctranslate2  # type: ignore[import-untyped]
    except ImportError as exc:
        raise DependencyError(
            "faster-whisper", "the whisper_base speech encoder", "pretrained"
        ) from exc
    return ctranslate2


class _CT2Whisper:
    """The CTranslate2 Whisper model of one folder, loaded on first use and never pickled
    (a copy sent to another process loads its own)."""

    def __init__(self, folder: Path, compute_type: str) -> None:
        self.folder = folder
        self.compute_type = compute_type
        self._model: Any = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "compute_type": self.compute_type}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["folder"], state["compute_type"])  # type: ignore[misc]

    def encode(self, features: np.ndarray) -> np.ndarray:
        """``(B, 80, W)`` Whisper log-mel -> ``(B, W // 2, D)`` encoder output."""
        view = _ctranslate2().StorageView.from_array(np.ascontiguousarray(features))
        return np.asarray(self.model().encode(view, to_cpu=True), dtype=np.float32)

    def model(self) -> Any:
        """The loaded ``ctranslate2.models.Whisper`` (on the CPU, torch's thread count)."""
        with self._lock:
            if self._model is None:
                self._model = _ctranslate2().models.Whisper(
                    str(self.folder),
                    device="cpu",
                    compute_type=self.compute_type,
                    intra_threads=torch.get_num_threads(),
                )
            return self._model


class WhisperEncoder(Encoder):
    """The frozen encoder of Whisper base (CTranslate2): one 512-d token per 20 ms of the
    clip (averaged over ``pool`` frames), only the frames that cover the real audio.

    It reads Whisper's own log-mel (the audio contract's ``features: whisper``). Each clip
    is padded to ``window_seconds`` with Whisper's silence floor (Whisper was trained on
    30 s windows; a short window costs a fraction and pooled features stay as
    discriminative) and encoded in windows of the same length, so a clip's tokens never
    depend on the other clips of its batch; clips over 30 s are encoded 30 s at a time.

    Args:
        model: ``whisper-base`` (the offline wheels) or a CTranslate2 Whisper folder.
        compute_type: CTranslate2 compute type (``int8``, ``float32`` ...).
        window_seconds: the shortest window a clip is padded to, 0.02 to 30 s.
        pool: encoder frames averaged into one token (1 keeps 20 ms tokens).
    """

    kind = "audio"
    pretrained = True

    def __init__(
        self,
        contract: ModalityContract,
        model: str = "whisper-base",
        compute_type: str = "int8",
        window_seconds: float = 3.0,
        pool: int = 1,
    ) -> None:
        super().__init__(
            contract,
            model=model,
            compute_type=compute_type,
            window_seconds=window_seconds,
            pool=pool,
        )
        where = f"modalities.{contract.name}.encoder"
        if getattr(contract, "features", None) != "whisper":
            raise ConfigError(
                f"modalities.{contract.name}.contract.features",
                "the whisper_base encoder reads Whisper's log-mel",
                hint="set contract features: whisper (or drop the contract's audio settings)",
            )
        if not 0.02 <= window_seconds <= 30:
            raise ConfigError(f"{where}.window_seconds", "must be between 0.02 and 30")
        if pool < 1:
            raise ConfigError(f"{where}.pool", f"must be >= 1, got {pool}")
        self._model_dir = resolve(model)
        self._whisper = _CT2Whisper(self._model_dir, compute_type)
        self.window = min(_WHISPER_MAX_FRAMES, 2 * math.ceil(window_seconds * 50))
        self.frames_per_token = pool
        self.out_dim = int(self._whisper.encode(np.zeros((1, 80, 2), np.float32)).shape[-1])
        self.freeze()

    @classmethod
    def contract_defaults(cls, **params: Any) -> dict[str, Any]:
        """Whisper's front end: 16 kHz, 80 Slaney mel bands, its own scaling."""
        return {**WHISPER_FRONT_END, "features": "whisper", "normalize": "none"}

    def forward(self, data: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """``(B, 80, T)`` Whisper log-mel -> tokens ``(B, ceil(ceil(T_i / 2) / pool), D)``."""
        sizes = [data.shape[-1]] * data.shape[0] if lengths is None else lengths.tolist()
        clips = [self._encode_clip(data[i, :, : int(n)].float().cpu()) for i, n in enumerate(sizes)]
        pooled = [self._pool_frames(c) for c in clips]  # (T_i, D) each
        steps = max(p.shape[0] for p in pooled)
        tokens = data.new_zeros((len(pooled), steps, self.out_dim), dtype=torch.float32)
        for i, p in enumerate(pooled):
            tokens[i, : p.shape[0]] = p.to(tokens.device)
        counts = torch.tensor([p.shape[0] for p in pooled], device=data.device)
        mask = lengths_to_mask(counts, len(pooled), steps, data.device)
        return EncoderOutput(tokens, mask, self.pool(tokens, mask))  # (B, T, D)

    def _encode_clip(self, mel: Tensor) -> Tensor:
        """``(80, n)`` -> ``(ceil(n / 2), D)``: windows of Whisper input padded with the
        clip's silence floor (8 decades under its peak, as Whisper pads)."""
        floor = float(mel.max()) - 2.0
        chunks = mel.split(_WHISPER_MAX_FRAMES, dim=1)
        width = max(self.window, 2 * math.ceil(chunks[0].shape[1] / 2))
        batch = np.full((len(chunks), 80, width), floor, dtype=np.float32)
        for j, chunk in enumerate(chunks):
            batch[j, :, : chunk.shape[1]] = chunk.numpy()
        out = self._whisper.encode(batch)  # (chunks, width / 2, D)
        frames = [out[j, : math.ceil(c.shape[1] / 2)] for j, c in enumerate(chunks)]
        return torch.from_numpy(np.concatenate(frames))

    def _pool_frames(self, frames: Tensor) -> Tensor:
        """Average every ``pool`` consecutive frames (the last group may be shorter)."""
        if self.frames_per_token == 1:
            return frames
        return torch.stack([g.mean(0) for g in frames.split(self.frames_per_token)])

    def weights_digest(self) -> str:
        """sha256 of the model's weights file(s)."""
        return weights_digest(Path(self._model_dir))
