"""Where a served version comes from (a folder or a ``models:/`` URI on the MLflow
registry) and its name: the registry version (``digits-v3``) or the folder's name, plus a
short digest of its weights (``digits-v3-3f2a9c1b``), so two builds never share a name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Registered:
    """A version's place on the model registry.

    Attributes:
        model: the registered model's name.
        version: its version number.
        alias: the alias the version was named by (``models:/NAME@ALIAS``), if any.
    """

    model: str
    version: str
    alias: str | None = None


@dataclass(frozen=True)
class VersionSource:
    """One version to serve.

    Attributes:
        given: what the operator wrote (folder or ``models:/`` URI).
        folder: the artifact folder (a verified cached copy for a URI).
        registered: its registry entry, for a URI.
    """

    given: str
    folder: Path
    registered: Registered | None = None

    @classmethod
    def resolve(cls, value: str) -> VersionSource:
        """A folder as given, or a ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` URI
        downloaded from the registry (``MLFLOW_TRACKING_URI``) and verified."""
        from polyfuse.release.registry import ModelRef, ModelRegistry, is_model_uri

        if not is_model_uri(value):
            return cls(value, Path(value))
        registry = ModelRegistry()
        ref = ModelRef.parse(value)
        found = registry.get(ref)
        folder = registry.download(value)
        return cls(value, folder, Registered(found.name, found.version, ref.alias))

    def name(self, info: Mapping[str, Any]) -> str:
        """``BASE-DIGEST``: the registry's ``MODEL-vN`` or the folder's name, and the
        first 8 hex digits of the weights' digest in the artifact's ``info``
        (``artifact.json``)."""
        base = (
            f"{self.registered.model}-v{self.registered.version}"
            if self.registered is not None
            else self.folder.resolve().name
        )
        files = info.get("files", {})
        digest = str(files.get("model.safetensors", ""))[:8]
        return f"{base}-{digest}" if digest else base
