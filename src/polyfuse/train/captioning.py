"""``task: captioning``: train a `CaptionDecoder` over a frozen image encoder's tokens."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polyfuse.models.captioner import CaptionDecoder, Vocabulary


def train_decoder(
    decoder: CaptionDecoder,
    tokens: Tensor,
    captions: Sequence[Sequence[int]],
    image_of: Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 5e-4,
    weight_decay: float = 0.01,
    label_smoothing: float = 0.1,
    seed: int = 0,
) -> list[float]:
    """Teacher-forced cross-entropy training; returns the mean loss per epoch.

    Args:
        tokens: ``(I, N, D)`` image tokens.
        captions: id sequences (``<bos> ... <eos>``).
        image_of: ``(C,)`` image index of each caption.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(decoder.parameters(), lr=lr, weight_decay=weight_decay)
    total_steps = epochs * max(1, len(captions) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=total_steps, pct_start=0.1)
    loss_fn = nn.CrossEntropyLoss(ignore_index=0, label_smoothing=label_smoothing)
    history = []
    for _ in range(epochs):
        decoder.train()
        perm = torch.randperm(len(captions), generator=gen)
        losses = []
        for s in range(0, len(perm) - batch_size + 1, batch_size):
            idx = perm[s : s + batch_size].tolist()
            longest = max(len(captions[i]) for i in idx)
            ids = torch.zeros(len(idx), longest, dtype=torch.long)
            for j, i in enumerate(idx):
                ids[j, : len(captions[i])] = torch.tensor(captions[i])
            logits = decoder(decoder.memory(tokens[image_of[idx]]), ids[:, :-1])
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        history.append(sum(losses) / max(1, len(losses)))
    decoder.eval()
    return history


def train_captioning(
    config: Any, train: str | Path, val: str | Path, out_dir: str | Path, *, progress: bool = True
) -> dict[str, Any]:
    """``task: captioning``: a decoder over the frozen image encoder's tokens, from a config.

    Manifests: rows with an image and its caption (``text``); rows may share an image.
    Writes ``model.safetensors``, ``vocab.json``, ``config.yaml``, ``contracts.json`` and
    ``artifact.json`` (with validation BLEU / CIDEr-D of beam search) to ``out_dir``.
    """
    from safetensors.torch import save_file

    from polyfuse.artifacts.format import describe, manifest_lineage, write_info
    from polyfuse.core.errors import ConfigError
    from polyfuse.data.manifest import Manifest
    from polyfuse.data.pooled import image_tokens
    from polyfuse.encoders import build_encoder
    from polyfuse.evaluation.text_metrics import bleu, cider_d
    from polyfuse.models.build import build_contracts

    image, text = _caption_roles(config)
    contracts = build_contracts(config)
    mc = config.modalities[image]
    encoder = build_encoder(mc.encoder.name, contracts[image], mc.encoder.params).eval()
    if not encoder.cacheable:
        raise ConfigError(f"modalities.{image}.encoder", "captioning reads frozen image tokens")
    data = {}
    lineage = []
    for split, path in (("train", train), ("val", val)):
        rows = Manifest.load(path, (image, text)).rows
        rows = [r for r in rows if image in r.values and text in r.values]
        lineage.append(manifest_lineage(split, path, len(rows)))
        refs: dict[str, list[str]] = {}
        for r in rows:
            refs.setdefault(str(r.values[image]), []).append(str(r.values[text]))
        paths = list(refs)
        base = Path(path).parent
        resolved = [str(p if Path(p).is_absolute() else base / p) for p in paths]
        data[split] = (paths, refs, image_tokens(encoder, resolved, progress=progress))
    paths, refs, tokens = data["train"]
    captions = [c for p in paths for c in refs[p]]
    image_of = torch.tensor([i for i, p in enumerate(paths) for _ in refs[p]])
    vocab = Vocabulary.build(captions, min_count=3)
    torch.manual_seed(config.train.seed)
    decoder = CaptionDecoder(
        len(vocab),
        image_dim=tokens.shape[2],
        image_tokens=tokens.shape[1],
        width=config.model.dim,
        dropout=config.model.dropout,
    )
    history = train_decoder(
        decoder,
        tokens,
        [vocab.encode(c, decoder.max_len) for c in captions],
        image_of,
        epochs=config.train.epochs,
        batch_size=config.train.batch_size,
        lr=config.train.lr,
        seed=config.train.seed,
    )
    vpaths, vrefs, vtokens = data["val"]
    hyps = [vocab.decode(decoder.beam(vtokens[i])) for i in range(len(vpaths))]
    metrics = {**bleu(hyps, [vrefs[p] for p in vpaths])}
    metrics["CIDEr"] = cider_d(hyps, [vrefs[p] for p in vpaths])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(decoder.state_dict(), str(out / "model.safetensors"))
    (out / "vocab.json").write_text(json.dumps(vocab.words))
    (out / "config.yaml").write_text(config.to_yaml())
    (out / "contracts.json").write_text(
        json.dumps({m: c.to_dict() for m, c in contracts.items()}, indent=2)
    )
    files = ["config.yaml", "contracts.json", "model.safetensors", "vocab.json"]
    info = describe("captioning", out, files, contracts, {image: encoder}, lineage)
    info.update(
        {
            "roles": {"image": image, "text": text},
            "decoder": {
                "image_dim": int(tokens.shape[2]),
                "image_tokens": int(tokens.shape[1]),
                "width": config.model.dim,
            },
            "loss": history,
            "val": metrics,
        }
    )
    write_info(out, info)
    return {"artifact": str(out), **{f"val {k}": v for k, v in metrics.items()}}


def _caption_roles(config: Any) -> tuple[str, str]:
    from polyfuse.core.errors import ConfigError

    kinds = {m: c.kind for m, c in config.modalities.items()}
    images = [m for m, k in kinds.items() if k == "image"]
    texts = [m for m, k in kinds.items() if k == "text"]
    if len(kinds) != 2 or len(images) != 1 or len(texts) != 1:
        raise ConfigError("modalities", "a captioning config has one image and one text modality")
    return images[0], texts[0]
