"""``task: contrastive``: train alignment adapters from a config and use the artifact.

`train_alignment` reads pair manifests (rows with both modalities; several rows may
share an item, e.g. five captions of one image), serves frozen-encoder features from the
feature cache, trains `AlignmentModel` with multi-positive InfoNCE (epoch picked on
validation Recall@5) and writes an artifact folder; `Aligner.load` embeds new inputs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyfuse.artifacts.format import (
    check_encoders,
    describe,
    manifest_lineage,
    read_info,
    write_info,
)
from polyfuse.core.config import Config
from polyfuse.core.errors import ArtifactError, ConfigError
from polyfuse.data.manifest import Manifest, Row
from polyfuse.data.pooled import PairFeatures, group_rows, pair_features
from polyfuse.encoders import build_encoder
from polyfuse.encoders.base import Encoder
from polyfuse.inference.batches import load_batch
from polyfuse.modalities import contract_from_dict
from polyfuse.modalities.base import ModalityContract
from polyfuse.models.alignment import AlignmentEnsemble, AlignmentModel, SharedSpace
from polyfuse.models.build import build_contracts
from polyfuse.retrieval.fit import fit_alignment
from polyfuse.retrieval.metrics import querybank_normalise, retrieval_metrics

#: Share of true pairs flagged as contradictions at the calibrated threshold.
FALSE_ALARM = 0.05


def _roles(config: Config) -> tuple[str, str]:
    """(item modality whose value groups rows, e.g. image; query modality, e.g. text)."""
    names = list(config.modalities)
    if config.task != "contrastive" or len(names) != 2:
        raise ConfigError("modalities", "a contrastive config aligns exactly two modalities")
    kinds = {m: config.modalities[m].kind for m in names}
    item = next((m for m in names if kinds[m] != "text"), names[0])
    return item, next(m for m in names if m != item)


def _encoders(config: Config, contracts: dict[str, ModalityContract]) -> dict[str, Encoder]:
    out = {}
    for m, mc in config.modalities.items():
        enc = build_encoder(mc.encoder.name, contracts[m], mc.encoder.params).eval()
        if not enc.cacheable:
            raise ConfigError(
                f"modalities.{m}.encoder",
                f"'{mc.encoder.name}' is trainable; alignment adapters sit on frozen encoders",
                hint="use a pretrained encoder (polyfuse list)",
            )
        out[m] = enc
    return out


@dataclass
class AlignmentResult:
    """What `train_alignment` produced: artifact folder, best epoch, validation metrics."""

    path: Path
    best_epoch: int
    metrics: dict[str, dict[str, float]]


def train_alignment(
    config: Config,
    train: str | Path,
    val: str | Path,
    out_dir: str | Path,
    *,
    progress: bool = True,
) -> AlignmentResult:
    """Train alignment adapters for a ``task: contrastive`` config and save the artifact.

    With ``align.ensemble > 1`` several adapter pairs are trained (seeds ``train.seed + k``);
    with ``align.querybank`` the training features are kept for QB-norm; with
    ``align.scorer`` token-level consistency scorers are trained and combined with the
    cosine (see `polyfuse.retrieval.scoring`).
    """
    item, query = _roles(config)
    ac = config.align
    if ac.scorer and config.modalities[query].kind != "text":
        raise ConfigError("align.scorer", "the consistency scorer swaps words of a text query")
    contracts = build_contracts(config)
    encoders = _encoders(config, contracts)
    names = tuple(config.modalities)
    manifests = {
        split: Manifest.load(path, names, config.label)
        for split, path in (("train", train), ("val", val))
    }
    data = {
        split: pair_features(encoders, m, item, progress=progress) for split, m in manifests.items()
    }
    tr = data["train"]
    bank = {query: tr.feats[query], item: tr.feats[item][tr.first]} if ac.querybank else None
    members: list[AlignmentModel] = []
    history: list[dict[str, float]] = []
    best_epochs: list[int] = []
    cfg = config.train
    for k in range(ac.ensemble):
        torch.manual_seed(cfg.seed + k)  # the adapters' initial weights
        model = AlignmentModel(
            {m: int(f.shape[1]) for m, f in tr.feats.items()},
            dim=config.model.dim,
            dropout=config.model.dropout,
        )

        def score(m: AlignmentModel) -> float:
            return _metrics(m, data["val"], item, query)["text_to_image"]["R@5"]

        fit = fit_alignment(
            model,
            tr.feats[item],
            tr.feats[query],
            tr.group,
            names=(item, query),
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            seed=cfg.seed + k,
            score=score,
            progress=progress,
        )
        members.append(fit.model)
        best_epochs.append(fit.best_epoch)
        history.extend({"member": float(k), **h} for h in fit.history)
    ensemble = AlignmentEnsemble(members).eval()
    metrics = _metrics(ensemble, data["val"], item, query, bank)
    consistency, scorers = _calibrate(
        config, encoders, manifests, data, ensemble, item, query, progress=progress
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(ensemble.state_dict(), str(out / "model.safetensors"))
    if bank is not None:
        save_file(
            {m: f.half().contiguous() for m, f in bank.items()}, str(out / "querybank.safetensors")
        )
    if scorers:
        state = {f"{k}.{n}": t for k, s in enumerate(scorers) for n, t in s.state_dict().items()}
        save_file(state, str(out / "scorer.safetensors"))
    (out / "config.yaml").write_text(config.to_yaml())
    (out / "contracts.json").write_text(
        json.dumps({m: c.to_dict() for m, c in contracts.items()}, indent=2)
    )
    (out / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    files = ["config.yaml", "contracts.json", "metrics.jsonl", "model.safetensors"]
    files += ["querybank.safetensors"] * (bank is not None) + ["scorer.safetensors"] * bool(scorers)
    lineage = [manifest_lineage(s, m.path, len(m.rows)) for s, m in manifests.items()]
    info = describe("alignment", out, files, contracts, encoders, lineage)
    info.update(
        {
            "roles": {"item": item, "query": query},
            "in_dims": {m: int(f.shape[1]) for m, f in tr.feats.items()},
            "dim": config.model.dim,
            "ensemble": ac.ensemble,
            "querybank": ac.querybank,
            "best_epoch": best_epochs[0],
            "best_epochs": best_epochs,
            "logit_scale": ensemble.scale,
            "val": metrics,
            "consistency": consistency,
        }
    )
    write_info(out, info)
    return AlignmentResult(out, best_epochs[0], metrics)


def _validation_pairs(
    manifest: Manifest, pf: PairFeatures, item: str, query: str, seed: int
) -> tuple[list[tuple[Any, Any]], list[bool], list[str], list[bool]]:
    """Per validation row: the true pair, a query of another item (kind ``random``) and,
    where the query has a swappable word, an attribute-swapped query (kind ``swap``).

    Returns:
        pairs, agreement, kind, and whether the row is a swap or the true pair it swaps.
    """
    import numpy as np

    from polyfuse.data.negatives import attribute_swap

    rng = np.random.default_rng(seed)
    rows = [manifest.rows[i] for i in pf.rows]
    groups = pf.group.tolist()
    out: list[tuple[tuple[Any, Any], bool, str, bool]] = []
    for j, row in enumerate(rows):
        a, b = row.values[item], row.values[query]
        swapped = attribute_swap(str(b), rng) if isinstance(b, str) else None
        out.append(((a, b), True, "", swapped is not None))
        other = int(rng.integers(len(rows)))
        if groups[other] != groups[j]:
            out.append(((a, rows[other].values[query]), False, "random", False))
        if swapped is not None:
            out.append(((a, swapped), False, "swap", True))
    return [o[0] for o in out], [o[1] for o in out], [o[2] for o in out], [o[3] for o in out]


def _calibrate(
    config: Config,
    encoders: dict[str, Encoder],
    manifests: dict[str, Manifest],
    data: dict[str, PairFeatures],
    ensemble: AlignmentEnsemble,
    item: str,
    query: str,
    *,
    progress: bool,
) -> tuple[dict[str, Any], list[Any]]:
    """Train the optional scorers, fit the combination and pick the contradiction
    threshold at ``FALSE_ALARM`` of the validation true pairs."""
    ac = config.align
    with torch.no_grad():
        va = data["val"]
        true = _agreement(ensemble, va.feats[item], va.feats[query], item, query)
    if not ac.scorer:
        threshold = float(torch.quantile(true.double(), FALSE_ALARM))
        return {"threshold": threshold, "target_false_alarm": FALSE_ALARM, "scorer": None}, []
    from polyfuse.data.negatives import alternatives
    from polyfuse.retrieval.scoring import Combination, pair_tokens, signals, train_scorers

    tr_rows = [manifests["train"].rows[i] for i in data["train"].rows]
    tr_pairs = [(r.values[item], r.values[query]) for r in tr_rows]
    swaps = [alternatives(str(b)) for _, b in tr_pairs]
    train_tok = pair_tokens(
        encoders, item, query, tr_pairs, swaps=swaps, colour=ac.colour, progress=progress
    )
    pairs, agree_list, kinds, for_swap = _validation_pairs(
        manifests["val"], va, item, query, config.train.seed
    )
    val_tok = pair_tokens(encoders, item, query, pairs, colour=ac.colour, progress=progress)
    agree = torch.tensor(agree_list)
    scorers = train_scorers(
        train_tok.data,
        val_tok.data,
        torch.tensor(for_swap),
        agree,
        members=ac.scorer_members,
        epochs=ac.scorer_epochs,
        dim=ac.scorer_dim,
        alternatives_per_step=ac.alternatives_per_step,
        seed=config.train.seed,
        progress=progress,
    )
    cosine, logit, rel = signals(
        ensemble,
        scorers,
        encoders,
        item,
        query,
        pairs,
        colour=ac.colour,
        cached=True,
        progress=progress,
    )
    assert logit is not None and rel is not None
    combo = Combination.fit(cosine, logit, rel, agree, kinds)
    score = combo(cosine, logit, rel)
    threshold = float(torch.quantile(score[agree].double(), FALSE_ALARM))
    spec = {
        "members": ac.scorer_members,
        "dim": ac.scorer_dim,
        "item_dim": int(train_tok.data.items.shape[2]),
        "query_dim": int(train_tok.data.texts.shape[2]),
        "extra_dim": 0 if train_tok.data.extra is None else int(train_tok.data.extra.shape[2]),
        "colour": ac.colour,
    }
    return {
        "threshold": threshold,
        "target_false_alarm": FALSE_ALARM,
        "scorer": spec,
        "combination": dataclasses.asdict(combo),
    }, scorers


def _agreement(
    model: Any, item_feats: Tensor, query_feats: Tensor, item: str, query: str
) -> Tensor:
    """Cosine agreement of row-aligned pairs in the shared space."""
    cosine: Tensor = (model.embed(item, item_feats) * model.embed(query, query_feats)).sum(1)
    return cosine


def _metrics(
    model: Any,
    data: PairFeatures,
    item: str,
    query: str,
    bank: dict[str, Tensor] | None = None,
) -> dict[str, dict[str, float]]:
    """Retrieval metrics: queries (e.g. captions) against unique items (e.g. images),
    with QB-norm in both directions when a bank of training features is given."""
    with torch.no_grad():
        zq = model.embed(query, data.feats[query])
        zi = model.embed(item, data.feats[item][data.first])
        sim = zq @ zi.T
        if bank is None:
            return retrieval_metrics(sim, data.group)
        bq, bi = model.embed(query, bank[query].float()), model.embed(item, bank[item].float())
        beta = model.scale
        t2i = querybank_normalise(sim, bq @ zi.T, beta)
        i2t = querybank_normalise(sim.T, bi @ zq.T, beta).T
    out = retrieval_metrics(t2i, data.group)
    out["image_to_text"] = retrieval_metrics(i2t, data.group)["image_to_text"]
    return out


def evaluate_alignment(
    artifact: str | Path, data: str | Path, *, progress: bool = True
) -> dict[str, dict[str, float]]:
    """Retrieval protocol on a pair manifest (R@1/5/10 and median rank in both
    directions), or consistency metrics on a manifest labelled ``match`` / ``mismatch``."""
    return Aligner.load(artifact).evaluate(data, progress=progress)


def _consistency(
    aligner: Aligner, manifest: Manifest, pf: PairFeatures, labels: list[Any], *, progress: bool
) -> dict[str, dict[str, float]]:
    """AUC, the artifact's calibrated threshold, its false-alarm rate and recall; AUC per
    ``kind`` column value (each kind's mismatches against its matches, or the plain matches)."""
    from polyfuse.evaluation.metrics import roc_auc

    item, query = aligner.info["roles"]["item"], aligner.info["roles"]["query"]
    rows = [manifest.rows[i] for i in pf.rows]
    score = aligner.pair_scores(
        [(r.values[item], r.values[query]) for r in rows], cached=True, progress=progress
    )
    match = torch.tensor([lab == "match" for lab in labels])
    threshold = float(aligner.info["consistency"]["threshold"])
    flagged = score < threshold
    out: dict[str, dict[str, float]] = {
        "consistency": {
            "auc": roc_auc(score, match) or 0.0,
            "threshold": threshold,
            "false_alarm_rate": float(flagged[match].double().mean()),
            "recall": float(flagged[~match].double().mean()),
            "n": float(len(labels)),
        }
    }
    kinds = [str(r.metadata.get("kind", "")) for r in rows]
    by_kind = {}
    for kind in sorted(set(kinds) - {""}):
        sel_rows = torch.tensor([k == kind for k in kinds])
        if bool((sel_rows & match).any()):  # this kind has its own matches (paired negatives)
            sel = sel_rows
        else:  # compare its mismatches with the plain matches
            sel = sel_rows | (match & torch.tensor([k == "" for k in kinds]))
        by_kind[kind] = roc_auc(score[sel], match[sel]) or 0.0
    out["auc_by_kind"] = by_kind
    return out


class Aligner:
    """A trained alignment artifact: embeds raw inputs of either modality into the shared
    space and scores whether pairs agree.

    Args:
        model: the adapters (an `AlignmentEnsemble`), or an `AppliedAlignment` when the
            encoders are an export's graphs that apply them.
        encoders: modality -> frozen encoder.
        info: ``artifact.json``.
        bank: training features for QB-norm, or None.
        scorers: token-level consistency scorers, or none.
    """

    def __init__(
        self,
        model: SharedSpace,
        encoders: dict[str, Encoder],
        info: dict[str, Any],
        bank: dict[str, Tensor] | None = None,
        scorers: Sequence[Any] = (),
    ):
        self.model = model.eval()
        self.encoders = encoders
        self.info = info
        self.bank = bank
        self.scorers = [s.eval() for s in scorers]

    @classmethod
    def load(cls, path: str | Path) -> Aligner:
        """Load an artifact written by `train_alignment`, or its ONNX export (`polyfuse
        export`; `polyfuse.retrieval.onnx`)."""
        path = Path(path)
        info = read_info(path, "alignment")
        from polyfuse.retrieval.onnx import is_alignment_export

        if is_alignment_export(info):
            return cls._load_export(path, info)
        config = Config.from_file(path / "config.yaml")
        raw = json.loads((path / "contracts.json").read_text())
        contracts = {m: contract_from_dict(d) for m, d in raw.items()}
        members = [
            AlignmentModel(info["in_dims"], dim=info["dim"]) for _ in range(info["ensemble"])
        ]
        model = AlignmentEnsemble(members)
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(path / "model.safetensors")))
        bank = load_file(str(path / "querybank.safetensors")) if info.get("querybank") else None
        scorers = []
        spec = info["consistency"].get("scorer")
        if spec:
            from polyfuse.retrieval.consistency import ConsistencyScorer

            state = load_file(str(path / "scorer.safetensors"))
            for k in range(spec["members"]):
                s = ConsistencyScorer(
                    spec["item_dim"],
                    spec["query_dim"],
                    dim=spec["dim"],
                    extra_dim=spec["extra_dim"],
                )
                prefix = f"{k}."
                s.load_state_dict(
                    {n[len(prefix) :]: t for n, t in state.items() if n.startswith(prefix)}
                )
                scorers.append(s)
        encoders = _encoders(config, contracts)
        check_encoders(path, info, encoders)
        return cls(model, encoders, info, bank, scorers)

    @classmethod
    def _load_export(cls, path: Path, info: dict[str, Any]) -> Aligner:
        """An ONNX export: its graphs as frozen encoders, the adapters already applied."""
        from safetensors.torch import load_file

        from polyfuse.retrieval.onnx import alignment_parts, check_export_format

        check_export_format(path, info)
        raw = json.loads((path / "contracts.json").read_text())
        contracts = {m: contract_from_dict(d) for m, d in raw.items()}
        model, encoders = alignment_parts(
            path, contracts, int(info["dim"]), float(info["logit_scale"]), info.get("files")
        )
        bank = load_file(str(path / "querybank.safetensors")) if info.get("querybank") else None
        return cls(model, encoders, info, bank)

    def evaluate(self, data: str | Path, *, progress: bool = True) -> dict[str, dict[str, float]]:
        """Retrieval protocol on a pair manifest (R@1/5/10 and median rank in both
        directions), or consistency metrics on a manifest labelled ``match`` / ``mismatch``."""
        item, query = self.info["roles"]["item"], self.info["roles"]["query"]
        manifest = Manifest.load(data, tuple(self.encoders))
        pf = pair_features(self.encoders, manifest, item, progress=progress)
        labels = [manifest.rows[i].label for i in pf.rows]
        if set(labels) <= {"match", "mismatch"} and "mismatch" in labels:
            return _consistency(self, manifest, pf, labels, progress=progress)
        out = _metrics(self.model, pf, item, query, self.bank)
        out["n"] = {"queries": float(len(pf.group)), "items": float(len(pf.first))}
        return out

    def consistency(self, items: Sequence[Any], queries: Sequence[Any]) -> list[tuple[float, bool]]:
        """Agreement score and contradiction flag of each (item, query) pair, e.g. (image, text).

        The score is the cosine in the shared space or, for artifacts trained with
        ``align.scorer``, the log-odds of agreement from cosine and token scorers. The
        flag uses the threshold calibrated on validation data at training time
        (``FALSE_ALARM`` of true pairs are flagged).
        """
        if len(items) != len(queries):
            raise ValueError(f"{len(items)} items but {len(queries)} queries")
        scores = self.pair_scores(list(zip(items, queries, strict=True)), cached=False)
        threshold = float(self.info["consistency"]["threshold"])
        return [(float(v), float(v) < threshold) for v in scores]

    @torch.no_grad()
    def pair_scores(
        self, pairs: Sequence[tuple[Any, Any]], *, cached: bool = False, progress: bool = False
    ) -> Tensor:
        """Agreement scores ``(N,)`` of raw (item, query) pairs (see `consistency`)."""
        from polyfuse.retrieval.scoring import Combination, signals

        if not pairs:
            return torch.zeros(0)
        item, query = self.info["roles"]["item"], self.info["roles"]["query"]
        spec = self.info["consistency"].get("scorer")
        cosine, logit, rel = signals(
            self.model,
            self.scorers,
            self.encoders,
            item,
            query,
            pairs,
            colour=bool(spec and spec["colour"]),
            cached=cached,
            progress=progress,
        )
        if not spec:
            return cosine
        return Combination(**self.info["consistency"]["combination"])(cosine, logit, rel)

    @torch.no_grad()
    def zero_shot(
        self, items: Sequence[Any], labels: Sequence[str], template: str = "a photo of {}."
    ) -> Tensor:
        """Zero-shot class probabilities ``(N, K)`` of items (e.g. images) from text prompts.

        Each label becomes ``template.format(label)``; probabilities are a softmax of the
        learned logit scale times the cosine similarity to each prompt.
        """
        item, query = self.info["roles"]["item"], self.info["roles"]["query"]
        prompts = self.embed(query, [template.format(lab) for lab in labels])
        return (self.model.scale * self.embed(item, items) @ prompts.T).softmax(1)

    @torch.no_grad()
    def embed(self, modality: str, values: Sequence[Any], batch_size: int = 32) -> Tensor:
        """Unit vectors ``(N, dim)`` for raw values (paths, bytes, strings ...)."""
        enc = self.encoders[modality]
        contract = enc.contract
        out = []
        for s in range(0, len(values), batch_size):
            chunk = values[s : s + batch_size]
            mb = load_batch(contract, chunk, field=modality)
            out.append(self.model.embed(modality, enc(mb.data, mb.lengths).pooled))
        return torch.cat(out) if out else torch.zeros(0, self.model.dim)


def build_index(
    artifact: str | Path,
    data: str | Path,
    db: str | Path,
    *,
    ann_min_rows: int = 20_000,
    progress: bool = True,
) -> dict[str, int]:
    """Embed a pair manifest's items (e.g. unique images) and queries (e.g. captions) into
    a LanceDB folder, one table per modality, with their references as metadata.

    Tables of at least ``ann_min_rows`` rows also get an IVF-PQ index (two-stage search);
    smaller ones are searched exactly.

    Returns:
        table name -> rows written.
    """
    aligner = Aligner.load(artifact)
    item, query = aligner.info["roles"]["item"], aligner.info["roles"]["query"]
    manifest = Manifest.load(data, tuple(aligner.encoders))
    pf = pair_features(aligner.encoders, manifest, item, progress=progress)
    with torch.no_grad():
        zi = aligner.model.embed(item, pf.feats[item]).numpy()
        zq = aligner.model.embed(query, pf.feats[query]).numpy()
    rows = [manifest.rows[i] for i in pf.rows]
    return write_index(db, artifact, aligner.info["roles"], rows, zi, zq, ann_min_rows=ann_min_rows)


def write_index(
    db: str | Path,
    artifact: str | Path,
    roles: dict[str, str],
    rows: Sequence[Row],
    item_vectors: np.ndarray,
    query_vectors: np.ndarray,
    *,
    ann_min_rows: int = 20_000,
) -> dict[str, int]:
    """Write the LanceDB tables of `build_index` from embedded pair rows (also used by the
    Ray Data job, `polyfuse.batch.jobs.index`).

    Args:
        db: the LanceDB folder.
        artifact: the alignment artifact (recorded for `search_index`).
        roles: ``{"item": ..., "query": ...}`` modality names.
        rows: pair rows with both modalities.
        item_vectors: ``(N, D)`` item embeddings per row (rows of one item share it).
        query_vectors: ``(N, D)`` query embeddings per row.

    Returns:
        table name -> rows written.
    """
    from polyfuse.retrieval.index import VectorIndex

    item, query = roles["item"], roles["query"]
    group, first = group_rows(rows, item)
    zi, zq = item_vectors[first.numpy()], query_vectors
    texts: dict[int, list[str]] = {}
    for j, g in enumerate(group.tolist()):
        texts.setdefault(g, []).append(str(rows[j].values[query]))
    items = [rows[int(j)] for j in first]
    tables = {
        item: (
            zi,
            [str(r.values[item]) for r in items],
            [{item: r.values[item], query: texts[g]} for g, r in enumerate(items)],
        ),
        query: (
            zq,
            [r.id for r in rows],
            [{query: r.values[query], item: r.values[item]} for r in rows],
        ),
    }
    ann = {}
    for name, (vectors, ids, meta) in tables.items():
        index = VectorIndex.create(db, vectors, ids, meta, name=name)
        ann[name] = len(ids) >= ann_min_rows
        if ann[name]:
            index.build_ann()
    info = {"artifact": str(Path(artifact).resolve()), "roles": dict(roles), "ann": ann}
    (Path(db) / "index.json").write_text(json.dumps(info, indent=2))
    return {name: len(t[1]) for name, t in tables.items()}


def search_index(db: str | Path, modality: str, value: Any, k: int = 10) -> list[Any]:
    """Items of the *other* modality most similar to ``value`` (e.g. images for a text).

    Args:
        db: folder written by `build_index`.
        modality: the query's modality name (``text`` to search images by text).
        value: the query (a string, an image path ...).
    """
    from polyfuse.retrieval.index import VectorIndex

    try:
        info = json.loads((Path(db) / "index.json").read_text())
    except FileNotFoundError:
        raise ArtifactError(
            f"{db} is not a polyfuse index", hint="build one with `polyfuse index`"
        ) from None
    roles = info["roles"]
    if modality not in (roles["item"], roles["query"]):
        raise ConfigError("search", f"the index holds {roles['item']} and {roles['query']}")
    target = roles["item"] if modality == roles["query"] else roles["query"]
    aligner = Aligner.load(info["artifact"])
    q = aligner.embed(modality, [value])[0].numpy()
    return VectorIndex.open(db, target).search(q, k, exact=not info["ann"][target])
