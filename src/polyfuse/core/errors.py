"""One exception hierarchy for everything a user can get wrong.

Every error says what was wrong, where (modality, field, file, row) and how to
fix it. Library code raises these instead of ``assert`` (stripped by ``python -O``)
or bare ``ValueError``.
"""

from __future__ import annotations

from pathlib import Path


class PolyfuseError(Exception):
    """Base class of every error polyfuse raises on purpose.

    Args:
        message: what went wrong.
        hint: how to fix it; appended to the message.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message}\n  hint: {hint}")


class ConfigError(PolyfuseError):
    """A configuration value is missing, unknown or inconsistent.

    Args:
        key: dotted path of the offending key (``train.lr``).
    """

    def __init__(self, key: str, message: str, *, hint: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}", hint=hint)


class RegistryError(ConfigError):
    """A component name is not in its registry."""


class InvalidInputError(PolyfuseError):
    """One input (a file, a string, an array) failed loading or validation.

    Args:
        modality: modality name (``image``, ``audio`` ...).
        reason: what is wrong with it.
        field: manifest key or request field the value came from.
        path: file the value came from, if any.
    """

    def __init__(
        self,
        modality: str,
        reason: str,
        *,
        field: str | None = None,
        path: str | Path | None = None,
        hint: str | None = None,
    ) -> None:
        self.modality = modality
        self.field = field if field is not None else modality
        self.path = None if path is None else str(path)
        self.reason = reason
        where = f"modality '{modality}'"
        if self.field != modality:
            where += f", field '{self.field}'"
        if self.path is not None:
            where += f", file '{self.path}'"
        super().__init__(f"invalid input ({where}): {reason}", hint=hint)


class ManifestError(PolyfuseError):
    """A manifest file cannot be read, or one of its rows is malformed."""

    def __init__(
        self, path: str | Path, message: str, *, row: int | None = None, hint: str | None = None
    ) -> None:
        self.path = str(path)
        self.row = row
        where = self.path if row is None else f"{self.path}, row {row}"
        super().__init__(f"{where}: {message}", hint=hint)


class ContractError(PolyfuseError):
    """A saved modality contract does not match what this polyfuse provides."""


class ArtifactError(PolyfuseError):
    """A model artifact is missing files, corrupt or from an incompatible version."""


class DependencyError(PolyfuseError):
    """An optional dependency needed for the requested feature is not installed."""

    def __init__(self, package: str, feature: str, extra: str) -> None:
        self.package = package
        super().__init__(
            f"{feature} needs the '{package}' package, which is not installed",
            hint=f"pip install 'polyfuse[{extra}]'",
        )


class TrainingError(PolyfuseError):
    """Training cannot go on (no valid rows, diverged loss, ...)."""


class TrackingError(PolyfuseError):
    """The experiment tracking server (MLflow) cannot be reached or refused a request."""


class ModelRegistryError(PolyfuseError):
    """A registered model, version or alias does not exist, or a registry action is refused."""


class ExportError(PolyfuseError):
    """A model part cannot be exported, or its exported graph does not compute what the
    model computes (``polyfuse export``).

    Args:
        graph: the graph at fault (``encoder-image``, ``fusion``, ``head-audio``).
    """

    def __init__(self, graph: str, message: str, *, hint: str | None = None) -> None:
        self.graph = graph
        super().__init__(f"{graph}: {message}", hint=hint)
