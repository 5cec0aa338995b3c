"""``polyfuse info`` and ``polyfuse list``: what an artifact holds, what the registries offer."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from polyfuse.cli.common import ARTIFACT_HELP, EXIT_OK, resolve_artifact


def info_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``info``."""
    p.add_argument("artifact", help=ARTIFACT_HELP)


def info(args: argparse.Namespace) -> int:
    """Describe an artifact of any registered kind (kind-specific details where known)."""
    from polyfuse.artifacts.kinds import kind_of

    path = resolve_artifact(args.artifact)
    kind = kind_of(path)
    print(json.dumps(DESCRIBERS.get(kind.name, _describe_any)(path), indent=2))
    return EXIT_OK


def _describe_any(path: str) -> dict[str, Any]:
    """Any kind: its verified ``artifact.json``."""
    from polyfuse.artifacts.format import read_info

    return {"path": path, **read_info(path)}


def _describe_classifier(path: str) -> dict[str, Any]:
    """A classifier: task, labels, modalities, contracts, versions, metrics."""
    from polyfuse.artifacts.classifier import load_artifact

    art = load_artifact(path)
    return {
        "path": str(art.path),
        "task": art.task.name,
        "labels": list(art.task.labels),
        "contracts": {m: c.to_dict() for m, c in art.contracts.items()},
        "fusion": art.config.model.fusion.name,
        **art.info,
        "metrics": {k: v for k, v in art.metrics.items() if k != "val"},
        "val": {k: v for k, v in art.metrics.get("val", {}).items() if isinstance(v, int | float)},
    }


#: artifact kind -> a richer description than ``artifact.json`` alone.
DESCRIBERS: dict[str, Callable[[str], dict[str, Any]]] = {
    "classifier": _describe_classifier,
    "onnx": _describe_classifier,  # an export loads as the classifier it came from
}


def list_components_arguments(p: argparse.ArgumentParser) -> None:
    """``list`` takes no arguments."""


def list_components(args: argparse.Namespace) -> int:
    """List registered modality kinds, encoders and fusions."""
    from polyfuse.encoders import ENCODERS, encoder_class
    from polyfuse.fusion import FUSIONS
    from polyfuse.modalities import CONTRACTS

    print("modality kinds:", ", ".join(CONTRACTS.list()))
    print("encoders:")
    for name in ENCODERS.list():
        cls = encoder_class(name)
        frozen = " (pretrained, frozen)" if cls.pretrained else ""
        print(f"  {name:<18} {cls.kind:<11}{frozen}")
    print("fusions:", ", ".join(FUSIONS.list()))
    return EXIT_OK
