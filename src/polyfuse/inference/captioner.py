"""A captioning artifact at work: `Captioner` loads it (through the one artifact reader)
and writes a caption per image with the decoder of `polyfuse.models.captioner`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polyfuse.inference.batches import collate_all
from polyfuse.models.captioner import CaptionDecoder, Vocabulary


class Captioner:
    """A trained captioning artifact: ``caption(paths)`` writes a caption per image."""

    def __init__(self, path: str | Path) -> None:
        from safetensors.torch import load_file

        from polyfuse.artifacts.format import check_encoders, read_info
        from polyfuse.core.config import Config
        from polyfuse.encoders import build_encoder
        from polyfuse.modalities import contract_from_dict

        path = Path(path)
        self.info = read_info(path, "captioning")
        config = Config.from_file(path / "config.yaml")
        image = self.info["roles"]["image"]
        contract = contract_from_dict(json.loads((path / "contracts.json").read_text())[image])
        mc = config.modalities[image]
        self.encoder = build_encoder(mc.encoder.name, contract, mc.encoder.params).eval()
        self.vocab = Vocabulary(json.loads((path / "vocab.json").read_text()))
        d = self.info["decoder"]
        self.decoder = CaptionDecoder(
            len(self.vocab), d["image_dim"], d["image_tokens"], d["width"]
        )
        self.decoder.load_state_dict(load_file(str(path / "model.safetensors")))
        self.decoder.eval()
        check_encoders(path, self.info, {image: self.encoder})

    def caption(self, paths: Sequence[str], beam: int = 3) -> list[str]:
        """One caption per image path (beam search; ``beam=1``: greedy); the image
        tokens go through the disk feature cache."""
        from polyfuse.data.pooled import image_tokens

        return self._decode(image_tokens(self.encoder, list(paths), progress=False), beam)

    @torch.no_grad()
    def caption_images(self, images: Sequence[Any], beam: int = 3) -> list[str]:
        """One caption per image given as bytes, an array or a PIL image (no disk cache;
        what a server uses for uploads)."""
        contract = self.encoder.contract
        xs = [contract.preprocess(contract.load(v, field=contract.name)) for v in images]
        mb = collate_all(contract, xs)
        return self._decode(self.encoder(mb.data, mb.lengths).tokens, beam)

    @torch.no_grad()
    def _decode(self, tokens: Tensor, beam: int) -> list[str]:
        if beam <= 1:
            return [self.vocab.decode(x) for x in self.decoder.greedy(tokens)]
        return [self.vocab.decode(self.decoder.beam(t, beam)) for t in tokens]
