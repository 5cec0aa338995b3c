"""Run configuration: dataclasses that store component *names*, loaded from YAML.

A config is plain data (serialisable, diffable); components are built from it
through the registries. Unknown keys are errors that name the key and suggest
the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

from polyfuse.core.errors import ConfigError

TASKS = ("multiclass", "multilabel", "regression", "contrastive", "captioning")
PRECISIONS = ("auto", "bf16", "fp32")
BAD_ROW_POLICIES = ("skip", "fail")


def check_keys(given: Mapping[str, Any], allowed: Iterable[str], *, where: str) -> None:
    """Raise `ConfigError` for the first key of ``given`` not in ``allowed``."""
    allowed = list(allowed)
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            raise ConfigError(
                f"{where}.{key}",
                f"unknown key; valid keys: {', '.join(sorted(allowed))}",
                hint=f"did you mean '{close[0]}'?" if close else None,
            )


@dataclass
class ComponentConfig:
    """A registry name plus the keyword arguments of its builder.

    In YAML either a bare name (``fusion: gated``) or a mapping with ``name``
    and parameters (``fusion: {name: gated, hidden: 128}``).
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, *, where: str) -> ComponentConfig:
        """Parse a bare name or a ``{name: ..., **params}`` mapping."""
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping) and isinstance(value.get("name"), str):
            params = {k: v for k, v in value.items() if k != "name"}
            return cls(str(value["name"]), params)
        raise ConfigError(where, f"expected a name or a mapping with 'name', got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """YAML form."""
        return {"name": self.name, **self.params}


@dataclass
class ModalityConfig:
    """One modality: its contract kind, encoder and per-modality training knobs.

    Attributes:
        kind: contract kind (``image``, ``audio``, ``text``, ``timeseries``).
        encoder: encoder registry name and parameters.
        contract: contract parameters; unset ones take the encoder's defaults.
        dropout: probability of hiding this modality from the fusion per
            training sample (never all modalities of a sample at once).
        encoder_lr: learning rate of the encoder (``None``: ``train.lr``).
        adapter_lr: learning rate of the adapter and auxiliary head.
        loss_weight: weight of this modality's auxiliary (unimodal) loss; 0 keeps
            the auxiliary head for analysis without letting it shape the encoder.
        noise: probability of replacing this modality's input with pure noise for a
            training sample that has another modality (label unchanged), so the model
            learns that an uninformative input (dead microphone, blank frame) carries
            no evidence instead of trusting it. Image, audio and time series.
    """

    kind: str
    encoder: ComponentConfig
    contract: dict[str, Any] = field(default_factory=dict)
    dropout: float = 0.0
    encoder_lr: float | None = None
    adapter_lr: float | None = None
    loss_weight: float = 0.3
    noise: float = 0.0

    @classmethod
    def parse(cls, name: str, value: Any) -> ModalityConfig:
        """Parse ``modalities.<name>``."""
        where = f"modalities.{name}"
        if not isinstance(value, Mapping):
            raise ConfigError(where, "expected a mapping with at least 'kind' and 'encoder'")
        check_keys(value, [f.name for f in dataclasses.fields(cls)], where=where)
        for key in ("kind", "encoder"):
            if key not in value:
                raise ConfigError(f"{where}.{key}", "is required")
        out = cls(
            kind=str(value["kind"]),
            encoder=ComponentConfig.parse(value["encoder"], where=f"{where}.encoder"),
            contract=dict(value.get("contract") or {}),
            dropout=float(value.get("dropout", 0.0)),
            encoder_lr=_opt_float(value.get("encoder_lr")),
            adapter_lr=_opt_float(value.get("adapter_lr")),
            loss_weight=float(value.get("loss_weight", 0.3)),
            noise=float(value.get("noise", 0.0)),
        )
        if not 0.0 <= out.noise < 1.0:
            raise ConfigError(f"{where}.noise", f"must be in [0, 1), got {out.noise}")
        if out.noise and out.kind == "text":
            raise ConfigError(f"{where}.noise", "noise substitution has no text noise model")
        if not 0.0 <= out.dropout < 1.0:
            raise ConfigError(f"{where}.dropout", f"must be in [0, 1), got {out.dropout}")
        if out.loss_weight < 0:
            raise ConfigError(f"{where}.loss_weight", "must be >= 0")
        return out

    def to_dict(self) -> dict[str, Any]:
        """YAML form."""
        return {
            "kind": self.kind,
            "encoder": self.encoder.to_dict(),
            "contract": dict(self.contract),
            "dropout": self.dropout,
            "encoder_lr": self.encoder_lr,
            "adapter_lr": self.adapter_lr,
            "loss_weight": self.loss_weight,
            "noise": self.noise,
        }


@dataclass
class ModelConfig:
    """Shared dimension, adapter, fusion and head.

    Attributes:
        dim: shared embedding dimension every adapter projects to.
        adapter: ``linear`` or ``mlp``.
        fusion: fusion registry name and parameters.
        head_hidden: hidden units of the prediction head (0: linear head).
        dropout: dropout inside adapters and head.
    """

    dim: int = 128
    adapter: str = "linear"
    fusion: ComponentConfig = field(default_factory=lambda: ComponentConfig("gated"))
    head_hidden: int = 0
    dropout: float = 0.1

    @classmethod
    def parse(cls, value: Mapping[str, Any]) -> ModelConfig:
        """Parse the ``model`` section."""
        check_keys(value, [f.name for f in dataclasses.fields(cls)], where="model")
        out = cls()
        for key, raw in value.items():
            if key == "fusion":
                out.fusion = ComponentConfig.parse(raw, where="model.fusion")
            else:
                setattr(out, key, _coerce(f"model.{key}", raw, getattr(out, key)))
        if out.adapter not in ("linear", "mlp"):
            raise ConfigError("model.adapter", "must be 'linear' or 'mlp'")
        return out

    def to_dict(self) -> dict[str, Any]:
        """YAML form."""
        data = dataclasses.asdict(self)
        data["fusion"] = self.fusion.to_dict()
        return data


@dataclass
class TrainConfig:
    """Optimisation and run settings.

    Attributes:
        epochs: maximum epochs.
        batch_size: samples per optimiser micro-batch.
        grad_accum: micro-batches per optimiser step.
        lr: learning rate of fusion and head (and of modalities without their own).
        weight_decay: AdamW weight decay (not applied to biases and norms).
        warmup: fraction of optimiser steps spent in linear warm-up.
        min_lr_ratio: cosine schedule floor as a fraction of each group's lr.
        clip_norm: gradient-norm clipping (0 disables).
        precision: ``auto`` (bf16 autocast where the device supports it fast:
            CUDA with bf16), ``bf16`` or ``fp32``.
        metric: validation metric for early stopping and best-checkpoint choice; ties
            are broken by the lower validation loss.
        select: ``full`` scores a checkpoint on samples with all their modalities;
            ``subsets`` on the mean over that and every single modality alone (a
            model meant to survive missing inputs is chosen for it); ``auto`` is
            ``subsets`` when any modality dropout is configured.
        patience: epochs without improvement before stopping (0 disables).
        seed: seed for weights, shuffling and modality dropout.
        num_workers: DataLoader worker processes.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        on_bad_row: ``skip`` (report and go on) or ``fail``.
        feature_cache: cache frozen-encoder outputs on disk.
        cache_dir: where the feature cache lives (default ``$POLYFUSE_CACHE`` or
            ``~/.cache/polyfuse``).
        memory_cache_mb: RAM budget for preprocessed inputs kept between epochs.
        stall_epochs: epochs a modality's loss may stagnate before a warning.
        stall_tolerance: relative improvement below which a loss counts as stalled.
    """

    epochs: int = 20
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05
    min_lr_ratio: float = 0.01
    clip_norm: float = 1.0
    precision: str = "auto"
    metric: str = "auto"
    select: str = "auto"
    patience: int = 5
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    on_bad_row: str = "skip"
    feature_cache: bool = True
    cache_dir: str | None = None
    memory_cache_mb: int = 2048
    stall_epochs: int = 3
    stall_tolerance: float = 0.01

    @classmethod
    def parse(cls, value: Mapping[str, Any]) -> TrainConfig:
        """Parse the ``train`` section."""
        out = _parse_section(cls(), value, "train")
        out.check()
        return out

    def check(self) -> None:
        """Cross-field validation."""
        if self.precision not in PRECISIONS:
            raise ConfigError("train.precision", f"must be one of {', '.join(PRECISIONS)}")
        if self.select not in ("auto", "full", "subsets"):
            raise ConfigError("train.select", "must be auto, full or subsets")
        if self.on_bad_row not in BAD_ROW_POLICIES:
            raise ConfigError("train.on_bad_row", "must be 'skip' or 'fail'")
        for key in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}", "must be >= 1")
        if not 0.0 <= self.warmup < 1.0:
            raise ConfigError("train.warmup", "is a fraction of steps in [0, 1)")
        if self.lr <= 0:
            raise ConfigError("train.lr", "must be > 0")


@dataclass
class AlignConfig:
    """Options of ``task: contrastive`` beyond the adapters themselves.

    Attributes:
        ensemble: adapter pairs trained with seeds ``train.seed + k``; the artifact's
            similarity is the mean of their cosines (its embedding their concatenation
            scaled by ``1/sqrt(ensemble)``).
        querybank: keep the training queries (pooled features) in the artifact and apply
            querybank normalisation (QB-norm) when ranking in `evaluate`.
        scorer: also train the token-level consistency scorer
            (`polyfuse.retrieval.consistency`) on true pairs against attribute-swapped and
            random captions; the artifact's consistency score then combines it with
            the cosine (weights fitted on validation data).
        scorer_members: scorers trained with different seeds and averaged.
        scorer_epochs: epochs per scorer (the best validation epoch is kept).
        scorer_dim: width of the scorer.
        colour: give the scorer colour-name tokens of the image (`polyfuse.retrieval.colour`).
        alternatives_per_step: swapped versions of each training caption drawn per step
            (the scorer ranks the true caption above them).
    """

    ensemble: int = 1
    querybank: bool = False
    scorer: bool = False
    scorer_members: int = 2
    scorer_epochs: int = 8
    scorer_dim: int = 256
    colour: bool = True
    alternatives_per_step: int = 3

    @classmethod
    def parse(cls, value: Mapping[str, Any]) -> AlignConfig:
        """Parse the ``align`` section."""
        out = _parse_section(cls(), value, "align")
        for key in (
            "ensemble",
            "scorer_members",
            "scorer_epochs",
            "scorer_dim",
            "alternatives_per_step",
        ):
            if getattr(out, key) < 1:
                raise ConfigError(f"align.{key}", "must be >= 1")
        return out


@dataclass
class Config:
    """A full training configuration (the YAML file ``polyfuse train`` reads).

    Attributes:
        task: ``multiclass``, ``multilabel``, ``regression`` or ``contrastive``
            (alignment of two modalities into one space; see `polyfuse.retrieval`).
        modalities: modality name -> its configuration; names are the manifest keys.
        model: shared dimension, fusion and head.
        train: optimisation settings.
        label: manifest key holding the target.
        align: ensemble, query bank and consistency scorer of ``task: contrastive``.
    """

    task: str
    modalities: dict[str, ModalityConfig]
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    label: str = "label"
    align: AlignConfig = field(default_factory=AlignConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Validate and build from a mapping (parsed YAML)."""
        if not isinstance(data, Mapping):
            raise ConfigError("<root>", "a config must be a mapping")
        check_keys(data, ["task", "modalities", "model", "train", "label", "align"], where="<root>")
        task = str(data.get("task", "multiclass"))
        if task not in TASKS:
            raise ConfigError("task", f"must be one of {', '.join(TASKS)}, got '{task}'")
        raw_mods = data.get("modalities")
        if not isinstance(raw_mods, Mapping) or not raw_mods:
            raise ConfigError("modalities", "needs at least one modality")
        modalities = {str(k): ModalityConfig.parse(str(k), v) for k, v in raw_mods.items()}
        label = str(data.get("label", "label"))
        if label in modalities:
            raise ConfigError("label", f"'{label}' is also a modality name")
        return cls(
            task=task,
            modalities=dict(sorted(modalities.items())),
            model=ModelConfig.parse(data.get("model") or {}),
            train=TrainConfig.parse(data.get("train") or {}),
            label=label,
            align=AlignConfig.parse(data.get("align") or {}),
        )

    @classmethod
    def from_file(cls, path: str | Path) -> Self:
        """Load a YAML (or JSON) config file."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(str(path), "config file not found") from None
        except yaml.YAMLError as exc:
            raise ConfigError(str(path), f"not valid YAML: {exc}") from exc
        return cls.from_dict(data or {})

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (round-trips through `from_dict`)."""
        return {
            "task": self.task,
            "label": self.label,
            "modalities": {k: m.to_dict() for k, m in self.modalities.items()},
            "model": self.model.to_dict(),
            "train": dataclasses.asdict(self.train),
            **({"align": dataclasses.asdict(self.align)} if self.task == "contrastive" else {}),
        }

    def to_yaml(self) -> str:
        """YAML text."""
        import yaml

        return str(yaml.safe_dump(self.to_dict(), sort_keys=False))


_S = TypeVar("_S")


def _parse_section(out: _S, value: Mapping[str, Any], where: str) -> _S:
    """Set the fields of a flat dataclass section from YAML values, each coerced to the
    type of its default; unknown keys are refused."""
    check_keys(value, [f.name for f in dataclasses.fields(out)], where=where)  # type: ignore[arg-type]
    for key, raw in value.items():
        setattr(out, key, _coerce(f"{where}.{key}", raw, getattr(out, key)))
    return out


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _coerce(key: str, raw: Any, default: Any) -> Any:
    """Convert a YAML scalar to the type of the field default, or fail naming the key."""
    if default is None or raw is None:
        return raw
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(raw, bool):
                return raw
            raise ValueError(raw)
        if kind is int and isinstance(raw, float) and not raw.is_integer():
            raise ValueError(raw)
        return kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(key, f"expected {kind.__name__}, got {raw!r}") from None
