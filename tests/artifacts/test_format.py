"""The one artifact format: the shared checks run for every registered kind."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from polyfuse.artifacts.format import (
    FORMAT_VERSION,
    check_encoders,
    describe,
    manifest_lineage,
    read_info,
    write_info,
)
from polyfuse.artifacts.kinds import KINDS, get_kind, kind_of
from polyfuse.core.errors import ArtifactError
from polyfuse.encoders import build_encoder
from polyfuse.modalities import create_contract


def _write(folder: Path, kind: str) -> dict[str, Any]:
    """A minimal folder of ``kind``: one weights file, an image contract and its encoder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    manifest = folder / "train.jsonl"
    manifest.write_text('{"image": "a.png"}\n{"image": "b.png"}\n')
    contract = create_contract("image", "image", {"size": [12, 12], "channels": 1})
    encoder = build_encoder("image_cnn", contract, {"widths": [8, 16]})
    lineage = [manifest_lineage("train", manifest, 2)]
    info = describe(
        kind, folder, ["model.safetensors"], {"image": contract}, {"image": encoder}, lineage
    )
    write_info(folder, info)
    return {"info": info, "encoder": encoder, "manifest": manifest}


def _edit(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    info = json.loads((folder / "artifact.json").read_text())
    change(info)
    (folder / "artifact.json").write_text(json.dumps(info))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_round_trip_of_the_shared_record(tmp_path: Path, kind: str) -> None:
    made = _write(tmp_path, kind)
    info = read_info(tmp_path, kind)
    assert info["format"] == FORMAT_VERSION and info["kind"] == kind
    assert info["modalities"] == {"image": {"kind": "image", "contract_version": 1}}
    assert kind_of(tmp_path).name == kind
    check_encoders(tmp_path, info, {"image": made["encoder"]})  # unchanged: accepted


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_lineage_records_manifest_digest_and_rows(tmp_path: Path, kind: str) -> None:
    import hashlib

    made = _write(tmp_path, kind)
    entry = read_info(tmp_path, kind)["lineage"]["train"]
    assert entry["rows"] == 2
    assert entry["sha256"] == hashlib.sha256(made["manifest"].read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_contract_version_mismatch_is_refused(tmp_path: Path, kind: str) -> None:
    _write(tmp_path, kind)
    _edit(tmp_path, lambda i: i["modalities"]["image"].update(contract_version=99))
    with pytest.raises(ArtifactError, match="contract v99, this polyfuse has v1"):
        read_info(tmp_path, kind)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_changed_pretrained_digest_is_refused(tmp_path: Path, kind: str) -> None:
    made = _write(tmp_path, kind)
    _edit(tmp_path, lambda i: i["encoders"]["image"].update(frozen=True, weights_digest="0" * 16))
    with pytest.raises(ArtifactError, match="pretrained weights of 'image' differ"):
        check_encoders(tmp_path, read_info(tmp_path, kind), {"image": made["encoder"]})


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda i: i.update(format=7), "format 7 is not supported"),
        (lambda i: i["files"].update({"model.safetensors": "0" * 64}), "does not match"),
        (lambda i: i["files"].update({"gone.bin": "0" * 64}), "gone.bin is missing"),
        (lambda i: i["modalities"]["image"].update(kind="smell"), "'smell', unknown"),
    ],
)
def test_shared_checks(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], match: str
) -> None:
    _write(tmp_path, "alignment")
    _edit(tmp_path, change)
    with pytest.raises(ArtifactError, match=match):
        read_info(tmp_path, "alignment")


def test_another_kind_and_unknown_kind_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "captioning")
    with pytest.raises(ArtifactError, match="holds a 'captioning' artifact, not a 'classifier'"):
        read_info(tmp_path, "classifier")
    _edit(tmp_path, lambda i: i.update(kind="captioner"))
    with pytest.raises(ArtifactError, match="did you mean 'captioning'"):
        kind_of(tmp_path)
    with pytest.raises(ArtifactError, match="known kinds: alignment, captioning, classifier"):
        get_kind("monitor")


def test_no_kind_key_is_a_classifier(tmp_path: Path) -> None:
    _write(tmp_path, "classifier")
    _edit(tmp_path, lambda i: i.pop("kind"))
    assert kind_of(tmp_path).name == "classifier"


def test_trained_classifier_records_its_manifests(
    synthetic: Callable[..., tuple[Path, Path]], tmp_path: Path
) -> None:
    from polyfuse.core.config import Config
    from polyfuse.train import Trainer
    from tests.conftest import SMALL_CONFIG

    train, val = synthetic(24)
    raw = {**SMALL_CONFIG, "train": {**SMALL_CONFIG["train"], "epochs": 1}}
    path = Trainer(Config.from_dict(raw), tmp_path / "art", progress=False).fit(train, val).path
    lineage = read_info(path, "classifier")["lineage"]
    assert lineage["train"]["path"] == str(train) and lineage["val"]["path"] == str(val)
    assert lineage["train"]["rows"] == sum(1 for line in train.read_text().splitlines() if line)
    assert len(lineage["val"]["sha256"]) == 64
