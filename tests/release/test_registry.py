"""The model registry on a real MLflow sqlite store in a temporary folder: model URIs,
names, gate results, registering (tags, card, gate, the training run reused), promotion and
rollback, errors that name what exists, and verified cached downloads.

The artifacts here are small hand-written folders that pass `read_info` (the registry is
the same for every kind); tests/release/test_registry_mlflow.py registers a trained model
and serves it."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from polyfuse.artifacts.format import sha256_file, write_json
from polyfuse.core.errors import ArtifactError, ModelRegistryError, TrackingError
from polyfuse.release.registry import (
    ModelRef,
    ModelRegistry,
    check_alias,
    check_model_name,
    lineage_digest,
    read_gate,
)

pytest.importorskip("mlflow")


def artifact(folder: Path, weights: bytes = b"weights", **extra: Any) -> Path:
    """A minimal folder that passes `read_info`: one weights file and its digest."""
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(weights)
    info = {
        "format": 1,
        "kind": "classifier",
        "task": "multiclass",
        "modalities": {},
        "versions": {"polyfuse": "0.1.0"},
        "lineage": {"train": {"path": str(folder / "train.jsonl"), "sha256": "ab", "rows": 3}},
        "files": {"model.safetensors": sha256_file(folder / "model.safetensors")},
        **extra,
    }
    write_json(folder / "artifact.json", info)
    return folder


def gate(folder: Path, passed: bool) -> Path:
    path = folder / f"gate-{passed}.json"
    path.write_text(json.dumps({"passed": passed, "rules": [{"name": "accuracy", "ok": passed}]}))
    return path


@pytest.fixture
def registry(mlflow_store: str, tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(cache_dir=tmp_path / "cache")


# ------------------------------------------------------------------ URIs, names, gates
@pytest.mark.parametrize(
    ("uri", "ref"),
    [
        ("models:/fraud@champion", ModelRef("fraud", alias="champion")),
        ("models:/fraud/3", ModelRef("fraud", version="3")),
        (
            "models:/my-model.v2@previous-champion",
            ModelRef("my-model.v2", alias="previous-champion"),
        ),
    ],
)
def test_model_uris_parse_and_print_back(uri: str, ref: ModelRef) -> None:
    assert ModelRef.parse(uri) == ref
    assert str(ref) == uri


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/fraud", "not a model URI"),
        ("models:/fraud@", "not a model URI"),
        ("models:/a/b/c", "not a model URI"),
        ("runs:/abc/artifact", "not a model URI"),
        ("models:/fraud/latest", "not a number"),
    ],
)
def test_malformed_model_uris_say_how_to_write_one(uri: str, message: str) -> None:
    with pytest.raises(ModelRegistryError, match=message) as exc:
        ModelRef.parse(uri)
    assert "models:/" in str(exc.value.hint)


@pytest.mark.parametrize("alias", ["champion", "challenger", "previous-champion", "ab_1"])
def test_valid_aliases(alias: str) -> None:
    check_alias(alias)


@pytest.mark.parametrize("alias", ["", "v3", "V12", "latest", "has space", "a/b", "-x"])
def test_aliases_mlflow_would_refuse_or_misread_are_refused(alias: str) -> None:
    with pytest.raises(ModelRegistryError, match="cannot be an alias"):
        check_alias(alias)


@pytest.mark.parametrize("name", ["", "a/b", "a@b", "it's", " padded"])
def test_names_a_models_uri_cannot_address_are_refused(name: str) -> None:
    with pytest.raises(ModelRegistryError, match="cannot name a registered model"):
        check_model_name(name)


def test_gate_results_need_a_boolean_passed(tmp_path: Path) -> None:
    assert read_gate(gate(tmp_path, False))["passed"] is False
    bad = tmp_path / "bad.json"
    for text, message in [("{", "not readable JSON"), ('{"passed": "yes"}', "boolean 'passed'")]:
        bad.write_text(text)
        with pytest.raises(ModelRegistryError, match=message):
            read_gate(bad)
    with pytest.raises(ModelRegistryError, match="not found"):
        read_gate(tmp_path / "absent.json")


def test_the_lineage_digest_depends_on_the_data_not_its_paths() -> None:
    one = {"lineage": {"train": {"path": "/a/t.jsonl", "sha256": "ab", "rows": 3}}}
    moved = {"lineage": {"train": {"path": "/b/t.jsonl", "sha256": "ab", "rows": 3}}}
    other = {"lineage": {"train": {"path": "/a/t.jsonl", "sha256": "cd", "rows": 3}}}
    assert lineage_digest(one) == lineage_digest(moved) != lineage_digest(other)


# ------------------------------------------------------------------ register
def test_register_adds_versions_with_polyfuse_tags(registry: ModelRegistry, tmp_path: Path) -> None:
    first = registry.register(artifact(tmp_path / "a1"), "fraud", alias="challenger")
    second = registry.register(artifact(tmp_path / "a2", b"other"), "fraud")
    assert (first.version, second.version) == ("1", "2")
    assert first.aliases == ("challenger",) and second.aliases == ()
    tags = first.tags
    assert tags["polyfuse.kind"] == "classifier" and tags["polyfuse.task"] == "multiclass"
    assert tags["polyfuse.format"] == "1" and tags["polyfuse.version"] == "0.1.0"
    assert tags["polyfuse.lineage"] == lineage_digest(
        json.loads((tmp_path / "a1" / "artifact.json").read_text())
    )
    assert tags["polyfuse.files"] != second.tags["polyfuse.files"]  # other weights
    assert "gate.passed" not in tags and first.gate_passed is None
    assert first.source == f"runs:/{first.run_id}/artifact" and first.run_id != second.run_id
    run = registry.client.get_run(str(first.run_id))
    assert run.info.status == "FINISHED"
    assert registry.client.get_experiment(run.info.experiment_id).name == "fraud"
    assert [v.version for v in registry.versions("fraud")] == ["2", "1"]
    assert registry.models() == {"fraud": {"challenger": "1"}}


def test_register_refuses_a_folder_that_is_not_an_artifact(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    folder = artifact(tmp_path / "a")
    (folder / "model.safetensors").write_bytes(b"edited")
    with pytest.raises(ArtifactError, match="does not match its recorded sha256"):
        registry.register(folder, "fraud")
    with pytest.raises(ArtifactError, match="not an artifact folder"):
        registry.register(tmp_path / "absent", "fraud")


def test_register_attaches_the_card_and_the_gate_result(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    folder = artifact(tmp_path / "a")
    (folder / "card.json").write_text('{"name": "fraud"}')
    (folder / "card.md").write_text("# Fraud model\n\nAccuracy 0.91 on the holdout.\n")
    version = registry.register(folder, "fraud", gate=gate(tmp_path, True))
    assert version.description.startswith("# Fraud model")
    assert version.tags["polyfuse.card"] == "card.json"
    assert version.gate_passed is True and version.tags["gate.file"] == "gate/version-1.json"
    client = registry.client
    logged = client.download_artifacts(str(version.run_id), "gate/version-1.json", str(tmp_path))
    assert json.loads(Path(logged).read_text())["passed"] is True
    names = {f.path for f in client.list_artifacts(str(version.run_id), "artifact")}
    assert {"artifact/card.json", "artifact/card.md"} <= names


def test_register_reuses_the_training_run_and_adds_what_it_lacks(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    from polyfuse.core.config import Config
    from polyfuse.release.tracking import TrackingRecord, tracked
    from tests.release.test_tracking import CONFIG

    folder = artifact(tmp_path / "a")
    with tracked(Config.from_dict(CONFIG), folder, name="training") as tracker:
        tracker.finish(folder, {})
    record = TrackingRecord.load(folder)
    assert record is not None
    (folder / "card.md").write_text("# written after training\n")  # e.g. by polyfuse card
    version = registry.register(folder, "fraud")
    assert version.run_id == record.run_id
    names = {f.path for f in registry.client.list_artifacts(record.run_id, "artifact")}
    assert "artifact/card.md" in names
    copy = registry.download("models:/fraud/1")
    assert (copy / "card.md").read_text() == "# written after training\n"


def test_a_folder_whose_run_failed_gets_a_new_run(registry: ModelRegistry, tmp_path: Path) -> None:
    from polyfuse.release.tracking import TrackingRecord

    folder = artifact(tmp_path / "a")
    client = registry.client
    failed = client.create_run(client.create_experiment("crashed")).info.run_id
    client.set_terminated(failed, "FAILED")
    TrackingRecord("mlflow", registry.tracking_uri, "1", failed).save(folder)
    assert registry.register(folder, "fraud").run_id != failed


# ------------------------------------------------------------------ promote, rollback
def test_promotion_moves_champion_and_rollback_is_one_call(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    for k in (1, 2, 3):
        registry.register(artifact(tmp_path / f"a{k}", bytes([k])), "fraud")
    registry.set_alias("fraud", "challenger", "2")
    first = registry.promote("fraud", version="1")
    assert (first.version, first.previous) == ("1", None)
    moved = registry.promote("fraud", alias="challenger")
    assert (moved.alias, moved.version, moved.previous) == ("champion", "2", "1")
    aliases = registry.models()["fraud"]
    assert aliases == {"champion": "2", "previous-champion": "1", "challenger": "2"}
    assert "polyfuse.promoted.champion" in registry.get("models:/fraud/2").tags
    back = registry.rollback("fraud")
    assert (back.version, back.previous) == ("1", "2")
    assert registry.get("models:/fraud@champion").version == "1"
    assert registry.get("models:/fraud@previous-champion").version == "2"
    registry.rollback("fraud")  # a second rollback undoes the first
    assert registry.get("models:/fraud@champion").version == "2"
    staged = registry.promote("fraud", version="3", to="staging")
    assert (staged.alias, staged.previous) == ("staging", None)
    assert registry.get("models:/fraud@champion").version == "2"  # other aliases untouched


def test_promoting_the_champion_again_keeps_previous(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.register(artifact(tmp_path / "a1", b"1"), "fraud")
    registry.register(artifact(tmp_path / "a2", b"2"), "fraud")
    registry.promote("fraud", version="1")
    registry.promote("fraud", version="2")
    registry.promote("fraud", version="2")
    assert registry.models()["fraud"] == {"champion": "2", "previous-champion": "1"}


def test_a_failed_gate_blocks_promotion_unless_forced(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.register(artifact(tmp_path / "a"), "fraud", gate=gate(tmp_path, False))
    with pytest.raises(ModelRegistryError, match="failed its quality gate") as exc:
        registry.promote("fraud", version="1")
    assert "--force" in str(exc.value.hint)
    assert "champion" not in registry.models()["fraud"]
    assert registry.promote("fraud", version="1", force=True).version == "1"


def test_promote_needs_exactly_one_of_version_and_alias(registry: ModelRegistry) -> None:
    for kwargs in ({}, {"version": "1", "alias": "challenger"}):
        with pytest.raises(ModelRegistryError, match="exactly one"):
            registry.promote("fraud", **kwargs)  # type: ignore[arg-type]


def test_rollback_without_a_previous_version_says_how_one_is_made(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.register(artifact(tmp_path / "a"), "fraud")
    registry.promote("fraud", version="1")
    with pytest.raises(ModelRegistryError, match="no 'previous-champion' alias") as exc:
        registry.rollback("fraud")
    assert "promote" in str(exc.value.hint)


# ------------------------------------------------------------------ errors that name what exists
def test_unknown_models_aliases_and_versions_name_the_known_ones(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.register(artifact(tmp_path / "a"), "fraud", alias="challenger")
    with pytest.raises(
        ModelRegistryError, match=r"no registered model 'frud'.*registered: fraud"
    ) as exc:
        registry.get("models:/frud@champion")
    assert exc.value.hint == "did you mean 'fraud'?"
    with pytest.raises(
        ModelRegistryError, match=r"no alias 'champion' \(aliases: challenger -> 1\)"
    ):
        registry.get("models:/fraud@champion")
    with pytest.raises(ModelRegistryError, match=r"no version 7 \(versions: 1\)"):
        registry.get("models:/fraud/7")
    with pytest.raises(ModelRegistryError, match="no registered model 'other'"):
        registry.versions("other")


def test_an_unreachable_tracking_server_fails_fast_with_a_hint(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    registry = ModelRegistry(f"http://127.0.0.1:{port}", cache_dir=tmp_path)
    with pytest.raises(TrackingError, match="cannot reach the MLflow tracking server") as exc:
        registry.get("models:/fraud@champion")
    assert "mlflow server" in str(exc.value.hint)


# ------------------------------------------------------------------ download
def test_download_resolves_an_alias_to_a_verified_cached_copy(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    folder = artifact(tmp_path / "a")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.pt").write_bytes(b"optimizer state")
    registry.register(folder, "fraud", alias="champion")
    copy = registry.download("models:/fraud@champion")
    assert copy == tmp_path / "cache" / copy.parent.parent.name / "fraud" / "1"
    assert (copy / "model.safetensors").read_bytes() == b"weights"
    assert not (copy / "checkpoints").exists()  # training state is never published
    stamp = (copy / "artifact.json").stat().st_mtime_ns
    assert registry.download("models:/fraud/1") == copy
    assert (copy / "artifact.json").stat().st_mtime_ns == stamp  # served from the cache
    (copy / "model.safetensors").write_bytes(b"corrupt")
    assert registry.download("models:/fraud/1") == copy  # a broken copy is fetched again
    assert (copy / "model.safetensors").read_bytes() == b"weights"
    assert not list(copy.parent.glob(".*partial"))


def test_download_refuses_a_version_that_is_no_polyfuse_artifact(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    client = registry.client
    run = client.create_run(client.create_experiment("other")).info.run_id
    (tmp_path / "sk").mkdir()
    (tmp_path / "sk" / "model.pkl").write_bytes(b"pickle")
    client.log_artifacts(run, str(tmp_path / "sk"), "model")
    client.create_registered_model("foreign")
    client.create_model_version("foreign", f"runs:/{run}/model", run_id=run)
    with pytest.raises(ArtifactError, match="does not hold a usable polyfuse artifact"):
        registry.download("models:/foreign/1")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("model.pkl"))
