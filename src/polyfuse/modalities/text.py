"""Text modality: UTF-8 strings with a length limit, tokenised for the chosen encoder."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polyfuse.core.errors import ConfigError
from polyfuse.modalities.base import ModalityBatch, ModalityContract, pad_stack
from polyfuse.modalities.io import describe, detect
from polyfuse.modalities.readers.text import decode_text
from polyfuse.modalities.tokenizers import HashedWordTokenizer, HuggingFaceTokenizer, Tokenizer

TOKENIZERS = ("hashed-words", "huggingface")


@dataclass(frozen=True)
class TextContract(ModalityContract):
    """Text inputs. Manifest values are the text itself, not a path.

    Attributes:
        tokenizer: ``"hashed-words"`` or ``"huggingface"``.
        model: pretrained model name or folder whose tokenizer to use (``huggingface``).
        vocab_size: bucket count for ``hashed-words``.
        lowercase: lowercase before hashing (``hashed-words``).
        max_tokens: truncate token sequences to this length.
        max_chars: refuse longer texts.
    """

    kind = "text"
    version = 1
    file_based = False

    tokenizer: str = "hashed-words"
    model: str | None = None
    vocab_size: int = 32768
    lowercase: bool = True
    max_tokens: int = 128
    max_chars: int = 20_000

    def check(self) -> None:
        """Validate parameters."""
        where = f"modalities.{self.name}.contract"
        if self.tokenizer not in TOKENIZERS:
            raise ConfigError(f"{where}.tokenizer", f"must be one of {', '.join(TOKENIZERS)}")
        if self.tokenizer == "huggingface" and not self.model:
            raise ConfigError(f"{where}.model", "the huggingface tokenizer needs a model name")
        if self.max_tokens < 2:
            raise ConfigError(f"{where}.max_tokens", "must be at least 2")

    @functools.cached_property
    def _tokenizer(self) -> Tokenizer:
        if self.tokenizer == "hashed-words":
            return HashedWordTokenizer(self.vocab_size, self.lowercase)
        from polyfuse.core.weights import resolve

        return HuggingFaceTokenizer(resolve(str(self.model)))

    def load(self, value: Any, *, field: str | None = None, base_dir: Path | None = None) -> str:
        """Validate a text: ``str`` or UTF-8 ``bytes`` (decoded by the one text decoder,
        `polyfuse.modalities.readers.text.decode_text`); returns NFC-normalised text."""
        if isinstance(value, bytes | bytearray):
            found = detect(bytes(value), name=self.name) if value else None
            if found is not None and found.modality != "text":
                raise self.error(f"content is {describe(found.format)}, not text", field=field)
            value = decode_text(bytes(value), name=self.name, field=field)
        if not isinstance(value, str):
            raise self.error(f"expected a string, got {type(value).__name__}", field=field)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates: undecodable bytes in the source
            raise self.error(
                f"not valid UTF-8 (character {exc.start} came from undecodable bytes)",
                field=field,
                hint="re-encode the manifest as UTF-8",
            ) from exc
        if len(value) > self.max_chars:
            raise self.error(
                f"{len(value)} characters exceeds max_chars={self.max_chars}", field=field
            )
        if not value.strip():
            raise self.error(
                "text is empty",
                field=field,
                hint="leave the key out or null to mark the text as missing",
            )
        return unicodedata.normalize("NFC", value)

    def preprocess(self, obj: str) -> Tensor:
        """Token ids, ``(L,)`` int64."""
        return torch.tensor(self._tokenizer.encode(obj, self.max_tokens) or [0], dtype=torch.long)

    def padded_length(self, x: Tensor) -> int:
        """Number of tokens."""
        return int(x.shape[0])

    def collate(self, items: Sequence[Tensor], present: Tensor) -> ModalityBatch:
        """Pad ids: ``(P, L_max)`` with token lengths."""
        pad = self._tokenizer.pad_id if isinstance(self._tokenizer, HuggingFaceTokenizer) else 0
        data, lengths = pad_stack(items, dim=0, value=pad)
        return ModalityBatch(data=data, present=present, lengths=lengths)
