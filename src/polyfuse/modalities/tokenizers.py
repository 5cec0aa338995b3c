"""Tokenisers for the text modality, chosen by the text encoder.

``hashed-words`` needs no vocabulary file (words hashed into buckets) and
serves the small trainable text encoder; ``huggingface`` loads the tokenizer
that ships with a pretrained model (``tokenizer.json``).
"""

from __future__ import annotations

import re
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from polyfuse.core.errors import DependencyError

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_CAPTION_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def caption_words(text: str) -> list[str]:
    """Lower-case word tokens of a caption: the captioner's vocabulary and the caption
    metrics (BLEU, CIDEr-D) split text the same way."""
    return _CAPTION_WORD.findall(text.lower())


class Tokenizer(Protocol):
    """Maps text to token ids (special tokens included, truncated)."""

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """Token ids of ``text``, at most ``max_tokens``."""
        ...


class HashedWordTokenizer:
    """Words and punctuation hashed (crc32) into ``vocab_size - 1`` buckets; id 0 is padding.

    Args:
        vocab_size: number of ids including padding.
        lowercase: lowercase before hashing.
    """

    def __init__(self, vocab_size: int, lowercase: bool = True) -> None:
        self.vocab_size = vocab_size
        self.lowercase = lowercase

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """Token ids of ``text``."""
        if self.lowercase:
            text = text.lower()
        words = _WORD.findall(text)[:max_tokens]
        return [
            1 + zlib.crc32(w.encode("utf-8", "surrogatepass")) % (self.vocab_size - 1)
            for w in words
        ]


class HuggingFaceTokenizer:
    """A ``tokenizer.json`` from a pretrained model folder, via the ``tokenizers`` package."""

    def __init__(self, model_dir: Path) -> None:
        self._tok = _load_tokenizers_file(str(model_dir / "tokenizer.json"))

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """Token ids with the model's special tokens, truncated to ``max_tokens``."""
        ids: list[int] = self._tok.encode(text).ids
        if len(ids) > max_tokens:  # keep the final [SEP]-like token
            ids = [*ids[: max_tokens - 1], ids[-1]]
        return ids

    @property
    def pad_id(self) -> int:
        """Id used for padding."""
        pad = self._tok.token_to_id("[PAD]")
        return 0 if pad is None else int(pad)


@lru_cache(maxsize=8)
def _load_tokenizers_file(path: str) -> Any:
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError as exc:  # pragma: no cover
        raise DependencyError("tokenizers", "pretrained text tokenisation", "text") from exc
    tok = HFTokenizer.from_file(path)
    tok.no_truncation()
    tok.no_padding()
    return tok
