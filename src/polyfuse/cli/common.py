"""What every command shares: exit codes, config loading with --set, metric rendering."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
log = logging.getLogger("polyfuse")


def error_line(exc: BaseException) -> str:
    """One stderr line for a user error: ``error: WHAT (hint: HOW)``, never a traceback."""
    from polyfuse.core.errors import PolyfuseError

    if isinstance(exc, PolyfuseError):
        text = " ".join(str(exc.args[0] if exc.args else exc).split("\n  hint:")[0].split())
        return f"error: {text}" + (f" (hint: {exc.hint})" if exc.hint else "")
    return "error: " + " ".join(str(exc).split())


def check_positive(flag: str, value: int) -> None:
    """`ConfigError` naming ``flag`` unless ``value >= 1`` (checked before any work)."""
    from polyfuse.core.errors import ConfigError

    if value < 1:
        raise ConfigError(flag, f"must be at least 1, got {value}", hint=f"pass {flag} 1 or more")


def check_output_file(flag: str, value: str | None) -> None:
    """`ConfigError` naming ``flag`` when ``value`` is an existing directory (checked before
    any work, so a long run does not end in a failed write)."""
    from polyfuse.core.errors import ConfigError

    if value is not None and Path(value).is_dir():
        raise ConfigError(
            flag, f"'{value}' is a directory", hint=f"give a file name, e.g. {value}/out.jsonl"
        )


def severities(value: str) -> tuple[int, ...]:
    """argparse type: comma-separated corruption severities 1..5."""
    try:
        levels = tuple(int(x) for x in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,3,5, got '{value}'") from None
    if not levels or any(not 1 <= s <= 5 for s in levels):
        raise argparse.ArgumentTypeError(f"severities are 1..5, got '{value}'")
    return levels


def modality_list(value: str | None) -> list[str] | None:
    """argparse type: comma-separated names (modalities or metadata columns)."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--modalities needs at least one name")
    return names


def load_config(path: str, overrides: Sequence[str]) -> dict[str, Any]:
    """YAML config with ``--set a.b=value`` overrides applied (values parsed as YAML)."""
    import yaml

    from polyfuse.core.errors import ConfigError

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(path, "config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"not valid YAML: {exc}") from exc
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item}", "expected KEY=VALUE, e.g. --set train.lr=0.001")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(key, f"'{part}' is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return cast(dict[str, Any], data)


def render_metrics(metrics: dict[str, Any], modalities: Sequence[str]) -> str:
    """Text table of evaluation metrics (and the confusion matrix when there is one)."""
    lines = [f"modalities: {', '.join(modalities)}", f"n: {metrics['n']}"]
    for key in ("accuracy", "macro_f1", "micro_f1", "log_loss", "mae", "rmse", "r2"):
        if key in metrics:
            lines.append(f"{key}: {metrics[key]:.4f}")
    if "confusion_matrix" in metrics:
        labels = [str(x) for x in metrics["labels"]]
        width = max(5, *(len(x) for x in labels))
        lines.append("confusion matrix (rows: true, columns: predicted)")
        lines.append(" " * width + " " + " ".join(f"{x:>{width}}" for x in labels))
        for label, row in zip(labels, metrics["confusion_matrix"], strict=True):
            lines.append(f"{label:>{width}} " + " ".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def report_bad(bad: Sequence[Any]) -> None:
    """Print the first bad rows (`BadRow`s or their report lines) to stderr."""
    if bad:
        print(f"{len(bad)} bad rows skipped:", file=sys.stderr)
        for b in bad[:10]:
            print(f"  {b if isinstance(b, str) else b.describe()}", file=sys.stderr)
        if len(bad) > 10:
            print(f"  ... and {len(bad) - 10} more", file=sys.stderr)


#: Help of an artifact argument: a folder, or a registered model's version.
ARTIFACT_HELP = "artifact folder written by 'polyfuse train', or models:/NAME@ALIAS"


def resolve_artifact(value: str) -> str:
    """An artifact argument as a folder: a folder as given; a ``models:/NAME@ALIAS`` or
    ``models:/NAME/VERSION`` URI downloaded from the MLflow model registry
    (``MLFLOW_TRACKING_URI``) into the local cache, verified, and its folder returned."""
    if not value.startswith("models:/"):
        return value
    from polyfuse.release.registry import ModelRegistry

    folder = ModelRegistry().download(value)
    log.info("%s resolved to %s", value, folder)
    return str(folder)


def artifact_data_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments `predict` and `evaluate` share: artifact, manifest, modalities, device."""
    p.add_argument("artifact", help=ARTIFACT_HELP)
    p.add_argument("--data", required=True, metavar="MANIFEST", help="manifest to run on")
    p.add_argument(
        "--modalities",
        type=modality_list,
        metavar="A,B",
        help="feed only these modalities; the rest count as missing",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
