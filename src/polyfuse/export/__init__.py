"""Exporting trained models to portable runtimes: ONNX graphs, fp32 or int8
(``polyfuse export``; docs/export.md).

- `graphs`: each part (encoder + adapter per modality, fusion + head, auxiliary heads) as an
  ONNX graph with dynamic axes, checked against the eager model.
- `quantize`: int8 graphs with onnxruntime (dynamic, or static QDQ for convolutions).
- `exporter`: `export_onnx`, which writes the folder `polyfuse.artifacts.onnx` loads.
- `alignment`: the export of an alignment artifact (one "encoder + adapters" graph per
  modality), which `polyfuse.retrieval.pipeline.Aligner.load` loads.
- `result`: `ExportResult`, what an export wrote and measured.
"""

from polyfuse.export.exporter import ExportResult, export_onnx

__all__ = ["ExportResult", "export_onnx"]
