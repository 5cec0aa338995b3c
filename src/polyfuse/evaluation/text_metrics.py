"""Caption metrics: corpus BLEU-1..4 (Papineni et al., 2002) and CIDEr-D (Vedantam et al., 2015).

Both take one candidate and several references per image, tokenised by `tokenize`
(lower-case words; punctuation dropped), as the COCO caption evaluation does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from polyfuse.modalities.tokenizers import caption_words


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens (`polyfuse.modalities.tokenizers.caption_words`)."""
    return caption_words(text)


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(
    candidates: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4
) -> dict[str, float]:
    """Corpus BLEU-1..``max_n``: clipped n-gram precisions pooled over the corpus, geometric
    mean, brevity penalty against the closest reference length (ties: the shorter).

    Returns:
        ``{"BLEU-1": .., ..., "BLEU-4": ..}``.
    """
    if len(candidates) != len(references):
        raise ValueError("one list of references per candidate")
    match = [0] * max_n
    total = [0] * max_n
    cand_len = ref_len = 0
    for cand, refs in zip(candidates, references, strict=True):
        c = tokenize(cand)
        rs = [tokenize(r) for r in refs]
        cand_len += len(c)
        ref_len += min((abs(len(r) - len(c)), len(r)) for r in rs)[1] if rs else 0
        for n in range(1, max_n + 1):
            counts = _ngrams(c, n)
            best: Counter[tuple[str, ...]] = Counter()
            for r in rs:
                best |= _ngrams(r, n)  # max count per n-gram over the references
            match[n - 1] += sum(min(k, best[g]) for g, k in counts.items())
            total[n - 1] += max(0, len(c) - n + 1)
    bp = 1.0 if cand_len > ref_len else math.exp(1 - ref_len / max(cand_len, 1))
    out = {}
    logs = 0.0
    for n in range(1, max_n + 1):
        p = match[n - 1] / total[n - 1] if total[n - 1] else 0.0
        logs += math.log(p) if p > 0 else float("-inf")
        out[f"BLEU-{n}"] = bp * math.exp(logs / n) if logs > float("-inf") else 0.0
    return out


def cider_d(
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    max_n: int = 4,
    sigma: float = 6.0,
) -> float:
    """CIDEr-D: tf-idf n-gram cosine with clipping and a Gaussian length penalty, x10.

    Document frequencies come from the references of the whole set (one document per
    image), as in the COCO evaluation code.
    """
    if len(candidates) != len(references):
        raise ValueError("one list of references per candidate")
    refs_tok = [[tokenize(r) for r in refs] for refs in references]
    df: Counter[tuple[str, ...]] = Counter()
    for rs in refs_tok:
        seen = set()
        for r in rs:
            for n in range(1, max_n + 1):
                seen |= set(_ngrams(r, n))
        df.update(seen)
    log_n = math.log(max(len(candidates), 1))

    def vectors(tokens: Sequence[str]) -> list[dict[tuple[str, ...], float]]:
        return [
            {g: k * (log_n - math.log(max(1.0, df[g]))) for g, k in _ngrams(tokens, n).items()}
            for n in range(1, max_n + 1)
        ]

    def norm(v: dict[tuple[str, ...], float]) -> float:
        return math.sqrt(sum(x * x for x in v.values()))

    scores = []
    for cand, rs in zip(candidates, refs_tok, strict=True):
        c = tokenize(cand)
        cv = vectors(c)
        total = 0.0
        for r in rs:
            rv = vectors(r)
            delta = len(c) - len(r)
            per_n = []
            for n in range(max_n):
                dot = sum(min(x, rv[n].get(g, 0.0)) * rv[n].get(g, 0.0) for g, x in cv[n].items())
                denom = norm(cv[n]) * norm(rv[n])
                sim = dot / denom if denom else 0.0
                per_n.append(sim * math.exp(-(delta**2) / (2 * sigma**2)))
            total += sum(per_n) / max_n
        scores.append(10.0 * total / max(len(rs), 1))
    return sum(scores) / max(len(scores), 1)
