"""The model card: what a model is, what it was trained and evaluated on, and how it behaves.

Training writes one into every classifier artifact (``card.json``, ``card.md``,
``card.html``), filled from a full evaluation of the validation manifest; ``polyfuse card
ARTIFACT --data MANIFEST`` re-evaluates on any labelled manifest and rewrites it. Every
section comes from measurements or from the artifact itself (the config's ``card:``
section adds what evaluation cannot know: intended use, limits, owners, the firewall
policy), so a card never has a blank; `ModelCard.empty_sections` says otherwise.

Sections (`SECTIONS`): model, intended use, training data (manifest hashes, row counts,
label distribution), encoders (versions, weights digests, licences), evaluation data,
metrics with 95% intervals, metrics per modality subset with intervals, Shapley
contributions, robustness to corruption, calibration, worst slices and classes, firewall
policy.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyfuse.core.errors import ArtifactError

if TYPE_CHECKING:
    from polyfuse.artifacts.classifier import Artifact
    from polyfuse.data.manifest import Manifest
    from polyfuse.evaluation.analysis import Analysis
    from polyfuse.inference.predict import Predictor

#: Version of ``card.json``.
CARD_VERSION = 1
#: The card's files inside an artifact folder (written after ``artifact.json``, so they
#: can be regenerated without touching the verified files).
CARD_JSON, CARD_MD, CARD_HTML = "card.json", "card.md", "card.html"
#: Corruption severity of the card's robustness section (1..5; 3 is the middle one).
CARD_SEVERITIES: tuple[int, ...] = (3,)

#: Section key -> its title, in card order.
SECTIONS: dict[str, str] = {
    "model": "Model",
    "intended_use": "Intended use and limitations",
    "training_data": "Training data",
    "encoders": "Encoders",
    "evaluation_data": "Evaluation data",
    "metrics": "Metrics",
    "subsets": "Metrics per modality subset",
    "contributions": "Modality contributions (Shapley)",
    "robustness": "Robustness to corruption",
    "calibration": "Calibration",
    "slices": "Worst slices and classes",
    "firewall": "Firewall policy",
}


#: Section -> the keys that carry its substance (labels such as ``metric`` do not count):
#: a section is empty when none of them holds a value.
SUBSTANCE: dict[str, tuple[str, ...]] = {
    "model": ("modalities",),
    "intended_use": ("intended_use",),
    "training_data": ("manifests",),
    "encoders": (),  # modality -> entry: the whole section is its substance
    "evaluation_data": ("rows",),
    "metrics": ("values",),
    "subsets": ("subsets",),
    "contributions": ("shapley",),
    "robustness": ("corruptions",),
    "calibration": ("ece", "rmse"),
    "slices": ("columns", "worst_classes"),
    "firewall": ("actions",),
}


@dataclass
class ModelCard:
    """A model card: one dict of facts per section (the JSON form is ``card.json``)."""

    model: dict[str, Any]
    intended_use: dict[str, Any]
    training_data: dict[str, Any]
    encoders: dict[str, Any]
    evaluation_data: dict[str, Any]
    metrics: dict[str, Any]
    subsets: dict[str, Any]
    contributions: dict[str, Any]
    robustness: dict[str, Any]
    calibration: dict[str, Any]
    slices: dict[str, Any]
    firewall: dict[str, Any]
    version: int = CARD_VERSION
    created: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    )

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``card.json``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Read the JSON form back; a card of another version is refused."""
        if data.get("version") != CARD_VERSION:
            raise ArtifactError(
                f"model card version {data.get('version')} is not {CARD_VERSION}",
                hint="regenerate it: polyfuse card ARTIFACT --data MANIFEST",
            )
        missing = [k for k in SECTIONS if k not in data]
        if missing:
            raise ArtifactError(
                f"model card lacks the section(s) {missing}",
                hint="regenerate it: polyfuse card ARTIFACT --data MANIFEST",
            )
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def empty_sections(self) -> list[str]:
        """Sections whose substance is missing (a complete card has none): see `SUBSTANCE`."""
        return [
            k
            for k in SECTIONS
            if not (
                any(_filled(getattr(self, k).get(key)) for key in SUBSTANCE[k])
                if SUBSTANCE[k]
                else _filled(getattr(self, k))
            )
        ]

    def to_markdown(self) -> str:
        """The card as Markdown."""
        return render_markdown(self)

    def to_html(self) -> str:
        """The card as one self-contained HTML page (no external resources)."""
        return render_html(self)


def _filled(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_filled(v) for v in value.values())
    if isinstance(value, list):
        return any(_filled(v) for v in value)
    return value is not None and value != ""


# --------------------------------------------------------------------------- building


def card_analyses(
    *,
    slices: Sequence[str] | None = None,
    severities: Sequence[int] = CARD_SEVERITIES,
    bootstrap: int = 1000,
) -> list[Any]:
    """The analyses a card needs: `polyfuse evaluate`'s defaults plus robustness."""
    from polyfuse.evaluation.analysis import analyses_for

    return analyses_for(
        slices=slices, robustness=True, severities=tuple(severities), bootstrap=bootstrap
    )


def build_card(
    artifact: Artifact,
    analysis: Analysis,
    *,
    policy: str | Path | None = None,
    source: str = "",
) -> ModelCard:
    """A card from an artifact and a full evaluation of it (`card_analyses`).

    Args:
        artifact: the loaded classifier artifact.
        analysis: its evaluation (needs robustness; subsets and contributions included).
        policy: firewall policy file the model is served with (default: the config's
            ``card.policy``, else polyfuse's default policy).
        source: how the evaluation data relates to the model (``validation split``, ...).
    """
    data = analysis.to_dict()
    if data.get("robustness") is None or data.get("ablation") is None:
        raise ArtifactError(
            "a model card needs the subset and robustness analyses",
            hint="evaluate with polyfuse.release.card.card_analyses()",
        )
    metric = data["ablation"]["metric"]
    cfg = artifact.config
    policy = policy if policy is not None else cfg.card.policy
    card = ModelCard(
        model=_model(artifact),
        intended_use={},
        training_data=_training_data(artifact),
        encoders=_encoders(artifact),
        evaluation_data=_evaluation_data(data, source),
        metrics=_metrics(data),
        subsets=_subsets(data, metric),
        contributions=_contributions(data),
        robustness=_robustness(data),
        calibration=_calibration(data),
        slices=_slices(data),
        firewall=_firewall(policy),
    )
    card.intended_use = _intended_use(artifact, card, metric)
    return card


def write_card(
    artifact: str | Path | Artifact | Predictor,
    data: str | Path | Manifest,
    *,
    slices: Sequence[str] | None = None,
    severities: Sequence[int] = CARD_SEVERITIES,
    policy: str | Path | None = None,
    source: str = "",
    progress: bool = False,
    device: str = "auto",
) -> ModelCard:
    """Evaluate an artifact on a labelled manifest and write its card into the folder.

    Returns:
        The card (also saved as ``card.json``, ``card.md`` and ``card.html``).
    """
    from polyfuse.evaluation.analysis import analyze
    from polyfuse.inference.predict import Predictor

    predictor = Predictor.of(artifact, device)
    art = predictor.artifact
    if art.path is None:
        raise ArtifactError("the artifact has no folder", hint="save it before writing a card")
    analysis = analyze(
        predictor,
        data,
        card_analyses(slices=slices, severities=severities),
        progress=progress,
        device=device,
    )
    card = build_card(art, analysis, policy=policy, source=source)
    save_card(card, art.path)
    return card


def save_card(card: ModelCard, folder: str | Path) -> list[Path]:
    """Write ``card.json``, ``card.md`` and ``card.html`` into an artifact folder."""
    folder = Path(folder)
    out = [folder / CARD_JSON, folder / CARD_MD, folder / CARD_HTML]
    out[0].write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    out[1].write_text(card.to_markdown(), encoding="utf-8")
    out[2].write_text(card.to_html(), encoding="utf-8")
    return out


def load_card(folder: str | Path) -> ModelCard:
    """The card stored in an artifact folder."""
    file = Path(folder) / CARD_JSON
    if not file.is_file():
        raise ArtifactError(
            f"{folder} has no model card ({CARD_JSON})",
            hint=f"write one: polyfuse card {folder} --data LABELLED_MANIFEST",
        )
    try:
        return ModelCard.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except json.JSONDecodeError as exc:
        raise ArtifactError(
            f"{file} is not valid JSON: {exc}",
            hint=f"regenerate it: polyfuse card {folder} --data LABELLED_MANIFEST",
        ) from exc


def _model(art: Artifact) -> dict[str, Any]:
    info, cfg = art.info, art.config
    labels = list(art.task.labels)
    return {
        "name": cfg.card.name or (art.path.name if art.path else "model"),
        "kind": info.get("kind", "classifier"),
        "task": art.task.name,
        "label_column": cfg.label,
        "labels": labels,
        "modalities": {
            m: {
                "kind": c.kind,
                "contract_version": c.version,
                "encoder": cfg.modalities[m].encoder.name,
            }
            for m, c in art.contracts.items()
        },
        "fusion": cfg.model.fusion.name,
        "dimension": cfg.model.dim,
        "created": info.get("created"),
        "versions": info.get("versions", {}),
        "weights_sha256": info.get("files", {}).get("model.safetensors"),
        "best_epoch": art.metrics.get("best_epoch"),
        "epochs_run": art.metrics.get("epochs_run"),
    }


def _training_data(art: Artifact) -> dict[str, Any]:
    """Lineage of every training manifest, with its label distribution when readable."""
    splits: dict[str, Any] = {}
    for entry in art.lineage or ():
        row: dict[str, Any] = {"path": entry.path, "sha256": entry.sha256, "rows": entry.rows}
        counts = _label_counts(art, Path(entry.path), entry.sha256)
        if counts:
            row["labels"] = counts
        splits[entry.split] = row
    if not splits:  # an artifact loaded from a folder: lineage is in artifact.json
        for split, entry in art.info.get("lineage", {}).items():
            row = dict(entry)
            counts = _label_counts(art, Path(entry["path"]), entry.get("sha256", ""))
            if counts:
                row["labels"] = counts
            splits[split] = row
    m = art.metrics
    return {
        "manifests": splits,
        "train_rows": m.get("train_rows"),
        "val_rows": m.get("val_rows"),
        "bad_rows": m.get("bad_rows"),
    }


def _label_counts(art: Artifact, path: Path, sha256: str) -> dict[str, int]:
    """Label -> rows of a manifest (read by the one manifest reader), if the file is
    still the one trained on."""
    from polyfuse.artifacts.format import sha256_file
    from polyfuse.data.manifest import Manifest

    if not path.is_file() or (sha256 and sha256_file(path) != sha256):
        return {}
    manifest = Manifest.load(path, art.modalities, art.config.label)
    counts: Counter[str] = Counter()
    for row in manifest.rows:
        value = row.label
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                counts[str(v)] += 1
    return dict(sorted(counts.items()))


def _encoders(art: Artifact) -> dict[str, Any]:
    from polyfuse.core.weights import licence_of

    out: dict[str, Any] = {}
    for m, saved in art.info.get("encoders", {}).items():
        spec = art.config.modalities[m].encoder
        pretrained = _pretrained_name(spec.name, spec.params)
        out[m] = {
            "name": spec.name,
            "class": saved.get("class"),
            "version": saved.get("version"),
            "frozen": bool(saved.get("frozen")),
            "weights": pretrained or "trained from scratch with this model",
            "weights_digest": saved.get("weights_digest") or None,
            "licence": licence_of(pretrained)
            if pretrained
            else "the model's own (no third-party weights)",
        }
    return out


def _pretrained_name(encoder: str, params: dict[str, Any]) -> str | None:
    """The pretrained model an encoder loads (None for trainable encoders)."""
    from polyfuse.encoders import encoder_class

    cls = encoder_class(encoder)
    if not getattr(cls, "pretrained", False):
        return None
    if encoder == "efficientnet_lite0":
        return "efficientnet-lite0"
    import inspect

    default = inspect.signature(cls.__init__).parameters.get("model")
    name = params.get("model", default.default if default is not None else encoder)
    return str(name)


def _evaluation_data(data: dict[str, Any], source: str) -> dict[str, Any]:
    from polyfuse.artifacts.format import sha256_file

    info = data["info"]
    path = Path(info["data"])
    return {
        "path": str(path),
        "sha256": sha256_file(path) if path.is_file() else None,
        "rows": info["n"],
        "bad_rows": len(data.get("bad_rows", [])),
        "source": source or "a labelled manifest given to `polyfuse card --data`",
        "modalities_fed": info["fed"],
        "evaluated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _metrics(data: dict[str, Any]) -> dict[str, Any]:
    m = data["metrics"]
    headline = {k: v for k, v in m.items() if isinstance(v, int | float) and k != "n"}
    out: dict[str, Any] = {"n": m.get("n"), "values": headline}
    if m.get("confidence_intervals"):
        out["intervals"] = m["confidence_intervals"]
    if isinstance(m.get("roc_auc"), dict) and m["roc_auc"].get("macro") is not None:
        out["values"]["roc_auc_macro"] = m["roc_auc"]["macro"]
    return out


def _subsets(data: dict[str, Any], metric: str) -> dict[str, Any]:
    ab = data["ablation"]
    rows = {}
    for key, v in sorted(ab["subsets"].items(), key=lambda kv: (-len(kv[1]["modalities"]), kv[0])):
        rows[key] = {
            "modalities": v["modalities"],
            metric: v[metric],
            **({"macro_f1": v["macro_f1"]} if "macro_f1" in v else {}),
            **(
                {"interval": v["confidence_intervals"][metric]}
                if "confidence_intervals" in v
                else {}
            ),
        }
    return {
        "metric": metric,
        "subsets": rows,
        "relative_robustness": ab["relative_robustness"],
        "effective_robustness": ab["effective_robustness"],
    }


def _contributions(data: dict[str, Any]) -> dict[str, Any]:
    c = data["contributions"]
    out: dict[str, Any] = {
        "modalities": c["modalities"],
        "shapley": {
            vf: {"share": v["share"], "mean": v["mean"]} for vf, v in c["value_functions"].items()
        },
        "permutation_drop": {m: v["mean"] for m, v in c["permutation_importance"]["drop"].items()},
        "permutation_metric": c["permutation_importance"]["metric"],
    }
    if c.get("fusion_weights"):
        out["fusion_weights"] = c["fusion_weights"]
    return out


def _robustness(data: dict[str, Any]) -> dict[str, Any]:
    r = data["robustness"]
    metric = r["metric"]
    curves = {
        name: {
            "modality": v["modality"],
            "severities": v["severities"],
            metric: v[metric],
            "relative_robustness": v["relative_robustness"],
        }
        for name, v in r["curves"].items()
    }
    return {"metric": metric, "corruptions": curves}


def _calibration(data: dict[str, Any]) -> dict[str, Any]:
    m = data["metrics"]
    cal = m.get("calibration")
    if cal:
        filled = [b for b in cal["bins"] if b["n"]]
        over = sum(b["n"] * (b["confidence"] - b["accuracy"]) for b in filled) / max(
            1, sum(b["n"] for b in filled)
        )
        return {
            "ece": cal["ece"],
            "mce": cal["mce"],
            "mean_overconfidence": over,
            "log_loss": m.get("log_loss"),
            "bins": filled,
        }
    # regression: how far predictions fall from the truth (no probabilities to calibrate)
    return {
        "rmse": m.get("rmse"),
        "mae": m.get("mae"),
        "r2": m.get("r2"),
        "note": "regression: the error of the predicted values (no probabilities)",
    }


def _slices(data: dict[str, Any]) -> dict[str, Any]:
    """Per metadata column its worst slice (slices below the analysis's minimum size are
    shown, marked as too small to judge), and the weakest classes."""
    m = data["metrics"]
    per_class = m.get("per_class") or {}
    worst_classes = sorted(per_class.items(), key=lambda kv: kv[1].get("f1", 0.0))[:3]
    columns = {}
    for col, sl in (data.get("slices") or {}).items():
        metric, groups = sl["metric"], sl["slices"]
        if not groups:
            continue
        judged = sl["worst"] is not None
        worst = sl["worst"] if judged else min(groups, key=lambda v: groups[v][metric])
        columns[col] = {
            "metric": metric,
            "worst": worst,
            "worst_value": groups[worst].get(metric),
            "worst_rows": groups[worst].get("n"),
            "gap": sl["gap"] if judged else float(sl["overall"] - groups[worst][metric]),
            "flagged": sl["flagged"],
            "judged": judged,
            "slices": len(groups),
        }
    return {
        "columns": columns,
        "worst_classes": {
            k: {"f1": v.get("f1"), "recall": v.get("recall"), "support": v.get("support")}
            for k, v in worst_classes
        },
    }


def _firewall(policy: str | Path | None) -> dict[str, Any]:
    from polyfuse.guard.policy import Policy

    loaded = Policy.load(policy)
    by_action: dict[str, list[str]] = {}
    for name, rule in sorted(loaded.entities.items()):
        by_action.setdefault(rule.action, []).append(name)
    overrides = {
        m: {k: r.action for k, r in rules.items()} for m, rules in loaded.modalities.items()
    }
    return {
        "source": str(policy) if policy is not None else "polyfuse default policy",
        "digest": loaded.digest,
        "default": {"action": loaded.default.action, "threshold": loaded.default.threshold},
        "actions": by_action,
        "modality_overrides": overrides,
        "outputs": {
            "enabled": loaded.outputs.enabled,
            "names": loaded.outputs.names,
            "injection": loaded.outputs.injection,
            "overrides": {k: r.action for k, r in loaded.outputs.entities.items()},
        },
    }


def _intended_use(art: Artifact, card: ModelCard, metric: str) -> dict[str, Any]:
    """The config's statements first, then what the measurements say."""
    cfg = art.config.card
    mods = list(card.model["modalities"])
    labels = card.model["labels"]
    shown = ", ".join(labels[:10]) + (", ..." if len(labels) > 10 else "")
    default_use = (
        f"Predicts `{card.model['label_column']}` ({art.task.name}, {len(labels)} labels: "
        f"{shown}) from {', '.join(mods)}; any of them may be missing at prediction time."
    )
    measured: list[str] = []
    subsets = card.subsets["subsets"]
    full = subsets.get("+".join(sorted(mods)), {}).get(metric)
    for key, v in subsets.items():
        if len(v["modalities"]) == 1 and full is not None:
            measured.append(
                f"With only {key}, {metric} is {v[metric]:.3f} (vs {full:.3f} with every modality)."
            )
    for col, sl in card.slices["columns"].items():
        if sl["flagged"]:
            measured.append(
                f"Weakest {col}: {sl['worst']}, {sl['gap']:.3f} {sl['metric']} below overall."
            )
    curves = card.robustness["corruptions"]
    if curves:
        rm = card.robustness["metric"]
        name, worst = min(curves.items(), key=lambda kv: kv[1][rm][-1])
        measured.append(
            f"Under {name} (severity {worst['severities'][-1]}) {rm} falls from "
            f"{worst[rm][0]:.3f} to {worst[rm][-1]:.3f}."
        )
    ev = card.evaluation_data
    measured.append(
        f"Measured on {ev['rows']} rows of {Path(ev['path']).name}; data unlike it "
        "(other sources, devices, speakers, languages) was not measured."
    )
    out_of_scope = list(cfg.out_of_scope) or [
        f"Anything beyond predicting `{card.model['label_column']}` from {', '.join(mods)}: "
        "the model was evaluated for nothing else."
    ]
    out: dict[str, Any] = {
        "intended_use": cfg.intended_use or default_use,
        "limitations": [*cfg.limitations, *measured],
        "out_of_scope": out_of_scope,
    }
    if cfg.owners:
        out["owners"] = list(cfg.owners)
    return out


# --------------------------------------------------------------------------- rendering


@dataclass
class _Block:
    """One section as renderable pieces: paragraphs, bullet lists and tables."""

    title: str
    key: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _ci(ci: dict[str, float] | None) -> str:
    return "-" if not ci else f"{ci['low']:.3f} - {ci['high']:.3f}"


def _blocks(card: ModelCard) -> list[_Block]:  # noqa: PLR0915 - one block per section
    out: list[_Block] = []
    mo = card.model
    b = _Block(SECTIONS["model"], "model")
    b.tables.append(
        (
            ["field", "value"],
            [
                ["name", _fmt(mo["name"])],
                ["task", f"{mo['task']} on `{mo['label_column']}`"],
                ["labels", f"{len(mo['labels'])}: {_fmt(mo['labels'][:20])}"],
                ["fusion", f"{mo['fusion']} (dimension {mo['dimension']})"],
                ["created", _fmt(mo["created"])],
                ["epochs", f"best {_fmt(mo['best_epoch'])} of {_fmt(mo['epochs_run'])}"],
                ["weights sha256", _fmt(mo["weights_sha256"])],
                ["versions", ", ".join(f"{k} {v}" for k, v in mo["versions"].items())],
            ],
        )
    )
    b.tables.append(
        (
            ["modality", "kind", "contract", "encoder"],
            [
                [m, v["kind"], f"v{v['contract_version']}", v["encoder"]]
                for m, v in mo["modalities"].items()
            ],
        )
    )
    out.append(b)

    iu = card.intended_use
    b = _Block(SECTIONS["intended_use"], "intended_use", paragraphs=[iu["intended_use"]])
    b.bullets = [f"Limitation: {x}" for x in iu["limitations"]]
    b.bullets += [f"Out of scope: {x}" for x in iu["out_of_scope"]]
    if iu.get("owners"):
        b.bullets.append("Owners: " + ", ".join(iu["owners"]))
    out.append(b)

    td = card.training_data
    b = _Block(SECTIONS["training_data"], "training_data")
    b.paragraphs.append(
        f"{_fmt(td['train_rows'])} training rows, {_fmt(td['val_rows'])} validation rows, "
        f"{_fmt(td['bad_rows'])} bad rows skipped."
    )
    b.tables.append(
        (
            ["split", "manifest", "sha256", "rows", "labels"],
            [
                [
                    split,
                    v["path"],
                    v.get("sha256") or "-",
                    _fmt(v.get("rows")),
                    ", ".join(f"{k}: {n}" for k, n in v.get("labels", {}).items())
                    or "manifest no longer at this path",
                ]
                for split, v in td["manifests"].items()
            ],
        )
    )
    out.append(b)

    b = _Block(SECTIONS["encoders"], "encoders")
    b.tables.append(
        (
            ["modality", "encoder", "version", "frozen", "weights", "licence", "digest"],
            [
                [
                    m,
                    f"{v['name']} ({v['class']})",
                    _fmt(v["version"]),
                    _fmt(v["frozen"]),
                    v["weights"],
                    v["licence"],
                    (v["weights_digest"] or "-")[:16],
                ]
                for m, v in card.encoders.items()
            ],
        )
    )
    out.append(b)

    ev = card.evaluation_data
    b = _Block(SECTIONS["evaluation_data"], "evaluation_data")
    b.paragraphs.append(
        f"{ev['rows']} rows of `{ev['path']}` ({ev['source']}), sha256 {_fmt(ev['sha256'])}; "
        f"{ev['bad_rows']} bad rows; modalities fed: {', '.join(ev['modalities_fed'])}; "
        f"evaluated {ev['evaluated']}."
    )
    out.append(b)

    me = card.metrics
    b = _Block(SECTIONS["metrics"], "metrics")
    ints = me.get("intervals", {})
    b.tables.append(
        (
            ["metric", "value", "95% interval"],
            [[k, _fmt(v), _ci(ints.get(k))] for k, v in me["values"].items()],
        )
    )
    out.append(b)

    su = card.subsets
    metric = su["metric"]
    b = _Block(SECTIONS["subsets"], "subsets")
    b.paragraphs.append(
        "The model fed only these modalities (the others missing). Relative robustness "
        f"{su['relative_robustness']:.3f}, effective robustness "
        f"{su['effective_robustness']:+.3f} (MultiBench)."
    )
    b.tables.append(
        (
            ["modalities", metric, "95% interval", "macro F1"],
            [
                [k, _fmt(v[metric]), _ci(v.get("interval")), _fmt(v.get("macro_f1"))]
                for k, v in su["subsets"].items()
            ],
        )
    )
    out.append(b)

    co = card.contributions
    b = _Block(SECTIONS["contributions"], "contributions")
    b.tables.append(
        (
            ["modality", *(f"Shapley share ({vf})" for vf in co["shapley"]), "permutation drop"],
            [
                [
                    m,
                    *(f"{v['share'][m]:.0%}" for v in co["shapley"].values()),
                    f"{co['permutation_drop'][m]:+.3f} {co['permutation_metric']}",
                ]
                for m in co["modalities"]
            ],
        )
    )
    out.append(b)

    ro = card.robustness
    b = _Block(SECTIONS["robustness"], "robustness")
    rm = ro["metric"]
    b.tables.append(
        (
            ["corruption", "modality", "severities", rm, "relative robustness"],
            [
                [
                    name,
                    v["modality"],
                    _fmt(v["severities"]),
                    _fmt(v[rm]),
                    _fmt(v["relative_robustness"]),
                ]
                for name, v in ro["corruptions"].items()
            ],
        )
    )
    if not ro["corruptions"]:
        b.paragraphs.append("No corruption is registered for these modality kinds.")
    out.append(b)

    ca = card.calibration
    b = _Block(SECTIONS["calibration"], "calibration")
    if "ece" in ca:
        b.paragraphs.append(
            f"Expected calibration error {ca['ece']:.3f}, maximum {ca['mce']:.3f}; on average "
            f"the model is {abs(ca['mean_overconfidence']):.3f} "
            f"{'over' if ca['mean_overconfidence'] > 0 else 'under'}confident."
        )
        b.tables.append(
            (
                ["confidence bin", "rows", "mean confidence", "accuracy"],
                [
                    [
                        f"{x['lo']:.2f}-{x['hi']:.2f}",
                        str(x["n"]),
                        _fmt(x["confidence"]),
                        _fmt(x["accuracy"]),
                    ]
                    for x in ca["bins"]
                ],
            )
        )
    else:
        b.paragraphs.append(
            f"{ca['note']}: RMSE {_fmt(ca['rmse'])}, MAE {_fmt(ca['mae'])}, R2 {_fmt(ca['r2'])}."
        )
    out.append(b)

    sl = card.slices
    b = _Block(SECTIONS["slices"], "slices")
    if sl["columns"]:
        b.tables.append(
            (
                ["column", "slices", "worst", "rows", "its metric", "gap below overall", "flagged"],
                [
                    [
                        c,
                        str(v["slices"]),
                        str(v["worst"]),
                        _fmt(v.get("worst_rows")),
                        _fmt(v["worst_value"]),
                        _fmt(v["gap"]),
                        _fmt(v["flagged"]) if v.get("judged", True) else "too few rows to judge",
                    ]
                    for c, v in sl["columns"].items()
                ],
            )
        )
    else:
        b.paragraphs.append("The evaluation data has no metadata column to slice on.")
    if sl["worst_classes"]:
        b.tables.append(
            (
                ["weakest class", "F1", "recall", "support"],
                [
                    [k, _fmt(v["f1"]), _fmt(v["recall"]), _fmt(v["support"])]
                    for k, v in sl["worst_classes"].items()
                ],
            )
        )
    out.append(b)

    fw = card.firewall
    b = _Block(SECTIONS["firewall"], "firewall")
    b.paragraphs.append(
        f"{fw['source']} (digest {fw['digest']}); findings of other types: "
        f"{fw['default']['action']} above score {fw['default']['threshold']}."
    )
    b.tables.append(
        (
            ["action", "types"],
            [[a, ", ".join(types)] for a, types in sorted(fw["actions"].items())],
        )
    )
    for m, rules in fw["modality_overrides"].items():
        b.bullets.append(f"{m}: " + ", ".join(f"{k} {a}" for k, a in rules.items()))
    outputs = fw.get("outputs")  # cards written before issue 19 have none
    if outputs is not None:
        b.bullets.append(_outputs_line(outputs))
    out.append(b)
    return out


def _outputs_line(outputs: dict[str, Any]) -> str:
    """The card's line on what the model returns (`polyfuse.guard.outputs`)."""
    if not outputs["enabled"]:
        return "outputs (captions, search results, labels): not scanned"
    also = [w for w, on in (("names", outputs["names"]), ("injection", outputs["injection"])) if on]
    line = "outputs (captions, search results, labels): scanned for identifiers and secrets"
    line += f", and {' and '.join(also)}" if also else ""
    rules = outputs["overrides"]
    return line + (": " + ", ".join(f"{k} {a}" for k, a in rules.items()) if rules else "")


def render_markdown(card: ModelCard) -> str:
    """The card as Markdown (GitHub tables)."""
    name = card.model["name"]
    lines = [f"# Model card: {name}", "", f"Generated by polyfuse on {card.created}.", ""]
    for b in _blocks(card):
        lines += [f"## {b.title}", ""]
        for p in b.paragraphs:
            lines += [p, ""]
        if b.bullets:
            lines += [f"- {x}" for x in b.bullets] + [""]
        for header, rows in b.tables:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
            lines.append("")
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_html(card: ModelCard) -> str:
    """The card as one self-contained HTML page, with the subset and robustness charts."""
    from polyfuse.evaluation.report import svg
    from polyfuse.evaluation.report.html import CSS, escape, table

    name = card.model["name"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Model card: {escape(name)}</title><style>{CSS}{CARD_CSS}</style></head><body>",
        f"<h1>Model card: {escape(name)}</h1>",
        f"<div class='meta'>generated by polyfuse on {escape(card.created)}</div>",
        "<nav>"
        + "".join(f"<a href='#{k}'>{escape(t)}</a>" for k, t in SECTIONS.items())
        + "</nav>",
    ]
    charts = _charts(card, svg)
    for b in _blocks(card):
        parts.append(f"<section id='{b.key}'><h2>{escape(b.title)}</h2>")
        parts += [f"<p>{_inline(p, escape)}</p>" for p in b.paragraphs]
        if b.bullets:
            parts.append(
                "<ul>" + "".join(f"<li>{_inline(x, escape)}</li>" for x in b.bullets) + "</ul>"
            )
        row = [table(h, ([_inline(c, escape) for c in r] for r in rows)) for h, rows in b.tables]
        row += charts.get(b.key, [])
        parts.append("<div class='row'>" + "".join(row) + "</div></section>")
    parts.append("</body></html>")
    return "\n".join(parts)


#: The card's tables hold words more than numbers: left-aligned.
CARD_CSS = "td{text-align:left}section{margin-bottom:8px}"


def _inline(text: str, escape: Any) -> str:
    """Escaped text with `code` spans."""
    pieces = str(escape(text)).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))


def _charts(card: ModelCard, svg: Any) -> dict[str, list[str]]:
    metric = card.subsets["metric"]
    bounded = metric == "accuracy"
    out = {
        "subsets": [
            svg.bar_chart(
                {k: v[metric] for k, v in card.subsets["subsets"].items()},
                f"{metric} by modality subset",
                low=0.0 if bounded else None,
                high=1.0 if bounded else None,
            )
        ]
    }
    shapley = card.contributions["shapley"]
    if shapley:
        vf, first = next(iter(shapley.items()))
        out["contributions"] = [svg.bar_chart(first["share"], f"Shapley share ({vf})")]
    if card.calibration.get("bins"):
        out["calibration"] = [svg.reliability_diagram(card.calibration["bins"], "reliability")]
    return out


def summary_lines(card: ModelCard) -> Iterable[str]:
    """A few lines for terminals and registry descriptions."""
    metric = card.subsets["metric"]
    yield f"{card.model['name']}: {card.model['task']} over {', '.join(card.model['modalities'])}"
    for key, v in card.subsets["subsets"].items():
        yield f"  {key:<28} {metric} {v[metric]:.3f}  95% {_ci(v.get('interval'))}"
