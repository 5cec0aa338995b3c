"""``task: contrastive``: train alignment adapters from a config and use the artifact.

`train_alignment` reads pair manifests (rows with both modalities; several rows may
share an item, e.g. five captions of one image), serves frozen-encoder features from the
feature cache, trains `AlignmentModel` with multi-positive InfoNCE (epoch picked on
validation Recall@5) and writes an artifact folder; `Aligner.load` embeds new inputs.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polyfuse.align.features import PairFeatures, pair_features
from polyfuse.align.model import AlignmentModel
from polyfuse.align.retrieval import retrieval_metrics
from polyfuse.align.train import fit_alignment
from polyfuse.build import build_contracts
from polyfuse.config import Config
from polyfuse.data.manifest import Manifest
from polyfuse.encoders import build_encoder
from polyfuse.encoders.base import Encoder
from polyfuse.errors import ArtifactError, ConfigError
from polyfuse.modalities import contract_from_dict
from polyfuse.modalities.base import ModalityContract

FORMAT = 1
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
    """Train alignment adapters for a ``task: contrastive`` config and save the artifact."""
    item, query = _roles(config)
    contracts = build_contracts(config)
    encoders = _encoders(config, contracts)
    names = tuple(config.modalities)
    data = {
        split: pair_features(
            encoders, Manifest.load(path, names, config.label), item, progress=progress
        )
        for split, path in (("train", train), ("val", val))
    }
    tr = data["train"]
    torch.manual_seed(config.train.seed)  # the adapters' initial weights
    model = AlignmentModel(
        {m: int(f.shape[1]) for m, f in tr.feats.items()},
        dim=config.model.dim,
        dropout=config.model.dropout,
    )

    def score(m: AlignmentModel) -> float:
        return _metrics(m, data["val"], item, query)["text_to_image"]["R@5"]

    cfg = config.train
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
        seed=cfg.seed,
        score=score,
        progress=progress,
    )
    metrics = _metrics(fit.model, data["val"], item, query)
    with torch.no_grad():  # agreement of every true validation pair
        va = data["val"]
        true = _agreement(fit.model, va.feats[item], va.feats[query], item, query)
    threshold = float(torch.quantile(true.double(), FALSE_ALARM))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(fit.model.state_dict(), str(out / "model.safetensors"))
    (out / "config.yaml").write_text(config.to_yaml())
    (out / "contracts.json").write_text(
        json.dumps({m: c.to_dict() for m, c in contracts.items()}, indent=2)
    )
    (out / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in fit.history))
    info = {
        "format": FORMAT,
        "kind": "alignment",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "roles": {"item": item, "query": query},
        "in_dims": {m: int(f.shape[1]) for m, f in tr.feats.items()},
        "dim": config.model.dim,
        "best_epoch": fit.best_epoch,
        "logit_scale": fit.model.scale,
        "val": metrics,
        "consistency": {"threshold": threshold, "target_false_alarm": FALSE_ALARM},
    }
    (out / "artifact.json").write_text(json.dumps(info, indent=2))
    return AlignmentResult(out, fit.best_epoch, metrics)


def _agreement(
    model: AlignmentModel, item_feats: Tensor, query_feats: Tensor, item: str, query: str
) -> Tensor:
    """Cosine agreement of row-aligned pairs in the shared space."""
    return (model.embed(item, item_feats) * model.embed(query, query_feats)).sum(1)


def _metrics(
    model: AlignmentModel, data: PairFeatures, item: str, query: str
) -> dict[str, dict[str, float]]:
    """Retrieval metrics: queries (e.g. captions) against unique items (e.g. images)."""
    with torch.no_grad():
        zq = model.embed(query, data.feats[query])
        zi = model.embed(item, data.feats[item][data.first])
    return retrieval_metrics(zq @ zi.T, data.group)


def evaluate_alignment(
    artifact: str | Path, data: str | Path, *, progress: bool = True
) -> dict[str, dict[str, float]]:
    """Retrieval protocol on a pair manifest: R@1/5/10 and median rank in both directions."""
    aligner = Aligner.load(artifact)
    item, query = aligner.info["roles"]["item"], aligner.info["roles"]["query"]
    manifest = Manifest.load(data, tuple(aligner.encoders))
    pf = pair_features(aligner.encoders, manifest, item, progress=progress)
    labels = [manifest.rows[i].label for i in pf.rows]
    if set(labels) <= {"match", "mismatch"} and "mismatch" in labels:
        return _consistency(aligner, manifest, pf, labels)
    out = _metrics(aligner.model, pf, item, query)
    out["n"] = {"queries": float(len(pf.group)), "items": float(len(pf.first))}
    return out


def _consistency(
    aligner: Aligner, manifest: Manifest, pf: PairFeatures, labels: list[Any]
) -> dict[str, dict[str, float]]:
    """AUC, the artifact's calibrated threshold, its false-alarm rate and recall; AUC per
    ``kind`` column value (each kind's mismatches against its matches, or the plain matches)."""
    from polyfuse.evaluation.metrics import roc_auc

    item, query = aligner.info["roles"]["item"], aligner.info["roles"]["query"]
    with torch.no_grad():
        score = _agreement(aligner.model, pf.feats[item], pf.feats[query], item, query)
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
    kinds = [str(manifest.rows[i].metadata.get("kind", "")) for i in pf.rows]
    by_kind = {}
    for kind in sorted(set(kinds) - {""}):
        rows = torch.tensor([k == kind for k in kinds])
        if bool((rows & match).any()):  # this kind has its own matches (paired negatives)
            sel = rows
        else:  # compare its mismatches with the plain matches
            sel = rows | (match & torch.tensor([k == "" for k in kinds]))
        by_kind[kind] = roc_auc(score[sel], match[sel]) or 0.0
    out["auc_by_kind"] = by_kind
    return out


class Aligner:
    """A trained alignment artifact: embeds raw inputs of either modality into the shared space.

    Args:
        model: the adapters.
        encoders: modality -> frozen encoder.
        info: ``artifact.json``.
    """

    def __init__(self, model: AlignmentModel, encoders: dict[str, Encoder], info: dict[str, Any]):
        self.model = model.eval()
        self.encoders = encoders
        self.info = info

    @classmethod
    def load(cls, path: str | Path) -> Aligner:
        """Load an artifact written by `train_alignment`."""
        path = Path(path)
        try:
            info = json.loads((path / "artifact.json").read_text())
        except FileNotFoundError:
            raise ArtifactError(f"{path} is not an alignment artifact (no artifact.json)") from None
        if info.get("kind") != "alignment" or info.get("format") != FORMAT:
            raise ArtifactError(
                f"{path}: artifact kind {info.get('kind')!r} format {info.get('format')!r} "
                f"is not an alignment artifact of format {FORMAT}",
                hint="train it with a `task: contrastive` config",
            )
        config = Config.from_file(path / "config.yaml")
        raw = json.loads((path / "contracts.json").read_text())
        contracts = {m: contract_from_dict(d) for m, d in raw.items()}
        model = AlignmentModel(info["in_dims"], dim=info["dim"])
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(path / "model.safetensors")))
        return cls(model, _encoders(config, contracts), info)

    def consistency(self, items: Sequence[Any], queries: Sequence[Any]) -> list[tuple[float, bool]]:
        """Agreement score and contradiction flag of each (item, query) pair, e.g. (image, text).

        The flag uses the threshold calibrated on validation data at training time
        (``FALSE_ALARM`` of true pairs are flagged).
        """
        item, query = self.info["roles"]["item"], self.info["roles"]["query"]
        scores = (self.embed(item, items) * self.embed(query, queries)).sum(1)
        threshold = float(self.info["consistency"]["threshold"])
        return [(float(v), float(v) < threshold) for v in scores]

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
            xs = [contract.preprocess(contract.load(v, field=modality)) for v in chunk]
            mb = contract.collate(xs, torch.ones(len(xs), dtype=torch.bool))
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
    from polyfuse.align.index import VectorIndex

    aligner = Aligner.load(artifact)
    item, query = aligner.info["roles"]["item"], aligner.info["roles"]["query"]
    manifest = Manifest.load(data, tuple(aligner.encoders))
    pf = pair_features(aligner.encoders, manifest, item, progress=progress)
    rows = [manifest.rows[i] for i in pf.rows]
    with torch.no_grad():
        zi = aligner.model.embed(item, pf.feats[item][pf.first]).numpy()
        zq = aligner.model.embed(query, pf.feats[query]).numpy()
    texts: dict[int, list[str]] = {}
    for j, g in enumerate(pf.group.tolist()):
        texts.setdefault(g, []).append(str(rows[j].values[query]))
    items = [rows[int(j)] for j in pf.first]
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
    info = {"artifact": str(Path(artifact).resolve()), "roles": aligner.info["roles"], "ann": ann}
    (Path(db) / "index.json").write_text(json.dumps(info, indent=2))
    return {name: len(t[1]) for name, t in tables.items()}


def search_index(db: str | Path, modality: str, value: Any, k: int = 10) -> list[Any]:
    """Items of the *other* modality most similar to ``value`` (e.g. images for a text).

    Args:
        db: folder written by `build_index`.
        modality: the query's modality name (``text`` to search images by text).
        value: the query (a string, an image path ...).
    """
    from polyfuse.align.index import VectorIndex

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
