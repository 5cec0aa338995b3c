"""What `polyfuse.export.export_onnx` wrote and measured (shared by the classifier and
alignment exporters)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from polyfuse.export.graphs import GraphSpec
from polyfuse.export.quantize import Mode


@dataclass
class ExportResult:
    """What `export_onnx` wrote and measured.

    Attributes:
        folder: the exported folder.
        graphs: graph name -> its inputs and outputs.
        differences: graph name -> largest difference from the eager model (fp32 graphs).
        quantization: graph name -> ``dynamic`` or ``static`` (empty for fp32).
        accuracy: ``fp32`` (and ``int8``) -> headline metrics on ``--data`` (for an
            alignment artifact, its retrieval metrics flattened: ``text_to_image.R@5``, ...).
    """

    folder: Path
    graphs: dict[str, GraphSpec]
    differences: dict[str, float]
    quantization: dict[str, Mode] = field(default_factory=dict)
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)


__all__ = ["ExportResult"]
