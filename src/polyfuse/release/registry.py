"""The model registry on MLflow: artifact versions, aliases, and ``models:/`` URIs.

A registered model is a name; each `register` adds a version whose source is an artifact
folder logged to an MLflow run (the training run when the folder's ``tracking.json`` names
one on this server, else a new run), tagged with what polyfuse knows about it: kind, task,
modalities, format version, the lineage digest and, with a gate result, ``gate.passed``.
A model card in the folder travels with it (``card.md`` becomes the version's description).

Aliases name the versions that matter: ``champion`` (what serves), ``challenger`` (what
is being evaluated). `promote` moves an alias and keeps the version it held under
``previous-<alias>``, so `rollback` is one call (and a second rollback undoes the first).
``models:/NAME@ALIAS`` and ``models:/NAME/VERSION`` resolve to a verified local copy in
the cache (``$POLYFUSE_CACHE/registry``, default ``~/.cache/polyfuse/registry``), which
``polyfuse serve``, ``predict``, ``evaluate`` and ``info`` accept in place of a folder.

The tracking server is MLflow's own ``MLFLOW_TRACKING_URI`` (``sqlite:///mlflow.db``, a
server ``http://host:5000``, ...). mlflow is imported on first use.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyfuse.artifacts.format import read_info
from polyfuse.core.errors import ArtifactError, ModelRegistryError
from polyfuse.encoders.cache import default_cache_dir
from polyfuse.release.tracking import (
    ARTIFACT_PATH,
    TrackingRecord,
    artifact_tags,
    experiment_id_of,
    find_run,
    mlflow_client,
    mlflow_errors,
    publish_folder,
    safe_uri,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion as MlflowVersion

#: The alias of the version that serves.
CHAMPION = "champion"
#: The alias a newly registered candidate usually gets.
CHALLENGER = "challenger"
URI_PREFIX = "models:/"
_MAX_DESCRIPTION = 5000  # MLflow's SQL stores keep 5000 characters of a description

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[^/@]+))$")
_ALIAS = re.compile(r"^[A-Za-z0-9_][\w\-]*$")
_VERSION_LIKE = re.compile(r"^[vV]\d+$")


def previous_alias(alias: str) -> str:
    """The alias that keeps the version ``alias`` held before a promotion."""
    return f"previous-{alias}"


def is_model_uri(value: str) -> bool:
    """Whether ``value`` names a registered model (``models:/...``) rather than a folder."""
    return value.startswith(URI_PREFIX)


@dataclass(frozen=True)
class ModelRef:
    """A registered model's version, by number or by alias (``models:/NAME@ALIAS``,
    ``models:/NAME/VERSION``)."""

    name: str
    version: str | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, uri: str) -> ModelRef:
        """Parse a ``models:/`` URI; a malformed one is a `ModelRegistryError`."""
        match = _URI.match(uri.strip())
        if match is None:
            raise ModelRegistryError(
                f"'{uri}' is not a model URI",
                hint="write models:/NAME@ALIAS (models:/fraud@champion) or models:/NAME/VERSION",
            )
        version = match["version"]
        if version is not None and not version.isdigit():
            raise ModelRegistryError(
                f"'{uri}': version '{version}' is not a number",
                hint=f"write models:/{match['name']}/3, or an alias as models:/NAME@{version}",
            )
        return cls(match["name"], version, match["alias"])

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{URI_PREFIX}{self.name}@{self.alias}"
        return f"{URI_PREFIX}{self.name}/{self.version}"


@dataclass(frozen=True)
class ModelVersion:
    """One registered version.

    Attributes:
        name: the registered model.
        version: its version number (as text, as MLflow gives it).
        aliases: the aliases pointing at it.
        tags: its tags (``polyfuse.kind``, ``gate.passed``, ...).
        run_id: the MLflow run holding the artifact.
        source: where the artifact lives (``runs:/RUN/artifact``).
        created: creation time, milliseconds since the epoch.
        description: the version's description (the model card's Markdown, if any).
    """

    name: str
    version: str
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    run_id: str | None = None
    source: str = ""
    created: int = 0
    description: str = ""

    @property
    def uri(self) -> str:
        """``models:/NAME/VERSION``."""
        return str(ModelRef(self.name, version=self.version))

    @property
    def gate_passed(self) -> bool | None:
        """The registered quality-gate result (None: registered without one)."""
        return {"true": True, "false": False}.get(self.tags.get("gate.passed", ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``--json``)."""
        return {
            "name": self.name,
            "version": self.version,
            "uri": self.uri,
            "aliases": list(self.aliases),
            "tags": dict(self.tags),
            "run_id": self.run_id,
            "source": self.source,
            "created": dt.datetime.fromtimestamp(self.created / 1000, dt.UTC).isoformat(),
        }


@dataclass(frozen=True)
class Promotion:
    """An alias move: ``alias`` of ``name`` now points at ``version``; it held ``previous``."""

    name: str
    alias: str
    version: str
    previous: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``--json``)."""
        return {
            "name": self.name,
            "alias": self.alias,
            "version": self.version,
            "previous": self.previous,
        }


class ModelRegistry:
    """Registered polyfuse artifacts on an MLflow tracking server.

    The constructor is cheap; the first call connects (an unreachable server is a
    `TrackingError`, a missing mlflow a `DependencyError` with the install hint).

    Args:
        tracking_uri: the server (default: MLflow's ``MLFLOW_TRACKING_URI`` or its default).
        cache_dir: where `download` keeps local copies (default ``$POLYFUSE_CACHE/registry``
            or ``~/.cache/polyfuse/registry``).
    """

    def __init__(self, tracking_uri: str | None = None, cache_dir: str | Path | None = None):
        self._uri = tracking_uri
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir() / "registry"
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        """The MLflow client (connects on first use)."""
        if self._client is None:
            self._client, self._uri = mlflow_client(self._uri)
        return self._client

    @property
    def tracking_uri(self) -> str:
        """The tracking server's URI."""
        self.client  # noqa: B018 (resolves MLflow's default URI)
        return str(self._uri)

    # ------------------------------------------------------------------ register
    def register(
        self,
        folder: str | Path,
        name: str,
        *,
        alias: str | None = None,
        gate: str | Path | None = None,
        experiment: str | None = None,
    ) -> ModelVersion:
        """Register an artifact folder as a new version of ``name``.

        Args:
            folder: a verified artifact folder (any kind).
            name: the registered model (created on first use).
            alias: point this alias (``challenger``) at the new version.
            gate: a quality-gate result JSON (``{"passed": bool, "rules": [...]}``): tagged
                ``gate.passed`` on the version and logged to the run as
                ``gate/version-N.json``; `promote` refuses a failed one unless forced.
            experiment: experiment of a new run when the folder has no training run on this
                server (default: ``name``).
        """
        check_model_name(name)
        if alias is not None:
            check_alias(alias)
        path = Path(folder)
        info = read_info(path)
        result = read_gate(Path(gate)) if gate is not None else None
        client = self.client
        with mlflow_errors(f"registering {path} as '{name}'"):
            run_id = self._run_for(path, experiment or name)
            self._ensure_model(name)
            created = client.create_model_version(
                name,
                f"runs:/{run_id}/{ARTIFACT_PATH}",
                run_id=run_id,
                tags=version_tags(path, info, result),
                description=card_description(path),
            )
            version = str(created.version)
            if result is not None:
                where = f"gate/version-{version}.json"
                client.log_dict(run_id, result, where)
                client.set_model_version_tag(name, version, "gate.file", where)
            if alias is not None:
                client.set_registered_model_alias(name, alias, version)
        return self.get(ModelRef(name, version=version))

    def _run_for(self, folder: Path, experiment: str) -> str:
        """The folder's finished training run on this server, with any file it lacks
        uploaded (a card written after training); else a new run holding the folder."""
        client = self.client
        record = TrackingRecord.load(folder)
        run = find_run(client, record.run_id) if record is not None else None
        if record is not None and run is not None and run.info.status == "FINISHED":
            publish_folder(client, record.run_id, folder, only_missing=True)
            return record.run_id
        tags = {"polyfuse.registered_from": str(folder.resolve()), **artifact_tags(folder)}
        created = client.create_run(
            experiment_id_of(client, experiment), run_name=f"register {folder.name}", tags=tags
        )
        run_id = str(created.info.run_id)
        publish_folder(client, run_id, folder)
        client.set_terminated(run_id, "FINISHED")
        return run_id

    def _ensure_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException as exc:
            if not _not_found(exc):
                raise
            self.client.create_registered_model(name, tags={"polyfuse": "true"})

    # ------------------------------------------------------------------ look up
    def get(self, ref: ModelRef | str) -> ModelVersion:
        """The version ``ref`` names (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``)."""
        from mlflow.exceptions import MlflowException

        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        aliases = self._aliases(ref.name)  # an unknown model fails here, naming the known ones
        version = aliases.get(ref.alias) if ref.alias is not None else ref.version
        if version is None:
            raise self._missing(ref)
        with mlflow_errors(f"looking up {ref}"):
            try:
                found = self.client.get_model_version(ref.name, str(version))
            except MlflowException as exc:
                if not _not_found(exc):
                    raise
                raise self._missing(ref) from None
        return self._version(found, aliases)

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, newest first, with its aliases and tags."""
        check_model_name(name)  # no quote can end the filter's string
        aliases = self._aliases(name)
        with mlflow_errors(f"listing the versions of '{name}'"):
            found = self.client.search_model_versions(f"name = '{name}'")
        out = [self._version(v, aliases) for v in found]
        return sorted(out, key=lambda v: int(v.version), reverse=True)

    def models(self) -> dict[str, dict[str, str]]:
        """Registered model name -> its aliases (alias -> version)."""
        with mlflow_errors("listing registered models"):
            found = self.client.search_registered_models()
        return {m.name: {a: str(v) for a, v in m.aliases.items()} for m in found}

    def _aliases(self, name: str) -> dict[str, str]:
        """Alias -> version of a registered model; an unknown model is an error naming the
        known ones."""
        from mlflow.exceptions import MlflowException

        with mlflow_errors(f"looking up '{name}'"):
            try:
                model = self.client.get_registered_model(name)
            except MlflowException as exc:
                if not _not_found(exc):
                    raise
                raise self._unknown_model(name) from None
        return {a: str(v) for a, v in model.aliases.items()}

    def _version(self, found: MlflowVersion, aliases: Mapping[str, str]) -> ModelVersion:
        version = str(found.version)
        return ModelVersion(
            name=str(found.name),
            version=version,
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
            tags=dict(found.tags or {}),
            run_id=found.run_id,
            source=str(found.source or ""),
            created=int(found.creation_timestamp or 0),
            description=str(found.description or ""),
        )

    def _missing(self, ref: ModelRef) -> ModelRegistryError:
        """Why ``ref`` does not resolve: an unknown model, alias or version."""
        aliases = self._aliases(ref.name)  # raises for an unknown model
        if ref.alias is not None:
            known = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items())) or "none"
            return ModelRegistryError(
                f"registered model '{ref.name}' has no alias '{ref.alias}' (aliases: {known})",
                hint=f"polyfuse registry promote {ref.name} --version N --to {ref.alias}",
            )
        numbers = [v.version for v in self.versions(ref.name)]
        return ModelRegistryError(
            f"registered model '{ref.name}' has no version {ref.version} "
            f"(versions: {', '.join(reversed(numbers)) or 'none'})",
            hint=f"polyfuse registry list {ref.name} shows them",
        )

    def _unknown_model(self, name: str) -> ModelRegistryError:
        try:
            known = sorted(self.models())
        except ModelRegistryError:
            known = []
        close = difflib.get_close_matches(name, known, n=1)
        where = safe_uri(str(self._uri))
        return ModelRegistryError(
            f"no registered model '{name}' on {where}"
            + (f" (registered: {', '.join(known[:10])})" if known else ""),
            hint=f"did you mean '{close[0]}'?"
            if close
            else "register one with polyfuse register ARTIFACT --name NAME, or check "
            "MLFLOW_TRACKING_URI",
        )

    # ------------------------------------------------------------------ aliases
    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point ``alias`` of ``name`` at ``version`` (which must exist)."""
        check_alias(alias)
        self.get(ModelRef(name, version=str(version)))
        with mlflow_errors(f"setting alias '{alias}' of '{name}'"):
            self.client.set_registered_model_alias(name, alias, str(version))

    def promote(
        self,
        name: str,
        *,
        version: str | None = None,
        alias: str | None = None,
        to: str = CHAMPION,
        force: bool = False,
    ) -> Promotion:
        """Move alias ``to`` to a version (given by number or by another alias, such as
        ``challenger``); the version it held becomes ``previous-<to>``.

        A version registered with a failed quality gate is refused unless ``force``.
        """
        if (version is None) == (alias is None):
            raise ModelRegistryError(
                "promote needs exactly one of a version and an alias",
                hint="--version 3 or --alias challenger",
            )
        check_alias(to)
        target = self.get(ModelRef(name, str(version) if version else None, alias))
        if target.gate_passed is False and not force:
            raise ModelRegistryError(
                f"version {target.version} of '{name}' failed its quality gate "
                f"({target.tags.get('gate.file', 'gate.passed=false')})",
                hint="fix the model and register it again, or pass --force to promote anyway",
            )
        current = self._aliases(name).get(to)
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with mlflow_errors(f"promoting version {target.version} of '{name}' to {to}"):
            if current is not None and current != target.version:
                self.client.set_registered_model_alias(name, previous_alias(to), current)
            self.client.set_registered_model_alias(name, to, target.version)
            self.client.set_model_version_tag(
                name, target.version, f"polyfuse.promoted.{to}", stamp
            )
        return Promotion(name, to, target.version, current)

    def rollback(self, name: str, alias: str = CHAMPION) -> Promotion:
        """Point ``alias`` back at ``previous-<alias>``, which takes the version it held
        (so a second rollback undoes the first)."""
        aliases = self._aliases(name)
        before = aliases.get(previous_alias(alias))
        if before is None:
            raise ModelRegistryError(
                f"registered model '{name}' has no '{previous_alias(alias)}' alias to roll back to",
                hint=f"a promotion sets it: polyfuse registry promote {name} --version N "
                f"--to {alias}",
            )
        current = aliases.get(alias)
        with mlflow_errors(f"rolling back {alias} of '{name}'"):
            self.client.set_registered_model_alias(name, alias, before)
            if current is not None and current != before:
                self.client.set_registered_model_alias(name, previous_alias(alias), current)
        return Promotion(name, alias, before, current)

    # ------------------------------------------------------------------ download
    def download(self, ref: ModelRef | str) -> Path:
        """A verified local copy of the artifact ``ref`` names, downloaded into the cache
        once per version (an alias resolves to its version first)."""
        found = self.get(ref)
        name = _segment(found.name)
        target = self.cache_dir / _uri_key(self.tracking_uri) / name / _segment(found.version)
        if _verified(target):
            return target
        partial = target.with_name(f".{found.version}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            local = self._fetch(found, partial)
            try:
                read_info(local)
            except ArtifactError as exc:
                raise ArtifactError(
                    f"{found.uri} does not hold a usable polyfuse artifact: {exc.message}",
                    hint="register artifact folders with polyfuse register",
                ) from None
            if not _verified(target):  # another process may have finished the same download
                shutil.rmtree(target, ignore_errors=True)
                _move(local, target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return target

    def _fetch(self, found: ModelVersion, into: Path) -> Path:
        """Download the version's files into ``into``; returns the folder holding them."""
        import mlflow

        run_source = f"runs:/{found.run_id}/"
        with mlflow_errors(f"downloading {found.uri}"):
            if found.run_id and found.source.startswith(run_source):
                path = found.source.removeprefix(run_source)
                local = self.client.download_artifacts(found.run_id, path, str(into))
            else:
                uri = self.client.get_model_version_download_uri(found.name, found.version)
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=uri, dst_path=str(into), tracking_uri=self.tracking_uri
                )
        return Path(local)


# ---------------------------------------------------------------------- helpers
def check_model_name(name: str) -> None:
    """Refuse a registered-model name that a ``models:/`` URI could not address."""
    if not name.strip() or any(c in name for c in "/@'\"") or name != name.strip():
        raise ModelRegistryError(
            f"'{name}' cannot name a registered model",
            hint="use letters, digits, '-', '_' and '.' (no '/', '@' or quotes)",
        )


def check_alias(alias: str) -> None:
    """Refuse an alias MLflow would refuse (or read as a version: ``v3``, ``latest``)."""
    if not _ALIAS.match(alias) or _VERSION_LIKE.match(alias) or alias.lower() == "latest":
        raise ModelRegistryError(
            f"'{alias}' cannot be an alias",
            hint="use letters, digits, '-' and '_' (not 'latest' or v<N>), e.g. challenger",
        )


def read_gate(path: Path) -> dict[str, Any]:
    """A quality-gate result: JSON with a boolean ``passed`` (and usually ``rules``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelRegistryError(f"gate result {path} not found") from None
    except (OSError, ValueError) as exc:
        raise ModelRegistryError(f"gate result {path} is not readable JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("passed"), bool):
        raise ModelRegistryError(
            f"gate result {path} has no boolean 'passed'",
            hint='a gate result is JSON {"passed": true|false, "rules": [...]}',
        )
    return data


def version_tags(
    folder: Path, info: Mapping[str, Any], gate: Mapping[str, Any] | None
) -> dict[str, str]:
    """Tags of a new version: kind, task, modalities, format version, the polyfuse that
    wrote it, the lineage and content digests, the card, the gate result."""
    tags = artifact_tags(folder)
    tags["polyfuse.format"] = str(info.get("format", ""))
    tags["polyfuse.version"] = str(info.get("versions", {}).get("polyfuse", ""))
    tags["polyfuse.lineage"] = lineage_digest(info)
    tags["polyfuse.files"] = _digest(info.get("files", {}))
    if (folder / "card.json").is_file():
        tags["polyfuse.card"] = "card.json"
    if gate is not None:
        tags["gate.passed"] = "true" if gate["passed"] else "false"
    return tags


def lineage_digest(info: Mapping[str, Any]) -> str:
    """sha256 over the training manifests' digests and row counts (not their paths): the
    same data gives the same digest on any machine."""
    lineage = info.get("lineage", {})
    data = {split: [e.get("sha256"), e.get("rows")] for split, e in sorted(lineage.items())}
    return _digest(data)


def card_description(folder: Path) -> str | None:
    """The model card's Markdown (``card.md``) as the version's description, if present."""
    card = folder / "card.md"
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8")
    if len(text) <= _MAX_DESCRIPTION:
        return text
    note = "\n\n(truncated: the full card is card.md in the artifact)"
    return text[: _MAX_DESCRIPTION - len(note)] + note


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _uri_key(uri: str) -> str:
    """A short folder name per tracking server, so two servers' ``fraud/3`` never mix."""
    return hashlib.sha256(uri.encode()).hexdigest()[:16]


def _segment(text: str) -> str:
    """``text`` as one safe folder name (a registered name may hold any character)."""
    safe = re.sub(r"[^\w.\-]", "_", text)
    return "_" if safe in ("", ".", "..") else safe


def _move(local: Path, target: Path) -> None:
    """Rename the downloaded folder into place; losing a race to a verified copy is fine."""
    try:
        local.rename(target)
    except OSError:
        if not _verified(target):
            raise


def _verified(folder: Path) -> bool:
    if not (folder / "artifact.json").is_file():
        return False
    try:
        read_info(folder)
    except ArtifactError:
        return False
    return True


def _not_found(exc: Any) -> bool:
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"
