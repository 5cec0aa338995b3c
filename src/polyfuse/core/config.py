"""Run configuration: typed sections that store component *names*, loaded from YAML.

A config is plain data (serialisable, diffable); components are built from it
through the registries. Every section is a pydantic v2 dataclass: unknown keys are
errors that suggest the closest valid one, YAML strings are not silently read as
numbers or booleans, and every failure is a `ConfigError` naming the full key path
(`validate` maps pydantic's errors for every config model of the project).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic.dataclasses import dataclass

from polyfuse.core.errors import ConfigError

TASKS = ("multiclass", "multilabel", "regression", "contrastive", "captioning")
PRECISIONS = ("auto", "bf16", "fp32")
BAD_ROW_POLICIES = ("skip", "fail")

#: pydantic settings shared by every config model of the project.
MODEL_CONFIG = ConfigDict(extra="forbid", validate_assignment=False)

_YAML_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _yaml_float(value: object) -> object:
    """Accept ints, floats and PyYAML's scientific strings (``1e-3``); refuse the rest
    (a bool is not a number, ``"abc"`` is not a float)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, str):
        if _YAML_FLOAT.match(value.strip()):
            return float(value)
        raise ValueError(f"expected a number, got the string {value[:40]!r}")
    return value


#: A float as YAML writes it (PyYAML reads ``1e-3`` as a string).
YamlFloat = Annotated[float, BeforeValidator(_yaml_float)]


def _probability(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError("must be in [0, 1)")
    return value


#: A probability in [0, 1) (the range said in the message and in the JSON schema).
Probability = Annotated[
    YamlFloat,
    AfterValidator(_probability),
    Field(json_schema_extra={"minimum": 0.0, "exclusiveMaximum": 1.0}),
]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
# constraints before the YAML validator, so the JSON schema carries them (minimum ...)
NonNegativeFloat = Annotated[float, Field(ge=0.0), BeforeValidator(_yaml_float)]
PositiveFloat = Annotated[float, Field(gt=0.0), BeforeValidator(_yaml_float)]
UnitFloat = Annotated[float, Field(ge=0.0, le=1.0), BeforeValidator(_yaml_float)]

_T = TypeVar("_T")


def check_keys(given: Mapping[str, Any], allowed: Iterable[str], *, where: str) -> None:
    """Raise `ConfigError` for the first key of ``given`` not in ``allowed``."""
    allowed = list(allowed)
    for key in given:
        if key not in allowed:
            raise unknown_key(f"{where}.{key}", str(key), allowed)


def unknown_key(path: str, key: str, allowed: Iterable[str]) -> ConfigError:
    """The `ConfigError` of an unknown key, listing the valid ones and the closest."""
    allowed = sorted(allowed)
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
    return ConfigError(
        path,
        f"unknown key; valid keys: {', '.join(allowed)}",
        hint=f"did you mean '{close[0]}'?" if close else "remove it",
    )


#: Parts of a pydantic error location that name a union member, not a key.
_UNION_TAGS = frozenset({"int", "float", "str", "bool", "none", "dict", "list", "tuple"})


def _key_path(where: str, loc: tuple[int | str, ...]) -> str:
    path = where
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.isidentifier() and part not in _UNION_TAGS:
            path = f"{path}.{part}" if path else part
    return path or "<root>"


def _allowed_keys(adapter: TypeAdapter[Any], loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the model reached by following ``loc`` through the JSON schema."""
    schema = adapter.json_schema()
    defs = schema.get("$defs", {})
    node: dict[str, Any] = schema
    for part in loc:
        node = _model_node(node, defs)
        props = node.get("properties", {})
        if isinstance(part, str) and part in props:
            node = props[part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return []
    return sorted(_model_node(node, defs).get("properties", {}))


def _model_node(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Follow references, and an optional section's ``anyOf`` to its model."""
    while True:
        if "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[1]]
        elif any("$ref" in n for n in node.get("anyOf", [])):
            node = next(n for n in node["anyOf"] if "$ref" in n)
        else:
            return node


def config_error(exc: ValidationError, adapter: TypeAdapter[Any], where: str = "") -> ConfigError:
    """The first pydantic error as a `ConfigError` naming the full key path with a hint."""
    errors = exc.errors(include_url=False)
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])  # typos first
    loc = tuple(err["loc"])
    path = _key_path(where, loc)
    if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        return unknown_key(path, str(loc[-1]), _allowed_keys(adapter, loc[:-1]))
    if err["type"] == "missing":
        return ConfigError(path, "is required", hint="add it")
    message = str(err["msg"]).removeprefix("Value error, ")
    given = err.get("input")
    plain = isinstance(given, Mapping | list) or "got" in message
    shown = "" if plain else f", got {given!r:.60}"
    return ConfigError(path, f"{message[0].lower()}{message[1:]}{shown}", hint=_hint(err))


def _hint(err: Any) -> str:
    kind = str(err["type"])
    typed = {
        "bool": "write true or false, without quotes",
        "int": "write a whole number without quotes",
        "float": "write a number without quotes",
        "string": "write text (quote it if YAML reads it as something else)",
    }
    for prefix, hint in typed.items():
        if kind.startswith(prefix):
            return hint
    if "expected a number" in str(err["msg"]):
        return typed["float"]
    if kind in ("literal_error", "enum"):
        return "use one of the values listed"
    if kind.startswith(("greater", "less")):
        return "pick a value inside the range"
    return "see 'polyfuse schema' for the valid form"


def validate(kind: type[_T], data: object, where: str = "") -> _T:
    """``data`` (parsed YAML) validated as ``kind``; any failure is a `ConfigError`."""
    adapter: TypeAdapter[_T] = TypeAdapter(kind)
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise config_error(exc, adapter, where) from None


def config_errors(where: str) -> Callable[[type[_T]], type[_T]]:
    """Class decorator for a pydantic config dataclass: a bad value passed to its
    constructor from Python (``ServeConfig(port=0)``) raises `ConfigError` naming
    ``where.<key>`` like a bad value in a file, never pydantic's `ValidationError`."""

    def decorate(cls: type[_T]) -> type[_T]:
        init = cls.__init__

        @functools.wraps(init)
        def checked_init(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                init(self, *args, **kwargs)
            except ValidationError as exc:
                raise config_error(exc, TypeAdapter(cls), where) from None

        setattr(cls, "__init__", checked_init)  # noqa: B010 (mypy refuses assigning a method)
        return cls

    return decorate


def json_schema(kind: type[Any]) -> dict[str, Any]:
    """JSON Schema of a config model (for editor completion: ``polyfuse schema``)."""
    return TypeAdapter(kind).json_schema()


@dataclass(config=MODEL_CONFIG)
class ComponentConfig:
    """A registry name plus the keyword arguments of its builder.

    In YAML either a bare name (``fusion: gated``) or a mapping with ``name``
    and parameters (``fusion: {name: gated, hidden: 128}``).
    """

    name: StrictStr
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _bare_or_mapping(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value, "params": {}}
        if isinstance(value, Mapping) and "params" not in value:
            if not isinstance(value.get("name"), str):
                raise ValueError("expected a name or a mapping with 'name'")
            params = {k: v for k, v in value.items() if k != "name"}
            return {"name": value["name"], "params": params}
        return value

    @classmethod
    def parse(cls, value: Any, *, where: str) -> ComponentConfig:
        """Parse a bare name or a ``{name: ..., **params}`` mapping."""
        return validate(cls, value, where)

    def to_dict(self) -> dict[str, Any]:
        """YAML form."""
        return {"name": self.name, **self.params}


def _gated() -> ComponentConfig:
    return ComponentConfig(name="gated")


@dataclass(config=MODEL_CONFIG)
class QualityConfig:
    """The per-request quality gate of one modality (`polyfuse.modalities.quality`).

    In YAML ``quality: true`` (the kind's check with its defaults), ``quality: false``,
    or a mapping ``{enabled: true, min_speech_ms: 100}``: every key but ``enabled`` is a
    parameter of the modality kind's check, validated when the gate is built (training
    start, artifact load). The gate is saved with the artifact's config, so prediction,
    evaluation and serving drop a failing input exactly as training did.

    Attributes:
        enabled: run the check.
        params: the kind's check parameters (unset ones take the check's defaults).
    """

    enabled: StrictBool = True
    params: dict[str, Any] = dataclasses.field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _bool_or_mapping(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"enabled": value, "params": {}}
        if isinstance(value, Mapping) and "params" not in value:
            params = {k: v for k, v in value.items() if k != "enabled"}
            return {"enabled": value.get("enabled", True), "params": params}
        return value

    def to_dict(self) -> dict[str, Any]:
        """YAML form."""
        return {"enabled": self.enabled, **self.params}


@dataclass(config=MODEL_CONFIG)
class SubstituteConfig:
    """Realistic non-signal substitution in training (``modalities.<name>.substitute``).

    For a training sample that has another modality, the input is replaced with
    probability ``p`` by a window of a real non-signal recording or picture (environmental
    sound instead of speech, an empty scene instead of a digit); the label stays. The
    fusion learns that such inputs carry no evidence, which synthetic ``noise`` alone does
    not teach. Image, audio and time series.

    Attributes:
        source: a folder of files, or a text file listing one path per line (``#``
            comments allowed); relative paths are resolved against the training
            manifest's folder. Files the modality's contract cannot read are skipped.
        p: substitution probability per eligible training sample.
        max_files: read at most this many files (in sorted order).
    """

    source: StrictStr
    p: Probability = 0.2
    max_files: PositiveInt = 2000


@config_errors("modalities.<name>")
@dataclass(config=MODEL_CONFIG)
class ModalityConfig:
    """One modality: its contract kind, encoder and per-modality training knobs.

    Attributes:
        kind: contract kind (``image``, ``audio``, ``text``, ``timeseries``).
        encoder: encoder registry name and parameters.
        contract: contract parameters; unset ones take the encoder's defaults.
        dropout: probability of hiding this modality from the fusion per
            training sample (never all modalities of a sample at once).
        encoder_lr: learning rate of the encoder (``None``: ``train.lr``; ``0``: its weights
            stay as initialised, e.g. to measure what a modality's own learning adds).
        adapter_lr: learning rate of the adapter and auxiliary head.
        loss_weight: weight of this modality's auxiliary (unimodal) loss; 0 keeps
            the auxiliary head for analysis without letting it shape the encoder.
        noise: probability of replacing this modality's input with pure noise for a
            training sample that has another modality (label unchanged), so the model
            learns that an uninformative input (dead microphone, blank frame) carries
            no evidence instead of trusting it. Image, audio and time series.
        quality: the per-request quality gate (None: no gate).
        substitute: realistic non-signal substitution in training (None: off).
        source: read this modality's input from another manifest key's file: ``video``
            makes an audio modality read the soundtrack of the row's video (a video
            without an audio track is a missing audio modality). Audio only.
    """

    kind: StrictStr
    encoder: ComponentConfig
    contract: dict[str, Any] = dataclasses.field(default_factory=dict)
    dropout: Probability = 0.0
    encoder_lr: NonNegativeFloat | None = None
    adapter_lr: PositiveFloat | None = None
    loss_weight: NonNegativeFloat = 0.3
    noise: Probability = 0.0
    quality: QualityConfig | None = None
    substitute: SubstituteConfig | None = None
    source: StrictStr | None = None

    @classmethod
    def parse(cls, name: str, value: Any) -> ModalityConfig:
        """Parse ``modalities.<name>``."""
        out = validate(cls, value, f"modalities.{name}")
        out.check(name)
        return out

    def check(self, name: str) -> None:
        """Cross-field validation."""
        if self.noise and self.kind == "text":
            raise ConfigError(
                f"modalities.{name}.noise",
                "noise substitution has no text noise model",
                hint="set noise: 0 for text modalities",
            )
        if self.source is not None and (self.kind != "audio" or self.source == name):
            raise ConfigError(
                f"modalities.{name}.source",
                "only an audio modality reads another key's file (e.g. source: video)",
                hint="remove source, or use it on an audio modality with the video's key",
            )
        if self.substitute is None:
            return
        where = f"modalities.{name}.substitute"
        if self.kind == "text":
            raise ConfigError(
                where, "text has no non-signal substitution", hint="remove it for text modalities"
            )
        if self.noise + self.substitute.p >= 1.0:
            raise ConfigError(
                f"{where}.p",
                f"noise ({self.noise}) + substitute.p ({self.substitute.p}) must stay below 1",
                hint="lower one of them: a sample needs a chance to keep its real input",
            )

    @property
    def gated(self) -> bool:
        """Whether a quality gate runs on this modality."""
        return self.quality is not None and self.quality.enabled

    def to_dict(self) -> dict[str, Any]:
        """YAML form."""
        data = dataclasses.asdict(self)
        data["encoder"] = self.encoder.to_dict()
        data["quality"] = None if self.quality is None else self.quality.to_dict()
        if self.source is None:
            del data["source"]  # configs written before ``source`` existed read the same
        return data


@config_errors("model")
@dataclass(config=MODEL_CONFIG)
class ModelConfig:
    """Shared dimension, adapter, fusion and head.

    Attributes:
        dim: shared embedding dimension every adapter projects to.
        adapter: ``linear`` or ``mlp``.
        fusion: fusion registry name and parameters.
        head_hidden: hidden units of the prediction head (0: linear head).
        dropout: dropout inside adapters and head.
    """

    dim: PositiveInt = 128
    adapter: Literal["linear", "mlp"] = "linear"
    fusion: ComponentConfig = dataclasses.field(default_factory=_gated)
    head_hidden: NonNegativeInt = 0
    dropout: Probability = 0.1

    @classmethod
    def parse(cls, value: Mapping[str, Any]) -> ModelConfig:
        """Parse the ``model`` section."""
        return validate(cls, value, "model")

    def to_dict(self) -> dict[str, Any]:
        """YAML form."""
        data = dataclasses.asdict(self)
        data["fusion"] = self.fusion.to_dict()
        return data


def _device(value: str) -> str:
    if value in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise ValueError("must be auto, cpu, cuda, cuda:N or mps")


@config_errors("train")
@dataclass(config=MODEL_CONFIG)
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
        card: write the model card into the artifact at the end (a full evaluation of
            the validation manifest, corruption robustness included: seconds to minutes);
            ``polyfuse card ARTIFACT --data M`` writes one later.
        tracking: ``none``, or ``mlflow``: log the flattened config as parameters, the
            ``metrics.jsonl`` records per epoch and the artifact folder to an MLflow run on
            the tracking server named by ``MLFLOW_TRACKING_URI`` (`polyfuse.release.tracking`).
        experiment: MLflow experiment of the run (default: the config file's name).
    """

    epochs: PositiveInt = 20
    batch_size: PositiveInt = 32
    grad_accum: PositiveInt = 1
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.01
    warmup: Probability = 0.05
    min_lr_ratio: UnitFloat = 0.01
    clip_norm: NonNegativeFloat = 1.0
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    metric: StrictStr = "auto"
    select: Literal["auto", "full", "subsets"] = "auto"
    patience: NonNegativeInt = 5
    seed: StrictInt = 0
    num_workers: NonNegativeInt = 0
    device: Annotated[StrictStr, AfterValidator(_device)] = "auto"
    on_bad_row: Literal["skip", "fail"] = "skip"
    feature_cache: StrictBool = True
    cache_dir: StrictStr | None = None
    memory_cache_mb: NonNegativeInt = 2048
    stall_epochs: PositiveInt = 3
    stall_tolerance: NonNegativeFloat = 0.01
    card: StrictBool = True
    tracking: Literal["none", "mlflow"] = "none"
    experiment: Annotated[StrictStr, Field(min_length=1)] | None = None

    @classmethod
    def parse(cls, value: Mapping[str, Any]) -> TrainConfig:
        """Parse the ``train`` section."""
        return validate(cls, value, "train")

    def check(self) -> None:
        """Re-validate (after fields were set by hand); raises `ConfigError`."""
        validate(TrainConfig, dataclasses.asdict(self), "train")


@config_errors("align")
@dataclass(config=MODEL_CONFIG)
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

    ensemble: PositiveInt = 1
    querybank: StrictBool = False
    scorer: StrictBool = False
    scorer_members: PositiveInt = 2
    scorer_epochs: PositiveInt = 8
    scorer_dim: PositiveInt = 256
    colour: StrictBool = True
    alternatives_per_step: PositiveInt = 3

    @classmethod
    def parse(cls, value: Mapping[str, Any]) -> AlignConfig:
        """Parse the ``align`` section."""
        return validate(cls, value, "align")


@config_errors("card")
@dataclass(config=MODEL_CONFIG)
class CardConfig:
    """What the model card says that evaluation cannot measure (``polyfuse card``).

    Every field is optional: the card fills what is missing from the evaluation itself
    (what the model predicts from which inputs, its weakest subsets and slices), so the
    card never has a blank; what is written here comes first.

    Attributes:
        name: the model's name on the card (default: the artifact folder's name).
        intended_use: what the model is for, in a sentence or two.
        limitations: known limits (the card adds the measured ones).
        out_of_scope: uses it must not be put to.
        owners: people or teams to contact.
        policy: the firewall policy file the model is served with (default: polyfuse's
            default policy); the card summarises it.
    """

    name: StrictStr | None = None
    intended_use: StrictStr | None = None
    limitations: list[StrictStr] = dataclasses.field(default_factory=list)
    out_of_scope: list[StrictStr] = dataclasses.field(default_factory=list)
    owners: list[StrictStr] = dataclasses.field(default_factory=list)
    policy: StrictStr | None = None


@config_errors("")
@dataclass(config=MODEL_CONFIG)
class Config:
    """A full training configuration (the YAML file ``polyfuse train`` reads).

    Attributes:
        task: ``multiclass``, ``multilabel``, ``regression``, ``contrastive``
            (alignment of two modalities into one space; see `polyfuse.retrieval`)
            or ``captioning``.
        modalities: modality name -> its configuration; names are the manifest keys.
        model: shared dimension, fusion and head.
        train: optimisation settings.
        label: manifest key holding the target.
        align: ensemble, query bank and consistency scorer of ``task: contrastive``.
        card: what the model card says beyond the measurements (`CardConfig`).
    """

    task: Literal["multiclass", "multilabel", "regression", "contrastive", "captioning"]
    modalities: Annotated[dict[str, ModalityConfig], Field(min_length=1)]
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    label: StrictStr = "label"
    align: AlignConfig = dataclasses.field(default_factory=AlignConfig)
    card: CardConfig = dataclasses.field(default_factory=CardConfig)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Validate and build from a mapping (parsed YAML); raises `ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError("<root>", "a config must be a mapping", hint="see polyfuse schema")
        data = {k: v for k, v in data.items() if v is not None or k not in _SECTIONS}
        out = validate(cls, {"task": "multiclass", **data})
        for name, modality in out.modalities.items():
            modality.check(name)
            _check_training_only(out.task, name, modality)
        if out.label in out.modalities:
            raise ConfigError(
                "label", f"'{out.label}' is also a modality name", hint="rename one of them"
            )
        out.modalities = dict(sorted(out.modalities.items()))
        return out

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
            **({"card": card} if (card := _set_fields(self.card)) else {}),
        }

    def to_yaml(self) -> str:
        """YAML text."""
        import yaml

        return str(yaml.safe_dump(self.to_dict(), sort_keys=False))


_SECTIONS = ("model", "train", "align", "card")


def _set_fields(card: CardConfig) -> dict[str, Any]:
    """The card fields a config sets (an unset card section stays out of saved configs)."""
    return {k: v for k, v in dataclasses.asdict(card).items() if v not in (None, [])}


def _check_training_only(task: str, name: str, modality: ModalityConfig) -> None:
    """Quality gates and substitution act in the classifier trainer and its artifacts:
    refuse them where they would silently do nothing."""
    if task not in ("contrastive", "captioning"):
        return
    for key, used in (("quality", modality.gated), ("substitute", modality.substitute)):
        if used:
            raise ConfigError(
                f"modalities.{name}.{key}",
                f"is not applied by task '{task}' (only multiclass, multilabel and regression)",
                hint=f"remove modalities.{name}.{key}",
            )
