"""Writing a classifier's parts as ONNX graphs and checking them against the eager model.

Each part is exported with ``torch.onnx.export(..., dynamo=True)``: torch 2.13's exporter,
built on `torch.export` and onnxscript (the TorchScript-based exporter, ``dynamo=False``,
is deprecated). Every axis is declared ``Dim.AUTO``: the exporter keeps an axis dynamic
unless the model's code fixes it (an image's size, the mel bands a projection reads), so
batch and sequence axes stay free. Whether they really did is not taken on trust:
`check_dynamic` refuses a graph whose batch axis was fixed, and `verify` runs the exported
model next to the eager one on a batch of 1 and a batch of 3 with mixed lengths and one
modality missing for one sample, and refuses any output more than ``atol`` away, naming
the graph.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polyfuse.artifacts.onnx import OnnxEncoder
from polyfuse.core.errors import DependencyError, ExportError
from polyfuse.fusion.base import Fusion
from polyfuse.modalities.base import ModalityBatch, ModalityContract
from polyfuse.models.multimodal import Encoded, MultimodalModel
from polyfuse.models.stages import EncodeStage

#: Largest absolute difference between an fp32 graph's outputs and the eager model's.
ATOL = 1e-4


@dataclass(frozen=True)
class GraphSpec:
    """What one exported graph takes and returns (recorded in ``artifact.json``).

    Attributes:
        name: ``encoder-<m>``, ``fusion`` or ``head-<m>``.
        file: its file in the folder.
        inputs: input name -> shape (a name for a dynamic axis, an int for a fixed one).
        outputs: output name -> shape.
        dtypes: tensor name -> element type.
        opset: the default-domain opset.
    """

    name: str
    file: str
    inputs: dict[str, list[int | str]]
    outputs: dict[str, list[int | str]]
    dtypes: dict[str, str]
    opset: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "file": self.file,
            "inputs": {k: {"shape": v, "dtype": self.dtypes[k]} for k, v in self.inputs.items()},
            "outputs": {k: {"shape": v, "dtype": self.dtypes[k]} for k, v in self.outputs.items()},
            "opset": self.opset,
        }


class FusionGraph(nn.Module):
    """Fusion + head of a model as one module over flat inputs: per modality (sorted)
    ``features, present[, mask]``; returns ``logits, embedding[, weights][, attention]``.

    Args:
        fusion: the model's fusion.
        head: its head (None when the fusion predicts).
        outputs: which optional outputs the fusion has (``weights``, ``attention``).
    """

    def __init__(self, fusion: Fusion, head: nn.Module | None, outputs: Sequence[str]) -> None:
        super().__init__()
        self.fusion = fusion
        self.head = head
        self.extra = tuple(o for o in ("weights", "attention") if o in outputs)

    @property
    def per_modality(self) -> int:
        """Inputs per modality."""
        return 3 if self.fusion.uses_tokens else 2

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        """See the class docstring."""
        k = self.per_modality
        feats = {m: inputs[k * i] for i, m in enumerate(self.fusion.modalities)}
        present = {m: inputs[k * i + 1] for i, m in enumerate(self.fusion.modalities)}
        masks = None
        if self.fusion.uses_tokens:
            masks = {m: inputs[k * i + 2] for i, m in enumerate(self.fusion.modalities)}
        out = self.fusion(feats, present, masks)
        logits = out.logits if self.head is None else self.head(out.embedding)
        if logits is None:  # pragma: no cover - MultimodalModel refuses this
            raise RuntimeError("fusion returned no logits and the model has no head")
        extra = {"weights": out.weights, "attention": out.attention}
        return (
            logits,
            out.embedding,
            *(t for n, t in extra.items() if n in self.extra and t is not None),
        )

    def input_names(self) -> list[str]:
        """Names of the flat inputs."""
        parts = ("features", "present", "mask")[: self.per_modality]
        return [f"{m}.{p}" for m in self.fusion.modalities for p in parts]

    def output_names(self) -> list[str]:
        """Names of the outputs."""
        return ["logits", "embedding", *self.extra]


def import_exporter() -> None:
    """Check that the exporter's packages are installed (`DependencyError` otherwise)."""
    for package in ("onnx", "onnxscript"):
        try:
            __import__(package)
        except ImportError:
            raise DependencyError(package, "polyfuse export", "onnx") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines and warnings (torchvision ops it skips, deprecations
    inside torch) are not the user's business: export errors are raised, not printed."""
    # torch's exporter and the onnxscript optimiser it runs log each pass at INFO
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_module(
    module: nn.Module,
    args: tuple[Tensor, ...],
    file: Path,
    name: str,
    input_names: list[str],
    output_names: list[str],
    *,
    varargs: bool = False,
) -> GraphSpec:
    """Export ``module`` called on ``args`` to ``file`` with every axis ``Dim.AUTO``.

    Raises:
        ExportError: the exporter failed, or it fixed a batch axis.
    """
    import_exporter()
    auto = torch.export.Dim.AUTO
    shapes = tuple({axis: auto for axis in range(a.dim())} for a in args)
    try:
        with _quiet(), torch.no_grad():
            torch.onnx.export(
                module.eval(),
                args,
                str(file),
                dynamo=True,
                external_data=False,
                dynamic_shapes=(shapes,) if varargs else shapes,
                input_names=input_names,
                output_names=output_names,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many kinds; all mean "cannot export"
        raise ExportError(
            name,
            f"torch.onnx.export failed: {type(exc).__name__}: {str(exc).strip()[:400]}",
            hint="this part uses an operation the ONNX exporter does not support; serve the "
            "artifact with the torch engine",
        ) from exc
    spec = describe_graph(file, name)
    check_dynamic(spec)
    return spec


def describe_graph(file: Path, name: str) -> GraphSpec:
    """Inputs, outputs and opset of an ONNX file."""
    import onnx

    model = onnx.load(str(file), load_external_data=False)

    def shape(value: Any) -> list[int | str]:
        dims = value.type.tensor_type.shape.dim
        return [d.dim_param or int(d.dim_value) for d in dims]

    def dtype(value: Any) -> str:
        return str(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))

    values = [*model.graph.input, *model.graph.output]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return GraphSpec(
        name,
        file.name,
        {v.name: shape(v) for v in model.graph.input},
        {v.name: shape(v) for v in model.graph.output},
        {v.name: dtype(v) for v in values},
        int(opset),
    )


def check_dynamic(spec: GraphSpec) -> None:
    """Refuse a graph whose first (batch) axis of an input is a fixed number."""
    for name, shape in spec.inputs.items():
        if shape and isinstance(shape[0], int):
            raise ExportError(
                spec.name,
                f"the exporter fixed the batch axis of input {name!r} to {shape[0]}",
                hint="the part's code branches on the batch size; serve it with the torch engine",
            )


def encode_stage(model: MultimodalModel, m: str, lengths: bool) -> EncodeStage:
    """The eager encoder + adapter stage of modality ``m`` (what ``encoder-<m>`` computes)."""
    return EncodeStage(
        model.encoder(m), model.adapters[m], tokens=model.fusion.uses_tokens, lengths=lengths
    ).eval()


def stage_args(batch: ModalityBatch) -> tuple[Tensor, ...]:
    """A batch's inputs of the encoder graph: ``data[, lengths]``."""
    return (batch.data,) if batch.lengths is None else (batch.data, batch.lengths)


def export_encoder(model: MultimodalModel, m: str, batch: ModalityBatch, file: Path) -> GraphSpec:
    """Write ``encoder-<m>``: encoder + adapter of modality ``m`` (see the module docstring)."""
    stage = encode_stage(model, m, batch.lengths is not None)
    args = stage_args(batch)
    outputs = ["pooled", "tokens", "mask"] if stage.tokens else ["pooled", "mask"]
    return export_module(
        stage, args, file, f"encoder-{m}", ["data", "lengths"][: len(args)], outputs
    )


def fusion_inputs(model: MultimodalModel, encoded: Encoded) -> tuple[Tensor, ...]:
    """The fusion graph's flat inputs for ``encoded`` (as `MultimodalModel.fuse` feeds the
    fusion: features of absent samples zeroed)."""
    tokens = model.fusion.uses_tokens
    args: list[Tensor] = []
    for m in model.fusion.modalities:
        feats = encoded.tokens[m] if tokens else encoded.pooled[m]
        present = encoded.present[m]
        args += [feats * present.view(-1, *([1] * (feats.dim() - 1))).to(feats.dtype), present]
        if tokens:
            args.append(encoded.masks[m])
    return tuple(args)


def export_fusion(model: MultimodalModel, encoded: Encoded, file: Path) -> GraphSpec:
    """Write ``fusion``: fusion + head over the per-modality features of ``encoded``."""
    args = fusion_inputs(model, encoded)
    with torch.no_grad():
        out = model.fusion(*_fusion_call(model, args))
    extra = [
        n for n, t in (("weights", out.weights), ("attention", out.attention)) if t is not None
    ]
    graph = FusionGraph(model.fusion, model.head, extra).eval()
    return export_module(
        graph, args, file, "fusion", graph.input_names(), graph.output_names(), varargs=True
    )


def _fusion_call(
    model: MultimodalModel, args: tuple[Tensor, ...]
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor] | None]:
    k = 3 if model.fusion.uses_tokens else 2
    names = model.fusion.modalities
    feats = {m: args[k * i] for i, m in enumerate(names)}
    present = {m: args[k * i + 1] for i, m in enumerate(names)}
    masks = {m: args[k * i + 2] for i, m in enumerate(names)} if k == 3 else None
    return feats, present, masks


def export_head(model: MultimodalModel, m: str, pooled: Tensor, file: Path) -> GraphSpec:
    """Write ``head-<m>``: the auxiliary head of modality ``m``."""
    return export_module(model.aux_heads[m], (pooled,), file, f"head-{m}", ["pooled"], ["logits"])


def _largest_difference(want: Tensor | None, got: Tensor | None) -> float:
    if want is None and got is None:
        return 0.0
    if want is None or got is None or want.shape != got.shape:
        return float("inf")
    if want.dtype == torch.bool:
        return 0.0 if bool((want == got).all()) else float("inf")
    return float((want.float() - got.float()).abs().max()) if want.numel() else 0.0


def verify(
    model: MultimodalModel,
    exported: MultimodalModel,
    batches: Sequence[tuple[Mapping[str, ModalityBatch], int]],
    atol: float = ATOL,
) -> dict[str, float]:
    """Compare every graph with the eager part on ``batches``; graph -> largest difference.

    Raises:
        ExportError: naming the first graph whose outputs differ by more than ``atol``
            (or whose shapes differ, or that fails on a batch).
    """
    worst: dict[str, float] = {}

    def note(graph: str, diffs: Sequence[float], shape: str) -> None:
        d = max(diffs)
        worst[graph] = max(worst.get(graph, 0.0), d)
        if not d <= atol:
            raise ExportError(
                graph,
                f"the exported graph differs from the eager model by {d:.3g} (> {atol:g}) on "
                f"a batch of {shape}",
                hint="the part's code depends on input values or sizes the exporter fixed; "
                "serve the artifact with the torch engine",
            )

    with torch.no_grad():
        for inputs, size in batches:
            for m, mb in inputs.items():
                want = encode_stage(model, m, mb.lengths is not None).run(mb.data, mb.lengths)
                got = onnx_part(exported, m).run(mb.data, mb.lengths)
                diffs = [_largest_difference(w, g) for w, g in zip(want, got, strict=True)]
                note(f"encoder-{m}", diffs, str(tuple(mb.data.shape)))
            encoded = model.encode(inputs, size)
            want_out, got_out = model.fuse(encoded), exported.fuse(encoded)
            note(
                "fusion",
                [
                    _largest_difference(want_out.logits, got_out.logits),
                    _largest_difference(want_out.embedding, got_out.embedding),
                    _largest_difference(want_out.fusion.weights, got_out.fusion.weights),
                ],
                f"{size} samples",
            )
            for m in model.modalities:
                diff = _largest_difference(want_out.unimodal_logits[m], got_out.unimodal_logits[m])
                note(f"head-{m}", [diff], f"{size} samples")
            end_to_end = exported.fuse(exported.encode(inputs, size))
            note(
                "end-to-end",
                [_largest_difference(want_out.logits, end_to_end.logits)],
                f"{size} samples",
            )
    return worst


def onnx_part(model: MultimodalModel, m: str) -> OnnxEncoder:
    """The `OnnxEncoder` of modality ``m`` of an exported model."""
    encoder = model.encoder(m)
    if not isinstance(encoder, OnnxEncoder):
        raise TypeError(f"the encoder of {m!r} is a {type(encoder).__name__}, not an ONNX graph")
    return encoder


def example_values(contract: ModalityContract, count: int, seed: int = 0) -> list[Any]:
    """``count`` loaded inputs of ``contract``'s kind, of increasing size (texts of more
    words, longer audio and series): what export and verification run when no manifest is
    given."""
    rng = np.random.default_rng(seed)
    words = [
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "a",
        "lazy",
        "dog",
        "near",
        "seven",
        "green",
        "hills",
        "today",
    ]
    values: list[Any] = []
    for i in range(count):
        scale = (i + 1) / count
        raw: Any
        if contract.kind == "text":
            raw = " ".join(words[: 2 + int(scale * 12)])
        elif contract.kind == "image":
            size = tuple(getattr(contract, "size", (64, 64)))
            shape = size if getattr(contract, "channels", 3) == 1 else (*size, 3)
            raw = rng.integers(0, 255, shape, np.uint8)
        elif contract.kind == "audio":
            rate = int(getattr(contract, "sample_rate", 16000))
            raw = (0.1 * rng.standard_normal(int(rate * (0.2 + 0.8 * scale)))).astype(np.float32)
        elif contract.kind == "timeseries":
            channels = getattr(contract, "channels", None) or 1
            raw = rng.standard_normal((8 + int(scale * 60), channels)).astype(np.float32)
        else:
            raise ExportError(
                f"encoder-{contract.name}",
                f"no example input for contract kind {contract.kind!r}",
                hint="pass --data MANIFEST so export reads real examples",
            )
        values.append(contract.load(raw, field=contract.name))
    return values


__all__ = [
    "ATOL",
    "FusionGraph",
    "GraphSpec",
    "check_dynamic",
    "describe_graph",
    "encode_stage",
    "example_values",
    "export_encoder",
    "export_fusion",
    "export_head",
    "export_module",
    "fusion_inputs",
    "import_exporter",
    "onnx_part",
    "stage_args",
    "verify",
]
