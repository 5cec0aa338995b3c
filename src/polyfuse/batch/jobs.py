"""Batch jobs: predictions, embeddings and vector indexes of whole manifests, resumable.

Each job reads the manifest here (row numbers and parsing exactly as the single-process
path has them), plans the rows into parts (`polyfuse.batch.parts`), sends the rows of the
missing parts through its stages on a `Runner` and writes each part as it completes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyfuse.batch import columns as col
from polyfuse.batch.columns import Columns
from polyfuse.batch.models import ClassifierModel, ModelSpec
from polyfuse.batch.parts import Layout, PartWriter, digest, prepare, read_parts
from polyfuse.batch.runners import Runner, Stage
from polyfuse.batch.stages import PREDICTION, Encode, Fuse, Preprocess
from polyfuse.core.errors import ConfigError, ManifestError
from polyfuse.data.manifest import Manifest

log = logging.getLogger("polyfuse.batch")


@dataclass(frozen=True)
class JobSettings:
    """How a job runs.

    Attributes:
        batch_size: rows per batch in every stage.
        part_rows: rows per Parquet part (the unit a rerun resumes from).
        actors: workers per stage (Ray): preprocessing, each encoder, fusion.
        gpus_per_actor: GPUs each encoder and fusion worker asks for (Ray).
        device: ``auto``, ``cpu`` or ``cuda``, resolved in each worker.
        modalities: feed only these modalities (classifiers; None: all).
        on_bad_row: ``skip`` (report) or ``fail`` (stop at the first bad row).
    """

    batch_size: int = 32
    part_rows: int = 1000
    actors: int = 1
    gpus_per_actor: float = 0.0
    device: str = "cpu"
    modalities: tuple[str, ...] | None = None
    on_bad_row: str = "skip"


@dataclass
class JobResult:
    """What a job did.

    Attributes:
        out: the parts folder.
        parts: parts in the folder when the job ended.
        written: parts this run computed (the rest were already there).
        rows: manifest rows covered.
        bad: report lines of the bad rows in every part.
    """

    out: Path
    parts: int
    written: int
    rows: int
    bad: list[str] = field(default_factory=list)


def predict(
    artifact: str | Path,
    manifest: str | Path,
    out: str | Path,
    runner: Runner,
    settings: JobSettings = JobSettings(),
) -> JobResult:
    """Predictions of a classifier for every row of ``manifest``, as Parquet parts in
    ``out`` (columns ``row``, ``id``, ``error``, ``label`` and ``prediction``: the JSON
    object the single-process ``polyfuse predict`` writes)."""
    import pyarrow as pa

    spec = _spec(artifact, settings, "classifier")
    model = spec.open()  # the artifact checked here, before any worker starts
    tokens = isinstance(model, ClassifierModel) and model.uses_tokens
    modalities = model.modalities
    fuse = Stage("fuse", Fuse, (spec,), settings.actors, settings.gpus_per_actor)
    stages = [*_encoders(spec, manifest, modalities, settings, tokens), fuse]
    schema = pa.schema(
        [
            ("row", pa.int64()),
            ("id", pa.string()),
            ("error", pa.string()),
            ("label", pa.string()),
            ("prediction", pa.string()),
        ]
    )

    def record(batch: Columns, j: int) -> dict[str, Any]:
        answer = batch[PREDICTION][j]
        label = None if answer is None else json.dumps(json.loads(answer)["label"])
        return {"label": label, "prediction": answer}

    return _run(
        "predict", spec, manifest, out, runner, settings, modalities, stages, schema, record
    )


def embed(
    artifact: str | Path,
    manifest: str | Path,
    out: str | Path,
    runner: Runner,
    settings: JobSettings = JobSettings(),
) -> JobResult:
    """Per row and modality the pooled embedding in the artifact's shared space, as
    Parquet parts in ``out`` (a ``list<float>`` column per modality, null where the row
    lacks it): a classifier's adapted encoder features, an alignment artifact's unit
    vectors."""
    import pyarrow as pa

    spec = _spec(artifact, settings, None)
    modalities = spec.open().modalities  # the artifact checked before any worker starts
    stages = _encoders(spec, manifest, modalities, settings, tokens=False)
    fields = [("row", pa.int64()), ("id", pa.string()), ("error", pa.string())]
    schema = pa.schema(fields + [(m, pa.list_(pa.float32())) for m in modalities])

    def record(batch: Columns, j: int) -> dict[str, Any]:
        vectors = {m: batch[col.pooled(m)][j] for m in modalities}
        return {m: None if v is None else col.unpack(v).tolist() for m, v in vectors.items()}

    return _run("embed", spec, manifest, out, runner, settings, modalities, stages, schema, record)


def index(
    artifact: str | Path,
    manifest: str | Path,
    db: str | Path,
    runner: Runner,
    settings: JobSettings = JobSettings(),
    *,
    parts: str | Path | None = None,
    ann_min_rows: int = 20_000,
) -> dict[str, int]:
    """`embed` an alignment artifact over a pair manifest (parts in ``parts``, default
    ``DB/_embeddings``), then write the LanceDB tables `polyfuse index` writes.

    Returns:
        table name -> rows written.
    """
    import numpy as np

    from polyfuse.retrieval.pipeline import write_index

    spec = _spec(artifact, settings, "alignment")
    folder = Path(parts) if parts is not None else Path(db) / "_embeddings"
    embed(artifact, manifest, folder, runner, settings)
    info = json.loads((Path(spec.path) / "artifact.json").read_text(encoding="utf-8"))
    roles = info["roles"]
    names = [roles["item"], roles["query"]]
    table = read_parts(folder, ["row", "error", *names]).to_pydict()
    keep = [
        j
        for j in range(len(table["row"]))
        if table["error"][j] is None and all(table[m][j] is not None for m in names)
    ]
    rows = {r.index: r for r in Manifest.load(manifest, names).rows}
    vectors = {m: np.asarray([table[m][j] for j in keep], dtype=np.float32) for m in names}
    return write_index(
        db,
        spec.path,
        roles,
        [rows[int(table["row"][j])] for j in keep],
        vectors[roles["item"]],
        vectors[roles["query"]],
        ann_min_rows=ann_min_rows,
    )


def predictions_jsonl(out: str | Path, path: str | Path) -> int:
    """Write the predictions of a parts folder as the JSON lines of the single-process
    ``polyfuse predict`` (manifest order, bad rows left out); returns the lines written."""
    answers = read_parts(Path(out), ["prediction"]).column("prediction").to_pylist()
    lines = [a for a in answers if a is not None]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{a}\n" for a in lines), encoding="utf-8")
    return len(lines)


def _spec(artifact: str | Path, settings: JobSettings, kind: str | None) -> ModelSpec:
    spec = ModelSpec.of(artifact, settings.device, settings.modalities)
    if kind is not None and spec.kind != kind:
        raise ConfigError(
            "artifact",
            f"{artifact} is a {spec.kind} artifact; this job needs a {kind} one",
            hint="predict with a classifier; index with an alignment artifact",
        )
    return spec


def _encoders(
    spec: ModelSpec,
    manifest: str | Path,
    modalities: Sequence[str],
    settings: JobSettings,
    tokens: bool,
) -> list[Stage]:
    """Preprocessing, then one encoder stage per modality."""
    path = str(Path(manifest).resolve())
    return [Stage("preprocess", Preprocess, (spec, path), settings.actors)] + [
        Stage(f"encode:{m}", Encode, (spec, m, tokens), settings.actors, settings.gpus_per_actor)
        for m in modalities
    ]


def _run(
    job: str,
    spec: ModelSpec,
    manifest_path: str | Path,
    out: str | Path,
    runner: Runner,
    settings: JobSettings,
    modalities: tuple[str, ...],
    stages: list[Stage],
    schema: Any,
    record: Callable[[Columns, int], dict[str, Any]],
) -> JobResult:
    """Plan the parts, send the rows of the missing ones through ``stages``, write them."""
    manifest = Manifest.load(manifest_path, modalities)
    if settings.on_bad_row == "fail" and manifest.problems:
        p = manifest.problems[0]
        raise ManifestError(manifest.path, p.message, row=p.index + 1)
    layout = Layout(
        job,
        (spec.path, digest(Path(spec.path) / "artifact.json")),
        (str(manifest.path.resolve()), digest(manifest.path)),
        len(manifest.rows) + len(manifest.problems),
        settings.part_rows,
        tuple(modalities),
    )
    folder = Path(out)
    pending = prepare(folder, layout)
    writer = PartWriter(folder, layout, pending, schema)
    todo = set(pending)
    for p in manifest.problems:
        if layout.part_of(p.index) in todo:
            writer.add(
                {"row": p.index, "id": str(p.index), "error": f"row {p.index + 1}: {p.message}"}
            )
    items = [
        {"row": r.index, "id": r.id, "part": layout.part_of(r.index)}
        | {col.raw(m): r.values.get(m) for m in modalities}
        for r in manifest.rows
        if layout.part_of(r.index) in todo
    ]
    log.info("%s: %d of %d parts to compute in %s", job, len(pending), layout.parts, folder)
    for batch in runner.run(items, stages, settings.batch_size):
        for rec in _records(batch, record):
            if rec["error"] is not None and settings.on_bad_row == "fail":
                raise ManifestError(manifest.path, rec["error"], row=int(rec["row"]) + 1)
            writer.add(rec)
    writer.finish()
    errors = read_parts(folder, ["error"]).column("error").to_pylist()
    bad = [e for e in errors if e is not None]
    return JobResult(folder, layout.parts, len(writer.written), layout.records, bad)


def _records(
    batch: Columns, record: Callable[[Columns, int], dict[str, Any]]
) -> list[dict[str, Any]]:
    errors = col.values(batch, col.ERROR)
    out = []
    for j in range(col.size(batch)):
        base = {"row": int(batch[col.ROW][j]), "id": str(batch[col.ID][j]), "error": errors[j]}
        out.append(base if errors[j] is not None else base | record(batch, j))
    return out
