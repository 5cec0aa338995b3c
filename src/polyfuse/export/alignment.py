"""``polyfuse export`` of an alignment artifact (``task: contrastive``): per modality one ONNX
graph "frozen encoder + alignment adapters" that embeds a raw batch into the shared space.

`export_alignment` loads the source `Aligner`, exports `EmbedGraph` of each modality with
dynamic batch (and sequence) axes, checks each fp32 graph against the eager encoder and
adapters (1e-4 on the embeddings of a batch of 1 and a batch of 3 of mixed lengths),
optionally writes int8 graphs (dynamic with per-channel weights for transformer text
encoders, static QDQ calibrated on ``--data``'s items for convolutional image encoders, the
stem convolution kept fp32; in both only the encoder's nodes are quantized: the adapters'
standardisation would magnify int8 noise, docs/export.md has the measurements), measures
the retrieval quality of fp32 and int8 on ``--data`` with the aligner's own protocol
(`Aligner.evaluate`: R@1/5/10 and median rank both ways, QB-norm when the source has a
bank) and writes the folder `polyfuse.retrieval.onnx` describes, which `Aligner.load` loads.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from polyfuse.artifacts.format import describe, read_json, sha256_file, write_info
from polyfuse.artifacts.onnx import encoder_file
from polyfuse.core.errors import ConfigError, ExportError
from polyfuse.data.manifest import Manifest
from polyfuse.encoders.base import Encoder
from polyfuse.export.graphs import ATOL, GraphSpec, example_values, export_module
from polyfuse.export.quantize import Mode, mode_for, quantize_graph
from polyfuse.export.result import ExportResult
from polyfuse.inference.batches import load_batch
from polyfuse.modalities.base import ModalityBatch, ModalityContract
from polyfuse.models.alignment import SharedSpace
from polyfuse.retrieval.onnx import ALIGNMENT_EXPORT_FORMAT, OUTPUT, alignment_parts
from polyfuse.retrieval.pipeline import Aligner

#: Files copied from the source artifact (those present).
COPIED = ("config.yaml", "contracts.json", "metrics.jsonl")
#: The bank of QB-norm, written already embedded.
BANK_FILE = "querybank.safetensors"


class EmbedGraph(nn.Module):
    """What ``encoder-<m>.onnx`` computes: ``data[, lengths] -> aligned (B, dim)``, the
    frozen encoder's pooled vector through the aligner's adapters of modality ``m``."""

    def __init__(self, encoder: Encoder, space: SharedSpace, modality: str) -> None:
        super().__init__()
        self.encoder = encoder
        self.space = space
        self.modality = modality

    def forward(self, data: Tensor, lengths: Tensor | None = None) -> Tensor:
        """See the class docstring."""
        pooled = self.encoder(data, lengths).pooled  # (B, D_in)
        return self.space.embed(self.modality, pooled)  # (B, dim)


def export_alignment(
    source: Path,
    out: Path,
    *,
    quantize: Literal["int8"] | None = None,
    data: str | Path | None = None,
    calibration_rows: int = 256,
) -> ExportResult:
    """Export an alignment artifact (see the module docstring); `polyfuse.export.export_onnx`
    calls it for an ``alignment`` folder after its own checks of ``out``.

    Raises:
        ExportError: the source has token-level consistency scorers, a graph cannot be
            exported or differs from the eager model by more than 1e-4.
        ConfigError: static int8 without ``--data``, or ``--data`` without items to calibrate.
    """
    aligner = Aligner.load(source)
    check_source(aligner)
    modes = {f"encoder-{m}": mode_for(e) for m, e in aligner.encoders.items()} if quantize else {}
    if "static" in modes.values() and data is None:
        static = sorted(g for g, mode in modes.items() if mode == "static")
        raise ConfigError(
            "--quantize",
            f"int8 quantization of the convolutional graphs {', '.join(static)} is static and "
            "needs calibration data",
            hint="pass --data MANIFEST (pairs the aligner reads, e.g. the validation split)",
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as tmp:
        fp32, int8 = Path(tmp) / "fp32", Path(tmp) / "int8"
        fp32.mkdir()
        specs = {f"encoder-{m}": export_embedder(aligner, m, fp32) for m in aligner.encoders}
        result = ExportResult(out, specs, verify_embedders(aligner, fp32))
        final = fp32
        if quantize:
            int8.mkdir()
            for m in aligner.encoders:
                name = f"encoder-{m}"
                feeds = None
                if modes[name] == "static":
                    feeds = _calibration(aligner, m, data, calibration_rows)
                src, dst = fp32 / encoder_file(m), int8 / encoder_file(m)
                quantize_graph(
                    src,
                    dst,
                    name,
                    modes[name],
                    feeds,
                    scope="encoder",  # the adapters stay fp32
                    stem_fp32=True,
                    per_channel=True,
                )
            result.quantization = modes
            final = int8
        bank = embedded_bank(aligner)
        if data is not None:
            result.accuracy["fp32"] = retrieval_quality(exported(aligner, fp32, bank), data)
            if quantize:
                result.accuracy["int8"] = retrieval_quality(exported(aligner, int8, bank), data)
        _write_folder(out, final, source, aligner, bank, result, data)
    return result


def check_source(aligner: Aligner) -> None:
    """Refuse what an export cannot compute (token-level consistency scorers)."""
    if aligner.scorers:
        raise ExportError(
            "consistency",
            "the artifact has token-level consistency scorers (align.scorer), which read the "
            "encoders' token sequences; an export computes embeddings only",
            hint="export an artifact trained with align.scorer: false, or use this one as it is",
        )


def embedder(aligner: Aligner, m: str) -> EmbedGraph:
    """The eager module ``encoder-<m>.onnx`` is exported from (and checked against)."""
    return EmbedGraph(aligner.encoders[m], aligner.model, m).eval()


def _args(batch: ModalityBatch) -> tuple[Tensor, ...]:
    return (batch.data,) if batch.lengths is None else (batch.data, batch.lengths)


def example_batch(contract: ModalityContract, order: list[int]) -> ModalityBatch:
    """A batch of the example inputs ``order`` (three of increasing size per modality)."""
    values = example_values(contract, 3)
    xs = [contract.preprocess(values[i]) for i in order]
    return contract.collate(xs, torch.ones(len(xs), dtype=torch.bool))


def export_embedder(aligner: Aligner, m: str, folder: Path) -> GraphSpec:
    """Write ``encoder-<m>.onnx`` into ``folder`` from a batch of 3 of mixed lengths."""
    args = _args(example_batch(aligner.encoders[m].contract, [2, 1, 0]))
    inputs = ["data", "lengths"][: len(args)]
    file = folder / encoder_file(m)
    return export_module(embedder(aligner, m), args, file, f"encoder-{m}", inputs, [OUTPUT])


def verify_embedders(aligner: Aligner, folder: Path, atol: float = ATOL) -> dict[str, float]:
    """Largest difference per graph between the fp32 graphs in ``folder`` and the eager
    encoder + adapters, on a batch of 1 (shortest input) and a batch of 3 of mixed lengths.

    Raises:
        ExportError: naming the graph whose embeddings differ by more than ``atol``.
    """
    contracts = {m: e.contract for m, e in aligner.encoders.items()}
    _, graphs = alignment_parts(folder, contracts, aligner.model.dim, aligner.model.scale)
    worst: dict[str, float] = {}
    with torch.no_grad():
        for m, graph in graphs.items():
            eager = embedder(aligner, m)
            for order in ([0], [1, 0, 2]):
                batch = example_batch(contracts[m], order)
                want = eager(batch.data, batch.lengths)
                got = graph(batch.data, batch.lengths).pooled
                diff = float((want - got).abs().max()) if want.shape == got.shape else np.inf
                worst[f"encoder-{m}"] = max(worst.get(f"encoder-{m}", 0.0), diff)
                if not diff <= atol:
                    raise ExportError(
                        f"encoder-{m}",
                        f"the exported graph differs from the eager model by {diff:.3g} "
                        f"(> {atol:g}) on a batch of {tuple(batch.data.shape)}",
                        hint="the encoder's code depends on input values or sizes the "
                        "exporter fixed; use the torch artifact",
                    )
    return worst


def _calibration(
    aligner: Aligner, m: str, data: str | Path | None, limit: int
) -> list[dict[str, np.ndarray]]:
    """Graph inputs of up to ``limit`` distinct values of modality ``m`` in ``data``."""
    if data is None:  # pragma: no cover - export_alignment refuses static without data
        raise ConfigError("--data", f"static int8 of encoder-{m} needs calibration data")
    contract = aligner.encoders[m].contract
    manifest = Manifest.load(data, tuple(aligner.encoders))
    values = list(dict.fromkeys(r.values[m] for r in manifest.rows if r.values.get(m) is not None))[
        :limit
    ]
    if not values:
        raise ConfigError("--data", f"no row of the manifest has modality {m!r} to calibrate")
    base = manifest.base_dir
    feeds = []
    for s in range(0, len(values), 16):
        chunk = [_resolve(v, base, contract) for v in values[s : s + 16]]
        batch = load_batch(contract, chunk, field=m)
        feeds.append(
            {k: t.numpy() for k, t in zip(("data", "lengths"), _args(batch), strict=False)}
        )
    return feeds


def _resolve(value: Any, base: Path, contract: ModalityContract) -> Any:
    """A manifest value with a relative file path made absolute (as datasets read it)."""
    if contract.file_based and isinstance(value, str):
        path = Path(value)
        return str(path if path.is_absolute() else base / path)
    return value


def embedded_bank(aligner: Aligner) -> dict[str, Tensor] | None:
    """QB-norm's bank of training features through the eager adapters: an export's
    `AppliedAlignment` reads it as is."""
    if aligner.bank is None:
        return None
    with torch.no_grad():
        return {m: aligner.model.embed(m, f.float()).contiguous() for m, f in aligner.bank.items()}


def exported(aligner: Aligner, folder: Path, bank: Mapping[str, Tensor] | None) -> Aligner:
    """An `Aligner` over the graphs in ``folder`` (as `Aligner.load` builds one)."""
    contracts = {m: e.contract for m, e in aligner.encoders.items()}
    space, encoders = alignment_parts(folder, contracts, aligner.model.dim, aligner.model.scale)
    return Aligner(space, encoders, aligner.info, None if bank is None else dict(bank))


def retrieval_quality(aligner: Aligner, data: str | Path) -> dict[str, float]:
    """`Aligner.evaluate` on ``data``, flattened: ``text_to_image.R@5``, ..., ``n``."""
    metrics = aligner.evaluate(data, progress=False)
    flat = {
        f"{direction}.{k}": float(v)
        for direction, values in metrics.items()
        if direction != "n"
        for k, v in values.items()
    }
    counts = metrics.get("n", {})
    flat["n"] = float(counts.get("queries", 0.0))
    if "items" in counts:
        flat["items"] = float(counts["items"])
    return flat


def _write_folder(
    out: Path,
    graphs: Path,
    source: Path,
    aligner: Aligner,
    bank: Mapping[str, Tensor] | None,
    result: ExportResult,
    data: str | Path | None,
) -> None:
    """Replace ``out`` with the graphs, the bank, the source's files and ``artifact.json``."""
    from safetensors.torch import save_file

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    names = [encoder_file(m) for m in sorted(aligner.encoders)]
    for name in names:
        shutil.copyfile(graphs / name, out / name)
    if bank is not None:
        save_file(dict(bank), str(out / BANK_FILE))
        names.append(BANK_FILE)
    for name in COPIED:
        if (source / name).is_file():
            shutil.copyfile(source / name, out / name)
            names.append(name)
    contracts = {m: e.contract for m, e in aligner.encoders.items()}
    info = describe("alignment", out, names, contracts, aligner.encoders)
    kept = ("lineage", "roles", "in_dims", "dim", "ensemble", "querybank", "best_epoch")
    info.update({k: aligner.info[k] for k in kept if k in aligner.info})
    info.update(
        {
            "best_epochs": aligner.info.get("best_epochs", []),
            "logit_scale": aligner.model.scale,
            "val": aligner.info.get("val", {}),
            "consistency": aligner.info["consistency"],
            "onnx": onnx_entry(source, result, data),
        }
    )
    write_info(out, info)


def onnx_entry(source: Path, result: ExportResult, data: str | Path | None) -> dict[str, Any]:
    """The ``onnx`` entry of an exported alignment artifact's ``artifact.json``."""
    import onnx
    import onnxruntime

    src_info = read_json(source, "artifact.json")
    entry: dict[str, Any] = {
        "format": ALIGNMENT_EXPORT_FORMAT,
        "exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
        "versions": {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "opsets": sorted({g.opset for g in result.graphs.values()}),
        "source": {
            "path": str(source.resolve()),
            "kind": "alignment",
            "created": src_info.get("created"),
            "artifact_json_sha256": sha256_file(source / "artifact.json"),
        },
        "graphs": {name: spec.to_dict() for name, spec in result.graphs.items()},
        "verification": {"atol": ATOL, "max_abs_diff": result.differences},
        "precision": "int8" if result.quantization else "fp32",
        "quantization": None,
        "retrieval": result.accuracy or None,
    }
    if result.quantization:
        modes: dict[str, Mode] = dict(result.quantization)
        entry["quantization"] = {"weights": "int8", "activations": "int8", "graphs": modes}
    if data is not None:
        entry["data"] = {"path": str(Path(data).resolve()), "sha256": sha256_file(Path(data))}
    return entry


__all__ = [
    "EmbedGraph",
    "check_source",
    "embedded_bank",
    "embedder",
    "export_alignment",
    "export_embedder",
    "exported",
    "onnx_entry",
    "retrieval_quality",
    "verify_embedders",
]
