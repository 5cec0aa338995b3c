"""Caption generation: a small transformer decoder cross-attending to frozen image tokens.

The image side is the frozen encoder's spatial token map (EfficientNet-Lite0: 7x7 = 49
tokens of 1280 dims), projected to the decoder width with a learned position embedding.
Decoding is greedy or beam search with a length-normalised score.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from polyfuse.modalities.tokenizers import caption_words

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"


@dataclass
class Vocabulary:
    """Word <-> id map built from training captions."""

    words: list[str]

    @classmethod
    def build(cls, captions: Sequence[str], min_count: int = 3) -> Vocabulary:
        """Every word seen at least ``min_count`` times, after the four special tokens."""
        counts = Counter(w for c in captions for w in caption_words(c))
        kept = sorted(w for w, k in counts.items() if k >= min_count)
        return cls([PAD, BOS, EOS, UNK, *kept])

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, caption: str, max_len: int) -> list[int]:
        """``<bos> words <eos>``, cut to ``max_len`` ids."""
        ids = [self.index.get(w, 3) for w in caption_words(caption)][: max_len - 2]
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
