"""Frozen pretrained encoders: EfficientNet-Lite0 (images), MiniLM or any BERT-like model (text).

Weights come from `polyfuse.core.weights.resolve`: a local path, a package that
ships them (offline), or the Hugging Face hub. They are frozen by default and
their outputs are cached; ``trainable: true`` fine-tunes them instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polyfuse.core.errors import DependencyError
from polyfuse.core.weights import resolve, weights_digest
from polyfuse.encoders.base import Encoder, EncoderOutput, masked_mean
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
