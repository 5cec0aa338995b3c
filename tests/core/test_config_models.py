"""Every field of every config model refuses a wrong type, an out-of-range value and a
misspelled key with a `ConfigError` naming the full key path (walked from the models'
JSON schemas, so a new field is covered without a new test)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyfuse.core.config import Config, json_schema
from polyfuse.core.errors import ConfigError
from polyfuse.guard.policy import Policy, PolicyFile
from polyfuse.ops.slo import SloFile, parse_slo
from polyfuse.serve.config import ServeConfig
from polyfuse.serve.runtime.ray import RayConfig
from tests.conftest import SMALL_CONFIG

#: Fields that are not YAML keys of their model (filled by the loader) or free-form.
SKIP = {"api_key_hashes", "admin_key_hashes", "key_limits", "contract", "params", "resources"}


class Model(NamedTuple):
    """A config model, a valid document of it, its loader and its key-path root."""

    name: str
    schema: dict[str, Any]
    base: dict[str, Any]
    load: Callable[[Mapping[str, Any]], object]
    root: str
    #: mapping-valued fields walked through one example key (modalities -> "text")
    examples: dict[str, str]


MODELS = [
    Model(
        "config",
        json_schema(Config),
        # audio takes every optional section (text has no non-signal substitution); the
        # substitution's required source is set so its other fields can be tried alone
        {
            **SMALL_CONFIG,
            "modalities": {
                **SMALL_CONFIG["modalities"],
                "audio": {**SMALL_CONFIG["modalities"]["audio"], "substitute": {"source": "n.txt"}},
            },
        },
        Config.from_dict,
        "",
        {"modalities": "audio"},
    ),
    Model("serve", json_schema(ServeConfig), {}, ServeConfig.from_dict, "serve", {}),
    Model(
        "policy",
        json_schema(PolicyFile),
        {
            "entities": {"US_SSN": {"action": "redact"}},
            "modalities": {"audio": {"PERSON": {"action": "allow"}}},
        },
        Policy.from_dict,
        "policy",
        {"entities": "US_SSN", "modalities": "audio", "audio": "PERSON"},
    ),
    Model(
        "ray",
        json_schema(RayConfig),
        {"per_modality": {"image": {}}},
        RayConfig.from_dict,
        "ray",
        {"per_modality": "image"},
    ),
    Model(
        "slo",
        json_schema(SloFile),
        {
            "objectives": {
                name: {"target": 0.99}
                for name in ("availability", "latency", "degraded", "firewall_block", "drift")
            }
            | {"accuracy": {"target": 0.99, "floor": 0.8}}
        },
        parse_slo,
        "slo",
        {},
    ),
]


class Leaf(NamedTuple):
    """One field reached in a model: its path and its JSON schema."""

    model: Model
    path: tuple[str, ...]
    schema: dict[str, Any]

    @property
    def key(self) -> str:
        return ".".join((self.model.root, *self.path) if self.model.root else self.path)

    def __repr__(self) -> str:
        return f"{self.model.name}:{self.key}"


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[1]]
    return node


def _walk(model: Model, node: dict[str, Any], path: tuple[str, ...]) -> Iterator[Leaf]:
    defs = model.schema.get("$defs", {})
    for name, raw in _resolve(node, defs).get("properties", {}).items():
        if name in SKIP:
            continue
        sub = _resolve(raw, defs)
        refs = [b for b in sub.get("anyOf", []) if "$ref" in b]
        if len(refs) == 1:  # an optional section (slo.yaml objectives)
            sub = _resolve(refs[0], defs)
        yield Leaf(model, (*path, name), sub)
        extra = sub.get("additionalProperties")
        if "properties" in sub and "ComponentConfig" not in str(node.get("title", "")):
            if sub.get("title") != "ComponentConfig":
                yield from _walk(model, sub, (*path, name))
        elif isinstance(extra, dict) and name in model.examples:
            inner = _resolve(extra, defs)
            example = model.examples[name]
            if "properties" in inner:
                yield from _walk(model, inner, (*path, name, example))
            elif isinstance(inner.get("additionalProperties"), dict) and example in model.examples:
                key = model.examples[example]
                rule = _resolve(inner["additionalProperties"], defs)
                yield from _walk(model, rule, (*path, name, example, key))


LEAVES = [leaf for m in MODELS for leaf in _walk(m, m.schema, ())]


def _branches(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in schema.get("anyOf", [schema]) if b.get("type") != "null"]


def _types(schema: dict[str, Any]) -> set[str]:
    return {
        "enum" if "enum" in b or "const" in b else b.get("type", "object")
        for b in _branches(schema)
    }


def wrong_values(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of a type the field refuses (YAML strings for numbers and booleans too)."""
    kinds = _types(schema)
    options: list[st.SearchStrategy[Any]] = [
        st.just([1, 2]) if "array" not in kinds else st.just(7)
    ]
    if kinds & {"integer", "number", "boolean"} and not kinds & {"string", "enum"}:
        options.append(st.sampled_from(["8000", "abc", "no", "yes", "1.5x"]))
    if "string" not in kinds and "enum" not in kinds and "integer" not in kinds:
        options.append(st.just({"nested": 1}) if "object" not in kinds else st.just(5))
    if kinds in ({"integer"}, {"integer", "enum"}):
        options.append(st.floats(0.1, 0.9))
    if kinds & {"string", "enum"} and not kinds & {"integer", "number", "boolean"}:
        options.append(st.integers(-5, 5))
    if "boolean" in kinds:
        options.append(st.sampled_from(["no", "off", 0, 1]))
    return st.one_of(options)


def out_of_range(schema: dict[str, Any]) -> list[Any]:
    """Values just outside the field's declared range (empty when it has none)."""
    out: list[Any] = []
    for b in _branches(schema):
        integer = b.get("type") == "integer"
        step = 1 if integer else 0.5
        for low in ("minimum", "ge"):
            if low in b:
                out.append(b[low] - step)
        for low in ("exclusiveMinimum", "gt"):
            if low in b:
                out.append(b[low])
        for high in ("maximum", "le"):
            if high in b:
                out.append(b[high] + step)
        for high in ("exclusiveMaximum", "lt"):
            if high in b:
                out.append(b[high])
        if "enum" in b:
            out.append("not-a-choice")
    return out


def _with(base: Mapping[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(dict(base))
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return data


def _refused(leaf: Leaf, value: Any) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        leaf.model.load(_with(leaf.model.base, leaf.path, value))
    return err.value


def test_the_walk_reaches_every_model_and_section() -> None:
    keys = {leaf.key for leaf in LEAVES}
    expected = {
        "model.dim",
        "train.lr",
        "align.ensemble",
        "modalities.audio.dropout",
        "modalities.audio.substitute.p",
        "serve.max_items",
        "serve.cache",
        "policy.default.threshold",
        "policy.entities.US_SSN.action",
        "policy.modalities.audio.PERSON.threshold",
        "ray.deployment.max_batch_size",
        "ray.per_modality.image.num_gpus",
        "slo.objectives.latency.routes",
        "slo.objectives.accuracy.max_drop",
        "slo.objectives.drift.for",
    }
    assert expected <= keys, expected - keys


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_wrong_types_name_the_key(data: st.DataObject) -> None:
    leaf = data.draw(st.sampled_from(LEAVES))
    value = data.draw(wrong_values(leaf.schema))
    err = _refused(leaf, value)
    assert err.key == leaf.key or err.key.startswith(f"{leaf.key}."), (leaf, value, err)
    assert err.hint, err


@pytest.mark.parametrize("leaf", [f for f in LEAVES if out_of_range(f.schema)], ids=repr)
def test_out_of_range_values_name_the_key(leaf: Leaf) -> None:
    for value in out_of_range(leaf.schema):
        err = _refused(leaf, value)
        assert err.key == leaf.key, (value, err)


@pytest.mark.parametrize("leaf", LEAVES, ids=repr)
def test_misspelled_keys_suggest_the_field(leaf: Leaf) -> None:
    name = leaf.path[-1]
    if (
        leaf.model.name == "policy"
        and len(leaf.path) > 1
        and leaf.path[-2] in ("entities", "audio")
    ):
        pytest.skip("an entity type, not a field (covered by the unknown-type test)")
    if len(name) == 1:
        pytest.skip("a one-letter key has no near miss to suggest")
    if "quality" in leaf.path[:-1]:
        pytest.skip(
            "quality-gate keys are the modality kind's check parameters, checked when the "
            "gate is built (tests/modalities/test_quality.py)"
        )
    typo = name[:-1] + ("x" if name[-1] != "x" else "y")
    with pytest.raises(ConfigError) as err:
        leaf.model.load(_with(leaf.model.base, (*leaf.path[:-1], typo), 1))
    parent = Leaf(leaf.model, (*leaf.path[:-1], typo), {}).key
    top_policy = leaf.model.name == "policy" and len(leaf.path) == 1
    assert err.value.key == ("policy" if top_policy else parent)
    assert typo in str(err.value) and f"did you mean '{name}'" in str(err.value.hint)
