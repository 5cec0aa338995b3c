"""ONNX exports of classifiers: a folder of ONNX graphs that loads like the artifact it
came from (`polyfuse export ARTIFACT --format onnx --out DIR`, see docs/export.md).

Layout::

    artifact.json       kind "onnx": the shared format fields (files with digests, contract
                        versions, the source's encoders and lineage) and an ``onnx`` entry:
                        opsets, every graph's inputs and outputs, the source artifact,
                        quantization and the accuracies it measured
    encoder-<m>.onnx    encoder + adapter of modality m: ``data[, lengths] -> pooled,
                        [tokens], mask`` with dynamic batch (and length) axes
    fusion.onnx         fusion + head: per modality ``features, present[, mask]`` ->
                        ``logits, embedding[, weights][, attention]``
    head-<m>.onnx       the auxiliary head of modality m: ``pooled -> logits``
    config.yaml, contracts.json, labels.json, metrics.json, monitor/...  as in the source

`polyfuse.artifacts.classifier.load_artifact` loads it as the same `Artifact` a classifier
folder gives (through `load_onnx_parts`), whose model is
a `MultimodalModel` built from ONNX parts: `OnnxEncoder` (encoder + adapter, with an
identity adapter after it), `OnnxFusion` (fusion + head) and `OnnxHead`, each running an
ONNX Runtime session. `Predictor`, evaluation and serving use it unchanged.

Sessions are created on first use with as many intra-op threads as torch has then
(``polyfuse serve`` sets them with ``serving_threads`` before anything runs) and sequential
execution; onnxruntime releases the GIL while a graph runs.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from polyfuse.artifacts.format import read_info, read_json
from polyfuse.core.config import Config
from polyfuse.core.errors import ArtifactError, DependencyError
from polyfuse.encoders.base import Encoder, EncoderOutput
from polyfuse.fusion.base import Fusion, FusionOutput
from polyfuse.heads.tasks import Task, task_from_dict
from polyfuse.modalities import ModalityContract, contract_from_dict
from polyfuse.models.multimodal import MultimodalModel

#: Version of the ``onnx`` entry of ``artifact.json`` written by this polyfuse.
EXPORT_FORMAT = 1
#: Kind name of an exported folder.
KIND = "onnx"


def encoder_file(modality: str) -> str:
    """File name of a modality's encoder + adapter graph."""
    return f"encoder-{modality}.onnx"


def head_file(modality: str) -> str:
    """File name of a modality's auxiliary-head graph."""
    return f"head-{modality}.onnx"


FUSION_FILE = "fusion.onnx"


def import_onnxruntime() -> Any:
    """``onnxruntime``, or a `DependencyError` naming the extra that installs it."""
    try:
        import onnxruntime
    except ImportError:
        raise DependencyError("onnxruntime", "ONNX artifacts", "onnx") from None
    return onnxruntime


def session_options(threads: int | None = None) -> Any:
    """ONNX Runtime options of every polyfuse session: ``threads`` intra-op threads (default:
    torch's current count), no inter-op parallelism (sequential execution: the serving
    batchers already run the modalities side by side), all graph optimisations."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class OnnxGraph:
    """One ONNX graph and its session, created on first `run` (thread-safe).

    Args:
        path: the ``.onnx`` file.
        name: what errors call it (``encoder-image``, ``fusion``, ...).
        threads: intra-op threads (default: torch's count when the session starts).
    """

    def __init__(self, path: str | Path, name: str, threads: int | None = None) -> None:
        self.path = Path(path)
        self.name = name
        self.threads = threads
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        """The ONNX Runtime session (started now if it was not)."""
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._start()
        return self._session

    def _start(self) -> Any:
        ort = import_onnxruntime()
        try:
            return ort.InferenceSession(
                str(self.path), session_options(self.threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ArtifactError(
                f"{self.path}: ONNX Runtime cannot load the {self.name} graph: {exc}",
                hint="re-export the artifact with `polyfuse export`",
            ) from exc

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the graph's inputs, in order."""
        return tuple(i.name for i in self.session.get_inputs())

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the graph's outputs, in order."""
        return tuple(o.name for o in self.session.get_outputs())

    def run(self, inputs: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
        """Run on torch tensors; outputs by name, as torch tensors on ``device``."""
        feed = {k: np.ascontiguousarray(v.detach().cpu().numpy()) for k, v in inputs.items()}
        try:
            outs = self.session.run(None, feed)
        except Exception as exc:  # shapes or types the graph does not take
            raise ArtifactError(
                f"the {self.name} graph ({self.path.name}) failed: {str(exc)[:300]}",
                hint="inputs must come from the artifact's contracts; re-export if it persists",
            ) from exc
        return {
            n: torch.from_numpy(np.asarray(o)).to(device)
            for n, o in zip(self.output_names, outs, strict=True)
        }


class OnnxEncoder(Encoder):
    """Encoder + adapter of one modality as an ONNX graph (its adapter in the model is the
    identity). Outputs are already in the fused space. Use `onnx_encoder` to build one:
    the class is specialised per contract kind (``kind`` is a class attribute).

    Args:
        contract: the modality's contract.
        graph: the ``encoder-<m>.onnx`` graph.
        tokens: the graph returns tokens (token fusions).
        digest: sha256 of the graph file (the encoder's identity in cache keys).
    """

    kind: ClassVar[str] = ""

    def __init__(
        self, contract: ModalityContract, graph: OnnxGraph, *, tokens: bool, digest: str
    ) -> None:
        super().__init__(contract, graph=graph.path.name, digest=digest)
        self.graph = graph
        self.tokens = tokens
        self.digest = digest

    def weights_digest(self) -> str | None:
        """The graph file's sha256."""
        return self.digest

    def run(self, data: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        """The stage in `polyfuse.models.stages.StageFn` form: ``(pooled (P, D), tokens
        (P, T, D) or None, mask (P, T))``."""
        feed = {"data": data}
        if "lengths" in self.graph.input_names:
            if lengths is None:
                raise ArtifactError(f"the {self.graph.name} graph needs lengths")
            feed["lengths"] = lengths
        out = self.graph.run(feed, data.device)
        return out["pooled"], out.get("tokens"), out["mask"]

    def forward(self, data: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """Adapted tokens (empty ``(P, 0, D)`` when the graph computes none: the fusion
        reads pooled features), mask and pooled vector."""
        pooled, tokens, mask = self.run(data, lengths)
        if tokens is None:
            tokens = pooled.new_zeros(pooled.shape[0], 0, pooled.shape[1])
        return EncoderOutput(tokens, mask, pooled)


@functools.cache
def _encoder_class(kind: str) -> type[OnnxEncoder]:
    return type(f"OnnxEncoder_{kind}", (OnnxEncoder,), {"kind": kind})


def onnx_encoder(
    contract: ModalityContract, graph: OnnxGraph, *, tokens: bool, digest: str
) -> OnnxEncoder:
    """An `OnnxEncoder` for ``contract``'s kind."""
    return _encoder_class(contract.kind)(contract, graph, tokens=tokens, digest=digest)


class OnnxFusion(Fusion):
    """Fusion + head as an ONNX graph over pooled features: ``features, present`` per
    modality -> logits, embedding and, when the source fusion had them, weights and
    attention.

    Args:
        graph: the ``fusion.onnx`` graph.
        modalities, dim, num_outputs: as the source fusion's.
        out_dim: the embedding size.
    """

    produces_logits: ClassVar[bool] = True

    def __init__(
        self, graph: OnnxGraph, modalities: Sequence[str], dim: int, num_outputs: int, out_dim: int
    ) -> None:
        super().__init__(modalities, dim, num_outputs)
        self.graph = graph
        self.out_dim = out_dim

    def forward(
        self,
        features: Mapping[str, Tensor],
        present: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
    ) -> FusionOutput:
        """Run the graph (see `Fusion.forward`)."""
        feed: dict[str, Tensor] = {}
        for m in self.modalities:
            feed[f"{m}.features"] = features[m]
            feed[f"{m}.present"] = present[m]
            if self.uses_tokens and masks is not None:
                feed[f"{m}.mask"] = masks[m]
        device = next(iter(features.values())).device
        out = self.graph.run(feed, device)
        return FusionOutput(
            out["embedding"], out["logits"], out.get("weights"), out.get("attention")
        )


class OnnxTokenFusion(OnnxFusion):
    """`OnnxFusion` of a fusion that reads token sequences (with their masks)."""

    uses_tokens: ClassVar[bool] = True


class OnnxHead(nn.Module):
    """An auxiliary head as an ONNX graph: ``pooled (B, D) -> logits (B, K)``."""

    def __init__(self, graph: OnnxGraph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, pooled: Tensor) -> Tensor:
        """Logits of the modality's own head."""
        return self.graph.run({"pooled": pooled}, pooled.device)["logits"]


@dataclass(frozen=True)
class GraphFiles:
    """Where an exported model's graphs are (a folder being written, or an export)."""

    folder: Path
    encoders: Mapping[str, str]
    fusion: str
    heads: Mapping[str, str]

    @classmethod
    def standard(cls, folder: Path, modalities: Sequence[str]) -> GraphFiles:
        """The file names `polyfuse export` writes."""
        return cls(
            folder,
            {m: encoder_file(m) for m in modalities},
            FUSION_FILE,
            {m: head_file(m) for m in modalities},
        )


def build_onnx_model(
    files: GraphFiles,
    contracts: Mapping[str, ModalityContract],
    spec: Mapping[str, Any],
    prior: Tensor,
    digests: Mapping[str, str],
) -> MultimodalModel:
    """A `MultimodalModel` whose parts run ONNX graphs.

    Args:
        files: the graphs.
        contracts: modality -> contract.
        spec: the ``onnx.model`` entry of ``artifact.json``: ``dim``, ``out_dim``,
            ``num_outputs``, ``uses_tokens``.
        prior: ``(K,)`` logits for samples with no modality.
        digests: file name -> sha256.
    """
    tokens = bool(spec["uses_tokens"])
    names = sorted(contracts)
    encoders: dict[str, Encoder] = {}
    heads: dict[str, nn.Module] = {}
    for m in names:
        enc = files.encoders[m]
        graph = OnnxGraph(files.folder / enc, f"encoder-{m}")
        encoders[m] = onnx_encoder(contracts[m], graph, tokens=tokens, digest=digests.get(enc, ""))
        heads[m] = OnnxHead(OnnxGraph(files.folder / files.heads[m], f"head-{m}"))
    fusion_cls = OnnxTokenFusion if tokens else OnnxFusion
    fusion = fusion_cls(
        OnnxGraph(files.folder / files.fusion, "fusion"),
        names,
        int(spec["dim"]),
        int(spec["num_outputs"]),
        int(spec["out_dim"]),
    )
    adapters = {m: nn.Identity() for m in names}
    return MultimodalModel(encoders, adapters, fusion, None, heads, prior).eval()


class OnnxParts(NamedTuple):
    """What an exported folder holds, for `polyfuse.artifacts.classifier.load_artifact` to
    make into an `Artifact` (this module does not import the classifier's)."""

    config: Config
    contracts: dict[str, ModalityContract]
    task: Task
    model: MultimodalModel
    metrics: dict[str, Any]
    info: dict[str, Any]


def load_onnx_parts(path: str | Path, device: str | torch.device = "cpu") -> OnnxParts:
    """Load and verify an exported folder: its source's configuration, contracts, task and
    metrics, and a model that runs the ONNX graphs (on the CPU; outputs move to ``device``).
    `polyfuse.artifacts.classifier.load_artifact` calls it for an ``onnx`` folder.

    Raises:
        ArtifactError: missing or corrupt files, another kind, an export format or contract
            version this polyfuse does not read.
    """
    path = Path(path)
    info = read_info(path, KIND)
    entry = info.get("onnx", {})
    if entry.get("format") != EXPORT_FORMAT:
        raise ArtifactError(
            f"{path}: ONNX export format {entry.get('format')} is not supported (this "
            f"polyfuse reads {EXPORT_FORMAT})",
            hint="re-export the source artifact with this polyfuse",
        )
    config = Config.from_file(path / "config.yaml")
    contracts = {m: contract_from_dict(d) for m, d in read_json(path, "contracts.json").items()}
    task = task_from_dict(read_json(path, "labels.json"))
    spec = entry["model"]
    model = build_onnx_model(
        GraphFiles.standard(path, sorted(contracts)),
        contracts,
        spec,
        torch.tensor(spec["prior_logits"], dtype=torch.float32),
        info.get("files", {}),
    )
    model.to(device)
    return OnnxParts(config, contracts, task, model, read_json(path, "metrics.json"), info)


def is_onnx_export(path: str | Path) -> bool:
    """The folder holds an ONNX export (by its ``artifact.json`` kind; nothing verified)."""
    file = Path(path) / "artifact.json"
    if not file.is_file():
        return False
    try:
        info = read_json(Path(path), "artifact.json")
    except ArtifactError:
        return False
    return isinstance(info, dict) and info.get("kind") == KIND


__all__ = [
    "EXPORT_FORMAT",
    "FUSION_FILE",
    "KIND",
    "GraphFiles",
    "OnnxEncoder",
    "OnnxFusion",
    "OnnxGraph",
    "OnnxHead",
    "OnnxParts",
    "OnnxTokenFusion",
    "build_onnx_model",
    "encoder_file",
    "head_file",
    "import_onnxruntime",
    "is_onnx_export",
    "load_onnx_parts",
    "onnx_encoder",
    "session_options",
]
