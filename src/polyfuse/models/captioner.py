"""Caption generation: a small transformer decoder cross-attending to frozen image tokens.

The image side is the frozen encoder's spatial token map (EfficientNet-Lite0: 7x7 = 49
tokens of 1280 dims), projected to the decoder width with a learned position embedding.
Decoding is greedy or beam search with a length-normalised score.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polyfuse.evaluation.text_metrics import tokenize

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"


@dataclass
class Vocabulary:
    """Word <-> id map built from training captions."""

    words: list[str]

    @classmethod
    def build(cls, captions: Sequence[str], min_count: int = 3) -> Vocabulary:
        """Every word seen at least ``min_count`` times, after the four special tokens."""
        counts = Counter(w for c in captions for w in tokenize(c))
        kept = sorted(w for w, k in counts.items() if k >= min_count)
        return cls([PAD, BOS, EOS, UNK, *kept])

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, caption: str, max_len: int) -> list[int]:
        """``<bos> words <eos>``, cut to ``max_len`` ids."""
        ids = [self.index.get(w, 3) for w in tokenize(caption)][: max_len - 2]
        return [1, *ids, 2]

    def decode(self, ids: Sequence[int]) -> str:
        """Words up to the first ``<eos>`` (special tokens dropped)."""
        out = []
        for i in ids:
            if i == 2:
                break
            if i > 3:
                out.append(self.words[i])
        return " ".join(out)


class CaptionDecoder(nn.Module):
    """Transformer decoder over word tokens with cross-attention to image tokens.

    Args:
        vocab_size: output vocabulary.
        image_dim: width of the image tokens.
        image_tokens: number of image tokens (for their position embedding).
        width: decoder width; layers, heads, dropout: the usual.
        max_len: longest caption in tokens (with ``<bos>``/``<eos>``).
    """

    def __init__(
        self,
        vocab_size: int,
        image_dim: int = 1280,
        image_tokens: int = 49,
        width: int = 256,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.3,
        max_len: int = 24,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.image_proj = nn.Sequential(nn.LayerNorm(image_dim), nn.Linear(image_dim, width))
        self.image_pos = nn.Parameter(torch.zeros(1, image_tokens, width))
        self.embed = nn.Embedding(vocab_size, width, padding_idx=0)
        self.pos = nn.Parameter(torch.zeros(1, max_len, width))
        layer = nn.TransformerDecoderLayer(
            width, heads, 2 * width, dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, vocab_size)
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.image_pos, std=0.02)

    def memory(self, image_tokens: Tensor) -> Tensor:
        """``(B, N, image_dim)`` -> ``(B, N, width)``."""
        out: Tensor = self.image_proj(image_tokens) + self.image_pos[:, : image_tokens.shape[1]]
        return out

    def forward(self, memory: Tensor, ids: Tensor) -> Tensor:
        """Next-token logits ``(B, T, V)`` for input ids ``(B, T)``."""
        t = ids.shape[1]
        x = self.embed(ids) + self.pos[:, :t]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=ids.device), 1)
        h = self.decoder(x, memory, tgt_mask=causal, tgt_key_padding_mask=ids == 0)
        logits: Tensor = self.out(self.norm(h))
        return logits

    @torch.no_grad()
    def greedy(self, image_tokens: Tensor) -> list[list[int]]:
        """Greedy decoding of a batch."""
        memory = self.memory(image_tokens)
        ids = torch.ones(image_tokens.shape[0], 1, dtype=torch.long, device=image_tokens.device)
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        for _ in range(self.max_len - 1):
            nxt = self(memory, ids)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.zeros_like(nxt), nxt)
            ids = torch.cat([ids, nxt[:, None]], 1)
            done |= nxt == 2
            if bool(done.all()):
                break
        return [row[1:].tolist() for row in ids]

    @torch.no_grad()
    def beam(self, image_tokens: Tensor, width: int = 3, alpha: float = 0.7) -> list[int]:
        """Beam search for one image ``(N, image_dim)``; score = log-prob / length^alpha."""
        memory = self.memory(image_tokens[None])
        beams: list[tuple[list[int], float]] = [([1], 0.0)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(self.max_len - 1):
            seqs = torch.tensor([b[0] for b in beams], device=image_tokens.device)
            logp = self(memory.expand(len(beams), -1, -1), seqs)[:, -1].log_softmax(-1)
            cand = []
            for j, (seq, score) in enumerate(beams):
                top = logp[j].topk(width)
                for lp, tok in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                    cand.append(([*seq, tok], score + lp))
            cand.sort(key=lambda c: -c[1])
            beams = []
            for seq, score in cand:
                if seq[-1] == 2:
                    finished.append((seq, score / math.pow(len(seq) - 1, alpha)))
                else:
                    beams.append((seq, score))
                if len(beams) == width:
                    break
            if not beams or len(finished) >= width:
                break
        finished += [(s, sc / math.pow(len(s) - 1, alpha)) for s, sc in beams]
        return max(finished, key=lambda f: f[1])[0][1:]


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


FORMAT = 1


def train_captioning(
    config: Any, train: str | Path, val: str | Path, out_dir: str | Path, *, progress: bool = True
) -> dict[str, Any]:
    """``task: captioning``: a decoder over the frozen image encoder's tokens, from a config.

    Manifests: rows with an image and its caption (``text``); rows may share an image.
    Writes ``model.safetensors``, ``vocab.json``, ``config.yaml``, ``contracts.json`` and
    ``artifact.json`` (with validation BLEU / CIDEr-D of beam search) to ``out_dir``.
    """
    from safetensors.torch import save_file

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
    for split, path in (("train", train), ("val", val)):
        rows = Manifest.load(path, (image, text)).rows
        rows = [r for r in rows if image in r.values and text in r.values]
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
    info = {
        "format": FORMAT,
        "kind": "captioning",
        "roles": {"image": image, "text": text},
        "decoder": {
            "image_dim": int(tokens.shape[2]),
            "image_tokens": int(tokens.shape[1]),
            "width": config.model.dim,
        },
        "loss": history,
        "val": metrics,
    }
    (out / "artifact.json").write_text(json.dumps(info, indent=2))
    return {"artifact": str(out), **{f"val {k}": v for k, v in metrics.items()}}


def _caption_roles(config: Any) -> tuple[str, str]:
    from polyfuse.core.errors import ConfigError

    kinds = {m: c.kind for m, c in config.modalities.items()}
    images = [m for m, k in kinds.items() if k == "image"]
    texts = [m for m, k in kinds.items() if k == "text"]
    if len(kinds) != 2 or len(images) != 1 or len(texts) != 1:
        raise ConfigError("modalities", "a captioning config has one image and one text modality")
    return images[0], texts[0]


class Captioner:
    """A trained captioning artifact: ``caption(paths)`` writes a caption per image."""

    def __init__(self, path: str | Path) -> None:
        from safetensors.torch import load_file

        from polyfuse.core.config import Config
        from polyfuse.core.errors import ArtifactError
        from polyfuse.encoders import build_encoder
        from polyfuse.modalities import contract_from_dict

        path = Path(path)
        try:
            self.info = json.loads((path / "artifact.json").read_text())
        except FileNotFoundError:
            raise ArtifactError(f"{path} is not a captioning artifact (no artifact.json)") from None
        if self.info.get("kind") != "captioning":
            raise ArtifactError(
                f"{path} holds a {self.info.get('kind', 'model')!r} artifact, not a captioning one",
                hint="train one with task: captioning",
            )
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
        mb = contract.collate(xs, torch.ones(len(xs), dtype=torch.bool))
        return self._decode(self.encoder(mb.data, mb.lengths).tokens, beam)

    @torch.no_grad()
    def _decode(self, tokens: Tensor, beam: int) -> list[str]:
        if beam <= 1:
            return [self.vocab.decode(x) for x in self.decoder.greedy(tokens)]
        return [self.vocab.decode(self.decoder.beam(t, beam)) for t in tokens]


def evaluate_captioning(artifact: str | Path, data: str | Path, beam: int = 3) -> dict[str, float]:
    """BLEU-1..4 and CIDEr-D of the artifact's captions against the manifest's references
    (all ``text`` rows of an image are its references)."""
    from polyfuse.data.manifest import Manifest
    from polyfuse.evaluation.text_metrics import bleu, cider_d

    captioner = Captioner(artifact)
    image, text = captioner.info["roles"]["image"], captioner.info["roles"]["text"]
    refs: dict[str, list[str]] = {}
    for r in Manifest.load(data, (image, text)).rows:
        if image in r.values and text in r.values:
            refs.setdefault(str(r.values[image]), []).append(str(r.values[text]))
    base = Path(data).parent
    paths = [str(p if Path(p).is_absolute() else base / p) for p in refs]
    hyps = captioner.caption(paths, beam=beam)
    scores = bleu(hyps, list(refs.values()))
    return {**scores, "CIDEr": cider_d(hyps, list(refs.values())), "n": float(len(paths))}
