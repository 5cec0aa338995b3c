"""Versioned model artifacts: a folder with config, weights, contracts, labels, metrics, versions.

Layout::

    artifact.json      format version, kind, package versions, encoders, file digests,
                       lineage (see `polyfuse.artifacts.format`)
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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polyfuse.artifacts.format import (
    FORMAT_VERSION,
    ManifestLineage,
    check_encoders,
    describe,
    read_info,
    read_json,
    write_info,
    write_json,
)
from polyfuse.artifacts.onnx import is_onnx_export, load_onnx_parts
from polyfuse.core.config import Config
from polyfuse.core.errors import ArtifactError, PolyfuseError
from polyfuse.heads.tasks import Task, task_from_dict
from polyfuse.modalities import ModalityContract, contract_from_dict
from polyfuse.modalities.quality import QualityGate, build_gates
from polyfuse.models.build import build_model
from polyfuse.models.multimodal import MultimodalModel

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
        lineage: the manifests it was trained on (recorded at save time).
    """

    config: Config
    contracts: dict[str, ModalityContract]
    task: Task
    model: MultimodalModel
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    lineage: tuple[ManifestLineage, ...] = ()

    @property
    def modalities(self) -> tuple[str, ...]:
        """The model's modality names."""
        return self.model.modalities

    def quality_gates(self) -> dict[str, QualityGate]:
        """Modality -> the quality gate its training config turned on
        (``modalities.<name>.quality``): prediction, evaluation and serving run the gate
        training ran."""
        configs = {m: c.quality for m, c in self.config.modalities.items()}
        return build_gates(configs, self.contracts)

    def save(self, path: str | Path) -> Path:
        """Write the artifact folder (overwrites files of an existing one)."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.yaml").write_text(self.config.to_yaml(), encoding="utf-8")
        write_json(path / "contracts.json", {m: c.to_dict() for m, c in self.contracts.items()})
        write_json(path / "labels.json", self.task.to_dict())
        write_json(path / "metrics.json", self.metrics)
        state = {
            k: v.detach().cpu().contiguous() for k, v in trainable_state_dict(self.model).items()
        }
        save_file(state, str(path / "model.safetensors"), metadata={"format": str(FORMAT_VERSION)})
        encoders = {m: self.model.encoder(m) for m in self.model.modalities}
        self.info = describe("classifier", path, FILES, self.contracts, encoders, self.lineage)
        self.info["task"] = self.task.name
        self.info["fusion"] = self.config.model.fusion.name
        for m, entry in self.info["encoders"].items():
            entry["name"] = self.config.modalities[m].encoder.name
        write_info(path, self.info)
        self.path = path
        return path


def trainable_state_dict(model: MultimodalModel) -> dict[str, torch.Tensor]:
    """State of everything except frozen pretrained encoders (they reload from their source)."""
    frozen = [f"encoders.{m}." for m in model.modalities if model.encoder(m).frozen]
    return {k: v for k, v in model.state_dict().items() if not any(k.startswith(p) for p in frozen)}


def load_artifact(path: str | Path, device: str | torch.device = "cpu") -> Artifact:
    """Load and verify a classifier artifact folder, or an ONNX export of one
    (`polyfuse.artifacts.onnx`: the same `Artifact`, its model running the exported graphs).

    Raises:
        ArtifactError: missing/corrupt files, unknown format, another kind, changed
            contract versions or pretrained weights.
        ContractError: a modality contract this polyfuse cannot rebuild.
    """
    path = Path(path)
    if is_onnx_export(path):
        return Artifact(*load_onnx_parts(path, device), path=path)
    info = read_info(path, "classifier")
    config = Config.from_file(path / "config.yaml")
    contracts = {m: contract_from_dict(d) for m, d in read_json(path, "contracts.json").items()}
    if set(contracts) != set(config.modalities):
        raise ArtifactError(f"{path}: contracts.json and config.yaml name different modalities")
    task = task_from_dict(read_json(path, "labels.json"))
    try:
        model = build_model(config, contracts, task)
    except PolyfuseError as exc:
        raise ArtifactError(f"{path}: cannot rebuild the model: {exc}") from exc
    check_encoders(path, info, {m: model.encoder(m) for m in model.modalities})
    _load_weights(path, model)
    model.to(device).eval()
    metrics = read_json(path, "metrics.json")
    return Artifact(config, contracts, task, model, metrics, info, path)


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
