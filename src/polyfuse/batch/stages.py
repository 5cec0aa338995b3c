"""The steps of a batch job, each a callable class over `Columns` batches.

A stage is built once per worker (it loads the artifact in its constructor) and then
called on batch after batch: `Preprocess` (load, quality gates, preprocess), one `Encode`
per modality (encoder + adapter on the rows that have it), `Fuse` (fusion, heads and the
predictor's decoding). Rows that fail carry their error text on and are answered by
no later stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from polyfuse.batch import columns as col
from polyfuse.batch.columns import Columns
from polyfuse.batch.models import ClassifierModel, Features, ModelSpec
from polyfuse.data.dataset import BadRow
from polyfuse.data.manifest import Manifest, Row
from polyfuse.inference.batches import collate_all

#: Column of the prediction (the JSON object the single-process ``polyfuse predict`` writes).
PREDICTION = "prediction"
#: Column of the modalities whose quality gate refused the row's input (JSON object).
LOW_QUALITY = "low_quality"
#: Columns every stage passes on untouched.
KEEP = (col.ROW, col.ID, col.PART, col.ERROR)


class Preprocess:
    """Load, check and preprocess rows with the artifact's contracts and quality gates.

    Args:
        spec: the artifact.
        manifest: the manifest file (relative paths resolve against its folder).
    """

    def __init__(self, spec: ModelSpec, manifest: str) -> None:
        self.model = spec.open()
        self.manifest = Path(manifest)

    def __call__(self, batch: Columns) -> Columns:
        """Raw values in, preprocessed tensors (``pre:<modality>``) or an error out."""
        names = self.model.modalities
        raw = {m: col.values(batch, col.raw(m)) for m in names}
        rows = [
            Row(int(i), str(rid), {m: raw[m][j] for m in names if raw[m][j] is not None}, None)
            for j, (i, rid) in enumerate(zip(batch[col.ROW], batch[col.ID], strict=True))
        ]
        ds = self.model.dataset(Manifest(self.manifest, rows, [], names))
        out: dict[str, list[object]] = {k: list(batch[k]) for k in (col.ROW, col.ID, col.PART)}
        out[col.ERROR], out[LOW_QUALITY] = [], []
        for m in names:
            out[col.pre(m)] = []
        for j, row in enumerate(rows):
            example = ds[j]
            inputs = {} if isinstance(example, BadRow) else example.inputs
            out[col.ERROR].append(describe(row, example) if isinstance(example, BadRow) else None)
            out[LOW_QUALITY].append(json.dumps({m: v.reason for m, v in ds.low_quality(j).items()}))
            for m in names:
                out[col.pre(m)].append(col.pack(inputs[m]) if m in inputs else None)
        return col.make(out)


def describe(row: Row, bad: BadRow) -> str:
    """The report line of a bad row, with its manifest row number."""
    return f"row {row.line} (id {row.id}): {bad.error.message}"


class Encode:
    """One modality's encoder + adapter on the rows that have it.

    Args:
        spec: the artifact.
        modality: the modality this stage encodes.
        tokens: also pass on adapted tokens and masks (fusions that read tokens).
    """

    def __init__(self, spec: ModelSpec, modality: str, tokens: bool = False) -> None:
        self.model = spec.open()
        self.modality = modality
        self.tokens = tokens

    def __call__(self, batch: Columns) -> Columns:
        """``pre:<modality>`` in; ``pooled:<modality>`` (and tokens, masks) out."""
        m = self.modality
        items = col.values(batch, col.pre(m))
        out = {k: list(v) for k, v in batch.items() if k != col.pre(m)}
        n = len(items)
        pooled: list[bytes | None] = [None] * n
        tokens: list[bytes | None] = [None] * n
        masks: list[bytes | None] = [None] * n
        idx = [i for i, v in enumerate(items) if v is not None]
        if idx:
            data = collate_all(self.model.contract(m), [col.unpack(items[i]) for i in idx])
            feats = self.model.encode(m, data, self.tokens)
            for j, i in enumerate(idx):
                pooled[i] = col.pack(feats.pooled[j])  # (D,)
                if feats.tokens is not None and feats.masks is not None:
                    valid = feats.masks[j].nonzero()
                    k = int(valid.max()) + 1 if len(valid) else 1
                    tokens[i], masks[i] = (
                        col.pack(feats.tokens[j, :k]),
                        col.pack(feats.masks[j, :k]),
                    )
        out[col.pooled(m)] = pooled
        if self.tokens:
            out[col.tokens(m)], out[col.mask(m)] = tokens, masks
        return col.make(out)


class Fuse:
    """Fusion, heads and decoding of a classifier over the encoded rows.

    Args:
        spec: the classifier artifact.
    """

    def __init__(self, spec: ModelSpec) -> None:
        self.model = cast(ClassifierModel, spec.open())

    def __call__(self, batch: Columns) -> Columns:
        """Encoded features in; ``prediction`` (JSON text, None for bad rows) out."""
        errors = col.values(batch, col.ERROR)
        good = [j for j, e in enumerate(errors) if e is None]
        answers: list[str | None] = [None] * len(errors)
        if good:
            rows = [Row(int(batch[col.ROW][j]), str(batch[col.ID][j]), {}, None) for j in good]
            preds = self.model.predict(
                rows, {m: self._features(batch, m, good) for m in self.model.modalities}
            )
            refused = col.values(batch, LOW_QUALITY)
            for j, pred in zip(good, preds, strict=True):
                pred.low_quality = json.loads(refused[j] or "{}")
                answers[j] = json.dumps(pred.to_dict())
        out: dict[str, list[object]] = {k: list(batch[k]) for k in KEEP}
        out[PREDICTION] = list(answers)
        return col.make(out)

    def _features(self, batch: Columns, m: str, rows: list[int]) -> list[Features | None]:
        pooled = col.values(batch, col.pooled(m))
        tokens, masks = col.values(batch, col.tokens(m)), col.values(batch, col.mask(m))
        out: list[Features | None] = []
        for j in rows:
            if pooled[j] is None:
                out.append(None)
                continue
            tok = None if tokens[j] is None else col.unpack(tokens[j])[None]  # (1, T, D)
            msk = None if masks[j] is None else col.unpack(masks[j])[None]  # (1, T)
            out.append(Features(col.unpack(pooled[j])[None], tok, msk))  # (1, D)
        return out
