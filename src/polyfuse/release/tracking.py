"""Experiment tracking of training runs on MLflow: parameters, metrics per epoch, the artifact.

``train.tracking: mlflow`` records a training run on the tracking server that MLflow's own
``MLFLOW_TRACKING_URI`` names (``sqlite:///mlflow.db``, ``http://host:5000``, ...; MLflow's
default when unset): the flattened config as parameters, every record the trainer writes to
``metrics.jsonl`` as metrics at its epoch, the summary figures, and at the end the artifact
folder (without ``checkpoints/``) under the run's ``artifact/`` path. The run is named in
``tracking.json`` beside ``artifact.json`` (a file ``artifact.json`` does not list), so
``polyfuse register`` reuses the run and ``polyfuse train --resume`` continues it.

``train.tracking: none`` (the default) records nothing. mlflow is imported only when a run
is tracked; the helpers at the end (`mlflow_client`, `mlflow_errors`, `publish_folder`) are
shared with the model registry (`polyfuse.release.registry`).
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyfuse.core.config import Config
from polyfuse.core.errors import DependencyError, PolyfuseError, TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger("polyfuse.train")

#: The file beside ``artifact.json`` that names the run an artifact was trained in.
TRACKING_FILE = "tracking.json"
#: Where a run keeps its artifact folder.
ARTIFACT_PATH = "artifact"
#: Folders of an artifact that are training state, not the model: never published.
UNPUBLISHED = frozenset({"checkpoints"})

#: What MLflow accepts in a parameter or metric name on every platform.
_NAME_OK = re.compile(r"[^\w./\- ]")
_MAX_PARAM_VALUE = 6000  # MLflow's limit on a parameter's value
_PARAMS_PER_BATCH = 100  # MLflow's limit on parameters per log_batch call


@dataclass(frozen=True)
class TrackingRecord:
    """Where a training run is tracked (the contents of ``tracking.json``).

    Attributes:
        backend: the tracking backend (``mlflow``).
        tracking_uri: the tracking server the run lives on.
        experiment_id: the run's experiment.
        run_id: the run.
        artifact_path: where in the run the artifact folder is logged.
    """

    backend: str
    tracking_uri: str
    experiment_id: str
    run_id: str
    artifact_path: str = ARTIFACT_PATH

    def save(self, folder: Path) -> None:
        """Write ``folder/tracking.json``."""
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(asdict(self), indent=2) + "\n"
        (folder / TRACKING_FILE).write_text(text, encoding="utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> TrackingRecord | None:
        """``folder/tracking.json``, or None when the folder has none (or an unreadable one)."""
        file = Path(folder) / TRACKING_FILE
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
            return cls(
                backend=str(data["backend"]),
                tracking_uri=str(data["tracking_uri"]),
                experiment_id=str(data["experiment_id"]),
                run_id=str(data["run_id"]),
                artifact_path=str(data.get("artifact_path", ARTIFACT_PATH)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


class Tracker(ABC):
    """Receives one training run: `start`, `log_epoch` per epoch, then `finish` or `fail`."""

    @abstractmethod
    def start(self) -> None:
        """Open the run and record the configuration."""

    @abstractmethod
    def log_epoch(self, record: Mapping[str, Any], step: int) -> None:
        """Record the numbers of one ``metrics.jsonl`` record at ``step`` (the epoch)."""

    @abstractmethod
    def finish(self, folder: Path, figures: Mapping[str, Any]) -> None:
        """Record the summary figures and the artifact folder, and close the run."""

    @abstractmethod
    def fail(self, status: str = "FAILED") -> None:
        """Close the run as failed (``FAILED``) or interrupted (``KILLED``)."""


class NoTracker(Tracker):
    """``train.tracking: none``: records nothing."""

    def start(self) -> None:
        """Nothing to open."""

    def log_epoch(self, record: Mapping[str, Any], step: int) -> None:
        """Nothing to record."""

    def finish(self, folder: Path, figures: Mapping[str, Any]) -> None:
        """Nothing to close."""

    def fail(self, status: str = "FAILED") -> None:
        """Nothing to close."""


class MlflowTracker(Tracker):
    """``train.tracking: mlflow``: one MLflow run per training run.

    Args:
        config: the training configuration (logged as flattened parameters).
        out: the artifact folder (``tracking.json`` goes there at `start`).
        experiment: MLflow experiment, created when missing.
        resume: continue the run named in ``out/tracking.json`` when it exists on this server.
    """

    def __init__(self, config: Config, out: Path, *, experiment: str, resume: bool) -> None:
        self.config = config
        self.out = out
        self.experiment = experiment
        self.resume = resume
        self.record: TrackingRecord | None = None
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        """The MLflow client (after `start`)."""
        if self._client is None:
            raise TrackingError("the MLflow run was not started", hint="call start() first")
        return self._client

    @property
    def run_id(self) -> str:
        """The run's id (after `start`)."""
        if self.record is None:
            raise TrackingError("the MLflow run was not started", hint="call start() first")
        return self.record.run_id

    def start(self) -> None:
        """Create (or resume) the run, log the parameters, write ``tracking.json``."""
        self._client, uri = mlflow_client()
        with mlflow_errors(f"starting an MLflow run on {safe_uri(uri)}"):
            experiment_id = experiment_id_of(self.client, self.experiment)
            run_id = self._resumable(uri) or self._create(experiment_id)
            self.record = TrackingRecord("mlflow", uri, experiment_id, run_id)
            self._log_params()
        self.record.save(self.out)
        log.info("tracking the run on MLflow: %s, run %s", safe_uri(uri), run_id)

    def _resumable(self, uri: str) -> str | None:
        previous = TrackingRecord.load(self.out) if self.resume else None
        if previous is None or previous.tracking_uri != uri:
            return None
        if find_run(self.client, previous.run_id) is None:
            return None
        self.client.update_run(previous.run_id, status="RUNNING")
        return previous.run_id

    def _create(self, experiment_id: str) -> str:
        tags = {"polyfuse.task": self.config.task, "polyfuse.out": str(self.out.resolve())}
        run = self.client.create_run(experiment_id, run_name=self.out.name or None, tags=tags)
        return str(run.info.run_id)

    def _log_params(self) -> None:
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flatten_params(self.config.to_dict()).items()]
        for i in range(0, len(params), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[i : i + _PARAMS_PER_BATCH])

    def log_epoch(self, record: Mapping[str, Any], step: int) -> None:
        """One ``log_batch`` with every number of the record (``epoch`` is the step)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        numbers = numeric(record)
        numbers.pop("epoch", None)
        metrics = [Metric(k, v, now, step) for k, v in numbers.items()]
        if metrics:
            with mlflow_errors("logging epoch metrics to MLflow"):
                self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, folder: Path, figures: Mapping[str, Any]) -> None:
        """Log the summary figures, tag the run with the artifact's kind, upload the folder."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, 0) for k, v in numeric(figures).items()]
        tags = [RunTag(k, v) for k, v in artifact_tags(folder).items()]
        with mlflow_errors("logging the artifact to MLflow"):
            self.client.log_batch(self.run_id, metrics=metrics, tags=tags)
            publish_folder(self.client, self.run_id, folder)
            self.client.set_terminated(self.run_id, "FINISHED")
        log.info("logged the artifact to MLflow run %s (%s/)", self.run_id, ARTIFACT_PATH)

    def fail(self, status: str = "FAILED") -> None:
        """Mark the run failed; an unreachable server is only logged (the training error wins)."""
        if self.record is None:
            return
        try:
            self.client.set_terminated(self.run_id, status)
        except Exception as exc:  # the training error is the one to report
            log.warning("could not mark MLflow run %s as %s: %s", self.run_id, status, exc)


def make_tracker(
    config: Config, out: str | Path, *, name: str | None = None, resume: bool = False
) -> Tracker:
    """The tracker ``config.train.tracking`` asks for (``name``: the default experiment)."""
    if config.train.tracking == "none":
        return NoTracker()
    experiment = config.train.experiment or name or "polyfuse"
    return MlflowTracker(config, Path(out), experiment=experiment, resume=resume)


@contextmanager
def tracked(
    config: Config, out: str | Path, *, name: str | None = None, resume: bool = False
) -> Iterator[Tracker]:
    """Start the configured tracker; a training error (or Ctrl-C) closes the run as failed.

    The caller calls ``tracker.finish(folder, figures)`` once the artifact is written.
    """
    tracker = make_tracker(config, out, name=name, resume=resume)
    tracker.start()
    try:
        yield tracker
    except KeyboardInterrupt:
        tracker.fail("KILLED")
        raise
    except BaseException:
        tracker.fail()
        raise


# ---------------------------------------------------------------------- what is logged
def metric_name(key: str) -> str:
    """A record key as an MLflow name: ``@`` (the fusion shown one subset) becomes
    ``/only_``, any other character MLflow refuses becomes ``_``
    (``val_accuracy@image`` -> ``val_accuracy/only_image``)."""
    return _NAME_OK.sub("_", key.replace("@", "/only_"))


def numeric(record: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a record (booleans, lists, text left out), names made valid."""
    return {
        metric_name(str(k)): float(v)
        for k, v in record.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def flatten_params(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as dotted parameter names -> text values (JSON for non-strings),
    cut to MLflow's value limit: ``{"model": {"dim": 16}}`` -> ``{"model.dim": "16"}``."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_params(value, f"{name}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        out[metric_name(name)] = text[:_MAX_PARAM_VALUE]
    return out


def artifact_tags(folder: Path) -> dict[str, str]:
    """``polyfuse.kind``, ``polyfuse.task``, ``polyfuse.modalities`` of the artifact folder
    (from its ``artifact.json``; empty when it has none)."""
    try:
        info = json.loads((folder / "artifact.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    tags = {
        "polyfuse.kind": str(info.get("kind", "classifier")),
        "polyfuse.modalities": ",".join(sorted(info.get("modalities", {}))),
    }
    if "task" in info:
        tags["polyfuse.task"] = str(info["task"])
    return tags


# ---------------------------------------------------------------------- MLflow plumbing
def mlflow_client(tracking_uri: str | None = None) -> tuple[MlflowClient, str]:
    """An MLflow client and its tracking URI (``tracking_uri``, else MLflow's own
    ``MLFLOW_TRACKING_URI`` or default). An ``http(s)`` server is probed first, so an
    unreachable one fails at once with a `TrackingError` instead of MLflow's retries.

    Raises:
        DependencyError: mlflow (or the SQL store's sqlalchemy/alembic) is not installed.
        TrackingError: the tracking server does not answer.
    """
    try:
        import mlflow
        from mlflow import MlflowClient
    except ImportError:
        raise DependencyError(
            "mlflow", "MLflow tracking and the model registry", "mlflow"
        ) from None
    uri = tracking_uri or mlflow.get_tracking_uri()
    check_reachable(uri)
    with mlflow_errors(f"connecting to MLflow at {safe_uri(uri)}"):
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # opens the store: a missing driver fails here
    return client, uri


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Refuse an ``http(s)`` tracking URI whose host does not accept a connection."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {safe_uri(uri)} ({exc.strerror or exc})",
            hint="start it (mlflow server --host 127.0.0.1 --port 5000) or point "
            "MLFLOW_TRACKING_URI at a running one",
        ) from None


def safe_uri(uri: str) -> str:
    """``uri`` without a password, for messages."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def mlflow_errors(action: str) -> Iterator[None]:
    """Turn what MLflow raises while doing ``action`` into polyfuse errors with a hint:
    a missing store driver into `DependencyError`, a lost server or a refused request into
    `TrackingError` (polyfuse's own errors pass through)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except PolyfuseError:
        raise
    except ImportError as exc:
        package = exc.name or "sqlalchemy"
        raise DependencyError(package, f"{action} (MLflow's store)", "mlflow") from None
    except MlflowException as exc:
        text = " ".join(str(exc.message).split())
        if "Max retries exceeded" in text or "Connection refused" in text:
            raise TrackingError(
                f"{action}: the tracking server stopped answering",
                hint="check that the MLflow server is running and MLFLOW_TRACKING_URI is right",
            ) from exc
        raise TrackingError(f"{action}: {text[:300]}") from exc
    except OSError as exc:
        raise TrackingError(f"{action}: {exc}") from exc


def experiment_id_of(client: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when missing."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    return str(client.create_experiment(name))


def find_run(client: MlflowClient, run_id: str) -> Any:
    """The run ``run_id`` on this server, or None when it has none of that id."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def publish_folder(
    client: MlflowClient,
    run_id: str,
    folder: Path,
    path: str = ARTIFACT_PATH,
    *,
    only_missing: bool = False,
) -> list[str]:
    """Upload an artifact folder (without `UNPUBLISHED` folders) to ``path`` of a run.

    Args:
        only_missing: upload only files the run lacks or holds with another size (a model
            card or monitoring profile written after training); the rest stay as logged.

    Returns:
        the relative paths uploaded.
    """
    present = _remote_sizes(client, run_id, path) if only_missing else {}
    uploaded = []
    for file in sorted(folder.rglob("*")):
        rel = file.relative_to(folder)
        if not file.is_file() or rel.parts[0] in UNPUBLISHED:
            continue
        name = rel.as_posix()
        if present.get(name) == file.stat().st_size:
            continue
        parent = rel.parent.as_posix()
        client.log_artifact(run_id, str(file), path if parent == "." else f"{path}/{parent}")
        uploaded.append(name)
    return uploaded


def _remote_sizes(client: MlflowClient, run_id: str, path: str) -> dict[str, int]:
    """Relative path -> size of every file logged under ``path`` of the run."""
    sizes: dict[str, int] = {}
    pending = [path]
    while pending:
        for item in client.list_artifacts(run_id, pending.pop()):
            if item.is_dir:
                pending.append(item.path)
            else:
                sizes[item.path.removeprefix(f"{path}/")] = int(item.file_size or 0)
    return sizes
