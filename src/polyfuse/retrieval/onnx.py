"""ONNX exports of alignment artifacts: one graph per modality that embeds a raw batch into
the shared space (`polyfuse export ALIGNMENT --format onnx`, see docs/export.md).

Layout (``artifact.json`` keeps kind ``alignment``, so everything that takes an alignment
artifact takes the export: `Aligner.load`, ``polyfuse index/search/evaluate``, ``polyfuse
serve --align``, the Ray Data ``index`` job)::

    artifact.json           kind "alignment" with its roles, dim, logit scale and calibrated
                            threshold, and an ``onnx`` entry (graphs, source, quantization,
                            the retrieval quality measured on --data)
    encoder-<m>.onnx        frozen encoder + the adapters of modality m (feature
                            standardisation, projection, L2 normalisation, the ensemble's
                            concatenation): ``data[, lengths] -> aligned (B, dim)``
    querybank.safetensors   QB-norm's bank already in the shared space (when the source has one)
    config.yaml, contracts.json, metrics.jsonl   as in the source

`alignment_parts` builds what an `Aligner` needs from those graphs: an `OnnxEmbedder` per
modality (an `OnnxEncoder` whose pooled output is the embedding, a frozen encoder whose
outputs the feature cache keeps like any other's) and an `AppliedAlignment` whose
``embed`` is the identity.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from polyfuse.artifacts.format import sha256_file
from polyfuse.artifacts.onnx import OnnxEncoder, OnnxGraph, encoder_file
from polyfuse.core.errors import ArtifactError
from polyfuse.encoders.base import Encoder, EncoderOutput
from polyfuse.modalities.base import ModalityContract
from polyfuse.models.alignment import AppliedAlignment

#: Version of the ``onnx`` entry of an exported alignment artifact.
ALIGNMENT_EXPORT_FORMAT = 1
#: The graphs' output: the unit embedding in the shared space (not ``embedding``, a name
#: transformer graphs already use inside).
OUTPUT = "aligned"


class OnnxEmbedder(OnnxEncoder):
    """Encoder + alignment adapters of one modality as an ONNX graph: its pooled output is
    the unit embedding in the shared space, its one token that embedding (so the feature
    cache stores it and `Encoder.pool` gives it back). Built frozen: outputs depend only on
    the input. Use `onnx_embedder` (the class is specialised per contract kind)."""

    def __init__(self, contract: ModalityContract, graph: OnnxGraph, *, digest: str) -> None:
        super().__init__(contract, graph, tokens=False, digest=digest)
        self.freeze()

    def run(self, data: Tensor, lengths: Tensor | None) -> tuple[Tensor, Tensor | None, Tensor]:
        """``(embedding (P, dim), None, mask (P, 1))``."""
        feed = {"data": data}
        if "lengths" in self.graph.input_names:
            if lengths is None:
                raise ArtifactError(f"the {self.graph.name} graph needs lengths")
            feed["lengths"] = lengths
        embedding = self.graph.run(feed, data.device)[OUTPUT]  # (P, dim)
        mask = torch.ones(embedding.shape[0], 1, dtype=torch.bool, device=embedding.device)
        return embedding, None, mask

    def forward(self, data: Tensor, lengths: Tensor | None = None) -> EncoderOutput:
        """The embedding as pooled vector and as one token ``(P, 1, dim)``."""
        embedding, _, mask = self.run(data, lengths)
        return EncoderOutput(embedding[:, None], mask, embedding)


@functools.cache
def _embedder_class(kind: str) -> type[OnnxEmbedder]:
    return type(f"OnnxEmbedder_{kind}", (OnnxEmbedder,), {"kind": kind})


def onnx_embedder(contract: ModalityContract, graph: OnnxGraph, *, digest: str) -> OnnxEmbedder:
    """An `OnnxEmbedder` for ``contract``'s kind."""
    return _embedder_class(contract.kind)(contract, graph, digest=digest)


def alignment_parts(
    folder: Path,
    contracts: Mapping[str, ModalityContract],
    dim: int,
    scale: float,
    digests: Mapping[str, str] | None = None,
) -> tuple[AppliedAlignment, dict[str, Encoder]]:
    """The shared space and the encoders of the graphs ``encoder-<m>.onnx`` in ``folder``.

    Args:
        contracts: modality -> contract.
        dim: the embedding size.
        scale: the source's logit scale.
        digests: file name -> sha256 (computed from the files when not given: the
            digest is the encoders' identity in feature-cache keys).
    """
    encoders: dict[str, Encoder] = {}
    for m in sorted(contracts):
        name = encoder_file(m)
        if not (folder / name).is_file():
            raise ArtifactError(f"{folder}: {name} is missing", hint="re-export the artifact")
        digest = (digests or {}).get(name) or sha256_file(folder / name)
        graph = OnnxGraph(folder / name, f"encoder-{m}")
        encoders[m] = onnx_embedder(contracts[m], graph, digest=digest)
    return AppliedAlignment(tuple(contracts), dim, scale), encoders


def is_alignment_export(info: Mapping[str, Any]) -> bool:
    """``artifact.json`` of an exported alignment artifact (one with an ``onnx`` entry)."""
    return info.get("kind") == "alignment" and isinstance(info.get("onnx"), dict)


def check_export_format(folder: Path, info: Mapping[str, Any]) -> None:
    """Refuse an ``onnx`` entry of another format than this polyfuse writes."""
    found = info["onnx"].get("format")
    if found != ALIGNMENT_EXPORT_FORMAT:
        raise ArtifactError(
            f"{folder}: ONNX alignment export format {found} is not supported (this polyfuse "
            f"reads {ALIGNMENT_EXPORT_FORMAT})",
            hint="re-export the source artifact with this polyfuse",
        )


__all__ = [
    "ALIGNMENT_EXPORT_FORMAT",
    "OUTPUT",
    "OnnxEmbedder",
    "alignment_parts",
    "check_export_format",
    "is_alignment_export",
    "onnx_embedder",
]
