"""``polyfuse export``: a classifier artifact -> a folder of ONNX graphs that loads like it
(an alignment artifact goes to `polyfuse.export.alignment`).

`export_onnx` loads the source, writes one graph per part (`polyfuse.export.graphs`),
checks the fp32 graphs against the eager model (1e-4), optionally writes int8 versions
(`polyfuse.export.quantize`) and measures the fp32 and int8 models on a manifest, then
writes the folder: the graphs, the source's contracts, configuration, labels, metrics and
reference profile, and ``artifact.json`` (kind ``onnx``) with everything it measured. The
folder's layout is described in `polyfuse.artifacts.onnx`, which loads it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from polyfuse.artifacts.classifier import Artifact, load_artifact
from polyfuse.artifacts.format import describe, read_json, sha256_file, write_info
from polyfuse.artifacts.kinds import kind_of
from polyfuse.artifacts.onnx import (
    EXPORT_FORMAT,
    FUSION_FILE,
    KIND,
    GraphFiles,
    build_onnx_model,
    encoder_file,
    head_file,
    is_onnx_export,
)
from polyfuse.core.errors import ArtifactError, ConfigError
from polyfuse.export.graphs import (
    ATOL,
    GraphSpec,
    example_values,
    export_encoder,
    export_fusion,
    export_head,
    verify,
)
from polyfuse.export.quantize import Mode, feeds_of, mode_for, quantize_graph
from polyfuse.export.result import ExportResult
from polyfuse.inference.batches import assemble
from polyfuse.modalities.base import ModalityBatch
from polyfuse.models.multimodal import MultimodalModel

#: Files copied from the source artifact (those present).
COPIED = ("config.yaml", "contracts.json", "labels.json", "metrics.json")
#: Folders copied from the source artifact with everything in them (the reference profile).
COPIED_DIRS = ("monitor",)


def export_onnx(
    source: str | Path,
    out: str | Path,
    *,
    quantize: Literal["int8"] | None = None,
    data: str | Path | None = None,
    calibration_rows: int = 256,
    batch_size: int = 32,
) -> ExportResult:
    """Export a classifier artifact to ONNX (see the module docstring); an alignment
    artifact is exported by `polyfuse.export.alignment.export_alignment`.

    Args:
        source: the artifact folder.
        out: the folder to write (created; an earlier export there is replaced).
        quantize: ``int8`` for int8 graphs (dynamic, or static for convolutional encoders).
        data: a labelled manifest (a pair manifest for an alignment artifact): calibration
            rows for static quantization, and the data the fp32 (and int8) accuracy (or
            retrieval quality) is measured on.
        calibration_rows: rows of ``data`` that calibrate static quantization.
        batch_size: rows per batch when reading ``data``.

    Raises:
        ArtifactError: the source is not a classifier artifact, or ``out`` holds something
            else.
        ExportError: a part cannot be exported, an fp32 graph differs from the eager model
            by more than 1e-4, or static quantization lacks ``--data``.
    """
    source, out = Path(source), Path(out)
    if _is_export(source):
        raise ArtifactError(
            f"{source} is already an ONNX export", hint="export the artifact it came from"
        )
    if kind_of(source).name == "alignment":
        from polyfuse.export.alignment import export_alignment

        _check_out(out)
        return export_alignment(
            source, out, quantize=quantize, data=data, calibration_rows=calibration_rows
        )
    artifact = load_artifact(source, "cpu")
    model = artifact.model.eval()
    modes = _modes(model) if quantize else {}
    if "static" in modes.values() and data is None:
        static = [g for g, m in modes.items() if m == "static"]
        raise ConfigError(
            "--quantize",
            f"int8 quantization of the convolutional graphs {', '.join(static)} is static and "
            "needs calibration data",
            hint="pass --data MANIFEST (rows the model reads, e.g. the validation split)",
        )
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as tmp:
        staging = Path(tmp)
        fp32 = staging / "fp32"
        fp32.mkdir()
        specs = write_graphs(model, artifact, fp32)
        exported = _model(fp32, artifact, model)
        differences = verify(model, exported, verification_batches(artifact))
        result = ExportResult(out, specs, differences)
        final = fp32
        if quantize:
            final = staging / "int8"
            final.mkdir()
            loader = _loader(artifact, data, batch_size) if data is not None else None
            quantize_all(model, fp32, final, modes, loader, calibration_rows)
            result.quantization = modes
        if data is not None:
            result.accuracy["fp32"] = accuracy(artifact, exported, data)
            if quantize:
                result.accuracy["int8"] = accuracy(artifact, _model(final, artifact, model), data)
        _write_folder(out, final, artifact, result, data)
    return result


def _modes(model: MultimodalModel) -> dict[str, Mode]:
    """Graph name -> how it is quantized: static for convolutional encoders."""
    modes: dict[str, Mode] = {f"encoder-{m}": mode_for(model.encoder(m)) for m in model.modalities}
    modes["fusion"] = "dynamic"
    modes.update({f"head-{m}": "dynamic" for m in model.modalities})
    return modes


def _is_export(path: Path) -> bool:
    """A classifier export (kind ``onnx``) or an alignment export (an ``onnx`` entry)."""
    if is_onnx_export(path):
        return True
    try:
        info = read_json(path, "artifact.json")
    except ArtifactError:
        return False
    return isinstance(info, dict) and isinstance(info.get("onnx"), dict)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_export(out))):
        raise ArtifactError(
            f"{out} exists and is not an ONNX export", hint="choose a new --out folder"
        )


def _files(folder: Path, model: MultimodalModel) -> GraphFiles:
    return GraphFiles.standard(folder, model.modalities)


def _model(folder: Path, artifact: Artifact, model: MultimodalModel) -> MultimodalModel:
    """The exported graphs in ``folder`` as a model."""
    files = _files(folder, model)
    return build_onnx_model(files, artifact.contracts, model_spec(model), model.prior.clone(), {})


def model_spec(model: MultimodalModel) -> dict[str, Any]:
    """The ``onnx.model`` entry of ``artifact.json``: what rebuilding the model needs."""
    return {
        "modalities": list(model.modalities),
        "dim": model.fusion.dim,
        "out_dim": model.fusion.out_dim,
        "num_outputs": int(model.prior.numel()),
        "uses_tokens": model.fusion.uses_tokens,
        "prior_logits": [float(x) for x in model.prior.tolist()],
    }


def example_batch(
    artifact: Artifact, order: Sequence[int], missing: int | None = None
) -> tuple[dict[str, ModalityBatch], int]:
    """A batch of the example inputs ``order`` (indices into three examples of increasing
    size per modality); sample ``missing`` lacks the first modality."""
    contracts = artifact.contracts
    values = {m: example_values(c, 3) for m, c in contracts.items()}
    samples = []
    for j, i in enumerate(order):
        sample = {m: contracts[m].preprocess(values[m][i]) for m in contracts}
        if j == missing and len(contracts) > 1:
            del sample[sorted(contracts)[0]]
        samples.append(sample)
    return assemble(contracts, samples), len(samples)


def verification_batches(artifact: Artifact) -> list[tuple[dict[str, ModalityBatch], int]]:
    """A batch of 1 (the shortest inputs) and a batch of 3 of mixed lengths, one sample of
    which lacks a modality: neither is the batch the graphs were exported from."""
    return [example_batch(artifact, [0]), example_batch(artifact, [1, 0, 2], missing=1)]


def write_graphs(model: MultimodalModel, artifact: Artifact, folder: Path) -> dict[str, GraphSpec]:
    """Export every part of ``model`` into ``folder`` from a batch of 3 of mixed lengths."""
    inputs, size = example_batch(artifact, [2, 1, 0])
    specs: dict[str, GraphSpec] = {}
    for m in model.modalities:
        specs[f"encoder-{m}"] = export_encoder(model, m, inputs[m], folder / encoder_file(m))
    with torch.no_grad():
        encoded = model.encode(inputs, size)
    specs["fusion"] = export_fusion(model, encoded, folder / FUSION_FILE)
    for m in model.modalities:
        specs[f"head-{m}"] = export_head(model, m, encoded.pooled[m], folder / head_file(m))
    return specs


def _loader(artifact: Artifact, data: str | Path, batch_size: int) -> Any:
    from polyfuse.data.manifest import Manifest
    from polyfuse.inference.predict import Predictor

    predictor = Predictor(artifact, "cpu", batch_size)
    manifest = Manifest.load(data, predictor.modalities, artifact.config.label)
    return predictor.loader(predictor.dataset(manifest))


def quantize_all(
    model: MultimodalModel,
    src: Path,
    dst: Path,
    modes: Mapping[str, Mode],
    loader: Any,
    calibration_rows: int,
) -> None:
    """Write the int8 version of every graph of ``src`` into ``dst``."""
    for m in model.modalities:
        name = f"encoder-{m}"
        feeds = None
        if modes[name] == "static":
            feeds = feeds_of(loader, m, calibration_rows)
            if not feeds:
                raise ConfigError(
                    "--data", f"no row of the manifest has modality {m!r} to calibrate {name}"
                )
        quantize_graph(src / encoder_file(m), dst / encoder_file(m), name, modes[name], feeds)
        quantize_graph(src / head_file(m), dst / head_file(m), f"head-{m}", "dynamic")
    quantize_graph(src / FUSION_FILE, dst / FUSION_FILE, "fusion", "dynamic")


def accuracy(artifact: Artifact, model: MultimodalModel, data: str | Path) -> dict[str, float]:
    """Headline metrics of ``artifact`` with ``model`` in place of its own on ``data``."""
    from polyfuse.evaluation import evaluate, headline

    swapped = Artifact(
        artifact.config, artifact.contracts, artifact.task, model, path=artifact.path
    )
    result = evaluate(swapped, data, progress=False, device="cpu")
    return {k: float(v) for k, v in headline(result.metrics).items()}


def _write_folder(
    out: Path, graphs: Path, artifact: Artifact, result: ExportResult, data: str | Path | None
) -> None:
    """Replace ``out`` with the graphs, the source's files and ``artifact.json``."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    source = artifact.path or Path()
    names = [p.name for p in sorted(graphs.glob("*.onnx"))]
    for name in names:
        shutil.copyfile(graphs / name, out / name)
    for name in COPIED:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
            names.append(name)
    for folder in COPIED_DIRS:
        if (source / folder).is_dir():
            shutil.copytree(source / folder, out / folder)
            names += [
                str(p.relative_to(out)) for p in sorted((out / folder).rglob("*")) if p.is_file()
            ]
    encoders = {m: artifact.model.encoder(m) for m in artifact.modalities}
    info = describe(KIND, out, names, artifact.contracts, encoders)
    info["lineage"] = artifact.info.get("lineage", {})
    info["task"] = artifact.task.name
    info["fusion"] = artifact.config.model.fusion.name
    info["onnx"] = onnx_entry(artifact, result, data)
    write_info(out, info)


def onnx_entry(artifact: Artifact, result: ExportResult, data: str | Path | None) -> dict[str, Any]:
    """The ``onnx`` entry of ``artifact.json``."""
    import onnx
    import onnxruntime

    source = artifact.path or Path()
    entry: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
        "versions": {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "opsets": sorted({g.opset for g in result.graphs.values()}),
        "source": {
            "path": str(source.resolve()),
            "kind": str(artifact.info.get("kind", "classifier")),
            "created": artifact.info.get("created"),
            "artifact_json_sha256": sha256_file(source / "artifact.json"),
        },
        "model": model_spec(artifact.model),
        "graphs": {name: spec.to_dict() for name, spec in result.graphs.items()},
        "verification": {"atol": ATOL, "max_abs_diff": result.differences},
        "precision": "int8" if result.quantization else "fp32",
        "quantization": None,
        "accuracy": result.accuracy or None,
    }
    if result.quantization:
        entry["quantization"] = {
            "weights": "int8",
            "activations": "int8",
            "graphs": result.quantization,
        }
    if data is not None:
        entry["data"] = {"path": str(Path(data).resolve()), "sha256": sha256_file(Path(data))}
    return entry


__all__ = [
    "ExportResult",
    "accuracy",
    "example_batch",
    "export_onnx",
    "model_spec",
    "onnx_entry",
    "quantize_all",
    "verification_batches",
    "write_graphs",
]
