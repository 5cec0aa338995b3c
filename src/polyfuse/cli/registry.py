"""``polyfuse register`` and ``polyfuse registry {list,promote,rollback,pull}``: artifact
versions and aliases on the MLflow model registry (`polyfuse.release.registry`)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from polyfuse.cli.common import EXIT_OK

if TYPE_CHECKING:
    from polyfuse.release.registry import ModelRegistry, ModelVersion, Promotion


def register_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``register``."""
    p.add_argument("artifact", help="artifact folder written by 'polyfuse train'")
    p.add_argument("--name", required=True, help="registered model (created on first use)")
    p.add_argument("--alias", metavar="ALIAS", help="point ALIAS at the new version (challenger)")
    p.add_argument(
        "--gate",
        metavar="FILE",
        help='quality-gate result JSON {"passed": ..., "rules": [...]}: tagged gate.passed; '
        "a failed gate blocks promotion without --force",
    )
    p.add_argument(
        "--experiment",
        help="MLflow experiment of a new run when the artifact has no training run on this "
        "server (default: NAME)",
    )
    p.add_argument("--json", action="store_true", help="print the new version as JSON")


def register(args: argparse.Namespace) -> int:
    """Register an artifact folder as a new version of a model on the MLflow model registry
    named by MLFLOW_TRACKING_URI (sqlite:///mlflow.db, http://host:5000, ...), with its
    model card and gate result, in its training run when the folder has one (tracking.json).
    """
    from polyfuse.release.registry import ModelRegistry

    version = ModelRegistry().register(
        args.artifact, args.name, alias=args.alias, gate=args.gate, experiment=args.experiment
    )
    if args.json:
        print(json.dumps(version.to_dict()))
    else:
        aliases = f" ({', '.join(version.aliases)})" if version.aliases else ""
        print(f"registered {args.artifact} as {version.uri}{aliases}")
    return EXIT_OK


def registry_arguments(p: argparse.ArgumentParser) -> None:
    """Subcommands of ``registry``."""
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="registered models, or the versions of one")
    listing.add_argument("name", nargs="?", help="a registered model (default: list the models)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    promote = sub.add_parser(
        "promote", help="move an alias (champion) to a version; the old one is kept as previous-"
    )
    promote.add_argument("name", help="registered model")
    which = promote.add_mutually_exclusive_group(required=True)
    which.add_argument("--version", metavar="N", help="the version to promote")
    which.add_argument("--alias", metavar="ALIAS", help="the version ALIAS points at (challenger)")
    promote.add_argument("--to", default="champion", metavar="ALIAS", help="default: champion")
    promote.add_argument(
        "--force", action="store_true", help="promote a version whose quality gate failed"
    )
    promote.add_argument("--json", action="store_true", help="print JSON")
    rollback = sub.add_parser("rollback", help="point an alias back at previous-ALIAS")
    rollback.add_argument("name", help="registered model")
    rollback.add_argument("--alias", default="champion", help="default: champion")
    rollback.add_argument("--json", action="store_true", help="print JSON")
    pull = sub.add_parser("pull", help="download models:/NAME@ALIAS into the cache, print its path")
    pull.add_argument("uri", help="models:/NAME@ALIAS or models:/NAME/VERSION")


def registry(args: argparse.Namespace) -> int:
    """The MLflow model registry named by MLFLOW_TRACKING_URI: list models and versions,
    promote a version to an alias (champion; the version it held becomes
    previous-champion), roll an alias back, pull a models:/ URI into the local cache.
    """
    from polyfuse.release.registry import ModelRegistry

    reg = ModelRegistry()
    if args.action == "list":
        return _list(reg, args.name, args.json)
    if args.action == "pull":
        print(reg.download(args.uri))
        return EXIT_OK
    if args.action == "promote":
        moved = reg.promote(
            args.name, version=args.version, alias=args.alias, to=args.to, force=args.force
        )
    else:
        moved = reg.rollback(args.name, args.alias)
    print(json.dumps(moved.to_dict()) if args.json else _moved(moved))
    return EXIT_OK


def _list(reg: ModelRegistry, name: str | None, as_json: bool) -> int:
    if name is None:
        models = reg.models()
        if as_json:
            print(json.dumps(models))
            return EXIT_OK
        for model, aliases in sorted(models.items()):
            pairs = ", ".join(f"{a} -> {v}" for a, v in sorted(aliases.items()))
            print(f"{model}  ({pairs})" if pairs else model)
        return EXIT_OK
    versions = reg.versions(name)
    if as_json:
        print(json.dumps([v.to_dict() for v in versions]))
        return EXIT_OK
    print(f"{'version':>7}  {'gate':<6} {'kind':<11} {'created':<17} aliases")
    for v in versions:
        print(_row(v))
    return EXIT_OK


def _row(v: ModelVersion) -> str:
    gate = {True: "passed", False: "FAILED", None: "-"}[v.gate_passed]
    created = v.to_dict()["created"][:16].replace("T", " ")
    kind = v.tags.get("polyfuse.kind", "?")
    return f"{v.version:>7}  {gate:<6} {kind:<11} {created:<17} {', '.join(v.aliases)}"


def _moved(moved: Promotion) -> str:
    before = f" (was version {moved.previous})" if moved.previous else ""
    return f"{moved.name}@{moved.alias} -> version {moved.version}{before}"
