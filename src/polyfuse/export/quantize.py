"""int8 graphs with onnxruntime's quantization tools.

- **dynamic** (`quantize_dynamic`) for graphs without convolutions (transformers, linear
  layers, the fusion and the heads): int8 weights, activations quantized per batch at run
  time from their observed range; needs no data.
- **static, QDQ** (`quantize_static`) for convolutional graphs: int8 weights per channel and
  int8 activations with ranges calibrated (min/max) on real inputs read from a manifest
  through the artifact's contracts; dynamic quantization of convolutions (ConvInteger) is
  slow on CPU, static QDQ lets the runtime fuse them into int8 kernels.

Both write signed int8 weights and activations (S8S8, onnxruntime's recommended default
for QDQ on x86 CPUs).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from polyfuse.core.errors import ExportError

#: How one graph is quantized.
Mode = Literal["dynamic", "static"]


def mode_for(module: nn.Module) -> Mode:
    """``static`` for a part with convolutions, else ``dynamic``."""
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return "static" if any(isinstance(x, convs) for x in module.modules()) else "dynamic"


class Feeds:
    """A calibration data reader over recorded graph inputs (onnxruntime's
    ``CalibrationDataReader`` protocol: ``get_next() -> feed or None``)."""

    def __init__(self, feeds: Iterable[Mapping[str, np.ndarray]]) -> None:
        self._feeds: Iterator[Mapping[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next feed, or None when done."""
        feed = next(self._feeds, None)
        return None if feed is None else dict(feed)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime's quantizer prints advice (pre-processing, per-channel) and warnings."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def outside_scope(file: Path, scope: str) -> list[str]:
    """Names of the nodes of the ONNX file that the exporter recorded as computed outside
    the submodule ``scope`` of the exported module (``torch.onnx.export(dynamo=True)``
    writes each node's module path as ``pkg.torch.onnx.name_scopes``); nodes without that
    record are not listed."""
    import ast

    import onnx

    names = []
    for node in onnx.load(str(file), load_external_data=False).graph.node:
        record = {p.key: p.value for p in node.metadata_props}.get("pkg.torch.onnx.name_scopes")
        if record is None:
            continue
        scopes = ast.literal_eval(record)  # ['', 'encoder', 'encoder.net', ..., 'op']
        inside = len(scopes) > 2 and str(scopes[1]).split(".")[0] == scope
        if not inside:
            names.append(node.name)
    return names


def first_conv(file: Path) -> list[str]:
    """The name of the ONNX file's first convolution (none when it has none)."""
    import onnx

    nodes = onnx.load(str(file), load_external_data=False).graph.node
    return next(([n.name] for n in nodes if n.op_type == "Conv"), [])


def quantize_graph(
    src: Path,
    dst: Path,
    name: str,
    mode: Mode,
    calibration: Iterable[Mapping[str, np.ndarray]] | None = None,
    *,
    scope: str | None = None,
    stem_fp32: bool = False,
    per_channel: bool | None = None,
) -> None:
    """Write the int8 version of the graph ``src`` to ``dst``.

    Args:
        name: the graph's name, for errors.
        mode: ``dynamic`` or ``static``.
        calibration: graph inputs to calibrate on (``static`` only).
        scope: quantize only the nodes of this submodule of the exported module (e.g.
            ``encoder``: the alignment adapters after it stay fp32); default: every node.
        stem_fp32: keep the graph's first convolution (the stem, which reads the image
            itself; a few percent of a CNN's work) in fp32.
        per_channel: int8 weights per output channel (default: static yes, dynamic no).

    Raises:
        ExportError: static without calibration data, or the quantizer failed.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if mode == "static" and calibration is None:
        raise ExportError(
            name,
            "static int8 quantization of a convolutional graph needs calibration data",
            hint="pass --data MANIFEST (rows the model reads, e.g. the validation split)",
        )
    try:
        with _quiet(), tempfile.TemporaryDirectory() as tmp:
            prepared = Path(tmp) / "prepared.onnx"
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            exclude = [] if scope is None else outside_scope(prepared, scope)
            if stem_fp32:
                exclude += first_conv(prepared)
            if mode == "dynamic":
                quantize_dynamic(
                    str(prepared),
                    str(dst),
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude,
                    per_channel=bool(per_channel),
                )
            else:
                quantize_static(
                    str(prepared),
                    str(dst),
                    Feeds(calibration or ()),
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=per_channel is not False,
                    calibrate_method=CalibrationMethod.MinMax,
                    nodes_to_exclude=exclude,
                )
    except ExportError:
        raise
    except Exception as exc:  # the quantizer raises many kinds
        raise ExportError(
            name,
            f"{mode} int8 quantization failed: {type(exc).__name__}: {str(exc)[:300]}",
            hint="export without --quantize (fp32)",
        ) from exc


def feeds_of(batches: Iterable[Any], modality: str, limit: int) -> list[dict[str, np.ndarray]]:
    """Encoder-graph inputs (``data[, lengths]``) of ``modality`` from data-loader batches
    (`polyfuse.data.dataset.Batch`), at most ``limit`` rows in all."""
    feeds: list[dict[str, np.ndarray]] = []
    rows = 0
    for batch in batches:
        mb = batch.inputs.get(modality)
        if mb is None or mb.num_present == 0:
            continue
        feed = {"data": mb.data.numpy()}
        if mb.lengths is not None:
            feed["lengths"] = mb.lengths.numpy()
        feeds.append(feed)
        rows += int(mb.data.shape[0])
        if rows >= limit:
            break
    return feeds


__all__ = ["Feeds", "Mode", "feeds_of", "first_conv", "mode_for", "outside_scope", "quantize_graph"]
