"""``polyfuse register`` and ``polyfuse registry`` in-process, on a real MLflow sqlite store
(MLFLOW_TRACKING_URI) in a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyfuse import cli
from tests.release.test_registry import artifact, gate

pytest.importorskip("mlflow")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def registered(mlflow_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Versions 1 (challenger) and 2 (failed gate) of model 'fraud'; the cache in tmp_path."""
    monkeypatch.setenv("POLYFUSE_CACHE", str(tmp_path / "cache"))
    assert cli.main(["register", str(artifact(tmp_path / "a1")), "--name", "fraud"]) == 0
    assert cli.main(["registry", "promote", "fraud", "--version", "1", "--to", "challenger"]) == 0
    second = artifact(tmp_path / "a2", b"2")
    argv = ["register", str(second), "--name", "fraud", "--gate", str(gate(tmp_path, False))]
    assert cli.main(argv) == 0
    return tmp_path


def test_register_prints_the_new_version(
    mlflow_store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = artifact(tmp_path / "a")
    status, out, _ = run(
        capsys, "register", str(folder), "--name", "fraud", "--alias", "challenger"
    )
    assert status == 0 and out.strip() == f"registered {folder} as models:/fraud/1 (challenger)"
    status, out, _ = run(capsys, "register", str(folder), "--name", "fraud", "--json")
    version = json.loads(out)
    assert version["version"] == "2" and version["tags"]["polyfuse.kind"] == "classifier"


def test_registry_list_shows_models_and_versions(
    registered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "registry", "list")
    assert status == 0 and out.strip() == "fraud  (challenger -> 1)"
    status, out, _ = run(capsys, "registry", "list", "fraud")
    header, two, one = out.strip().splitlines()
    assert header.split() == ["version", "gate", "kind", "created", "aliases"]
    assert two.split()[:3] == ["2", "FAILED", "classifier"]
    assert one.split()[:3] == ["1", "-", "classifier"] and one.endswith("challenger")
    status, out, _ = run(capsys, "registry", "list", "fraud", "--json")
    assert [v["version"] for v in json.loads(out)] == ["2", "1"]


def test_promote_rollback_and_pull(registered: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "registry", "promote", "fraud", "--alias", "challenger")
    assert status == 0 and out.strip() == "fraud@champion -> version 1"
    status, _, err = run(capsys, "registry", "promote", "fraud", "--version", "2")
    assert status == cli.EXIT_ERROR and "failed its quality gate" in err and "--force" in err
    status, out, _ = run(capsys, "registry", "promote", "fraud", "--version", "2", "--force")
    assert out.strip() == "fraud@champion -> version 2 (was version 1)"
    status, out, _ = run(capsys, "registry", "rollback", "fraud", "--json")
    assert json.loads(out) == {
        "name": "fraud",
        "alias": "champion",
        "version": "1",
        "previous": "2",
    }
    status, out, _ = run(capsys, "registry", "pull", "models:/fraud@champion")
    folder = Path(out.strip())
    assert status == 0 and (folder / "model.safetensors").read_bytes() == b"weights"
    assert folder.is_relative_to(registered / "cache" / "registry")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["registry", "pull", "models:/fraud@nope"], "has no alias 'nope'"),
        (["registry", "pull", "models:/fraud"], "is not a model URI"),
        (["registry", "rollback", "fraud"], "no 'previous-champion' alias"),
        (["registry", "list", "frau"], "no registered model 'frau'"),
        (["register", "missing", "--name", "fraud"], "not an artifact folder"),
        (["register", "missing", "--name", "a/b"], "cannot name a registered model"),
    ],
)
def test_errors_are_one_line_with_a_hint(
    registered: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert status == cli.EXIT_ERROR and not out
    assert message in lines[-1] and lines[-1].startswith("error: ") and "Traceback" not in err


def test_registry_help_lists_the_actions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["registry", "--help"])
    out = capsys.readouterr().out
    assert all(action in out for action in ("list", "promote", "rollback", "pull"))
