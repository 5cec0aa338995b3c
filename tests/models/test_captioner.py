"""Caption decoder: vocabulary round trip; a tiny decoder learns two images' captions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from polyfuse.models.captioner import CaptionDecoder, Vocabulary
from polyfuse.train.captioning import train_decoder


def test_vocabulary_round_trip() -> None:
    vocab = Vocabulary.build(["A dog runs.", "a dog sits", "a cat"], min_count=2)
    assert vocab.words[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert set(vocab.words[4:]) == {"a", "dog"}
    ids = vocab.encode("a dog flies", max_len=10)
    assert ids[0] == 1 and ids[-1] == 2 and ids[3] == 3  # unknown word
    assert vocab.decode(ids[1:]) == "a dog"  # <unk> dropped, stops at <eos>
    assert len(vocab.encode("a " * 50, max_len=6)) == 6


def test_decoder_learns_and_decodes() -> None:
    vocab = Vocabulary.build(["a red ball on grass", "two dogs in snow"] * 3, min_count=1)
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, 4, 16, generator=gen)  # two "images" of 4 tokens
    caps = [vocab.encode(c, 12) for c in ("a red ball on grass", "two dogs in snow")] * 8
    image_of = torch.tensor([0, 1] * 8)
    torch.manual_seed(0)  # the decoder's initial weights: independent of the tests run before
    dec = CaptionDecoder(
        len(vocab), image_dim=16, image_tokens=4, width=32, heads=2, dropout=0.0, max_len=12
    )
    history = train_decoder(
        dec, tokens, caps, image_of, epochs=60, batch_size=8, lr=3e-3, label_smoothing=0.0
    )
    assert history[-1] < history[0] / 5
    assert [vocab.decode(x) for x in dec.greedy(tokens)] == [
        "a red ball on grass",
        "two dogs in snow",
    ]
    assert vocab.decode(dec.beam(tokens[1], width=3)) == "two dogs in snow"


@pytest.mark.integration
def test_image_tokens_from_the_real_encoder(shared_data: Path) -> None:
    import os

    from polyfuse.data.pooled import image_tokens
    from polyfuse.encoders import build_encoder, resolve_contract

    contract = resolve_contract("image", "image", "efficientnet_lite0", {}, {})
    encoder = build_encoder("efficientnet_lite0", contract, {}).eval()
    images = sorted((shared_data / "flickr8k" / "images").glob("*.jpg"))[:2]
    relative = os.path.relpath(images[1])  # relative to the working directory is fine
    tokens = image_tokens(encoder, [str(images[0]), relative], progress=False)
    assert tokens.shape == (2, 49, 1280) and not torch.equal(tokens[0], tokens[1])


@pytest.mark.integration
def test_captioning_task_from_the_cli(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from polyfuse.cli import main
    from tests.retrieval.flickr import EXAMPLES, small_split

    train, val = small_split(shared_data, tmp_path, 500, 50)  # 100 / 10 images
    art = tmp_path / "cap"
    args = ["train", str(EXAMPLES / "flickr8k" / "caption.yaml"), "--train", str(train)]
    args += ["--val", str(val), "--out", str(art), "--json", "-q", "--set", "train.epochs=2"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0 <= summary["val BLEU-1"] <= 1 and summary["val CIDEr"] >= 0
    info = json.loads((art / "artifact.json").read_text())
    assert info["kind"] == "captioning" and info["loss"][-1] < info["loss"][0]
    image = json.loads(val.read_text().splitlines()[0])["image"]
    assert main(["caption", str(art), image, "--json", "--beam", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["image"] == image and isinstance(out["caption"], str) and out["caption"]
    assert main(["caption", str(tmp_path), image]) == 2  # not an artifact: a clear error
    capsys.readouterr()
    assert main(["evaluate", str(art), "--data", str(val), "--json", "-q"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "CIDEr", "n"}
    assert scores["n"] == 10
