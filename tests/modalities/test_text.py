"""Text contract: UTF-8 validation, limits, tokenisers."""

from __future__ import annotations

import pytest
import torch

from polyfuse.core.errors import ConfigError, InvalidInputError
from polyfuse.modalities import TextContract
from polyfuse.modalities.tokenizers import HashedWordTokenizer


def test_hashed_words_are_stable_and_in_range() -> None:
    tok = HashedWordTokenizer(vocab_size=100)
    ids = tok.encode("Hello, hello world!", max_tokens=10)
    assert ids[0] == ids[2]  # lowercased: same word, same id
    assert len(ids) == 5 and all(1 <= i < 100 for i in ids)  # hello , hello world !
    assert tok.encode("a b c d", max_tokens=2) == tok.encode("a b", max_tokens=2)


def test_when_bytes_are_not_utf8_then_typed_error() -> None:
    c = TextContract.create("caption", {})
    with pytest.raises(InvalidInputError, match="not valid UTF-8"):
        c.load(b"caf\xe9")


def test_when_string_holds_undecodable_bytes_then_typed_error() -> None:
    c = TextContract.create("caption", {})
    bad = b"caf\xe9 au lait".decode("utf-8", "surrogateescape")
    with pytest.raises(InvalidInputError, match="not valid UTF-8"):
        c.load(bad, field="caption")


def test_length_limit_and_empty_text() -> None:
    c = TextContract.create("caption", {"max_chars": 5})
    with pytest.raises(InvalidInputError, match="max_chars"):
        c.load("too long")
    with pytest.raises(InvalidInputError, match="empty"):
        c.load("   ")


def test_collate_pads_with_lengths() -> None:
    c = TextContract.create("caption", {"vocab_size": 64})
    items = [c.preprocess("one two three"), c.preprocess("one")]
    batch = c.collate(items, torch.tensor([True, True]))
    assert batch.data.shape == (2, 3) and batch.lengths.tolist() == [3, 1]
    assert batch.data[1, 1:].tolist() == [0, 0]


def test_huggingface_tokenizer_needs_a_model() -> None:
    with pytest.raises(ConfigError, match="model"):
        TextContract.create("caption", {"tokenizer": "huggingface"})
