"""The ``polyfuse`` command line: a table of subcommand -> area module.

Each area module (`polyfuse.cli.train`, `polyfuse.cli.serve`, ...) defines, per command,
``<command>_arguments(parser)`` and ``<command>(args) -> int``. Area modules import
nothing heavy at module level, so ``polyfuse --help`` answers instantly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from polyfuse import __version__
from polyfuse.cli.common import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, error_line
from polyfuse.core.errors import PolyfuseError


@dataclass(frozen=True)
class Command:
    """One subcommand: the area module that implements it, its function and its help line."""

    module: str
    function: str
    help: str

    def _get(self, suffix: str = "") -> Callable[..., object]:
        area = importlib.import_module(f"polyfuse.cli.{self.module}")
        return cast(Callable[..., object], getattr(area, self.function + suffix))

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the command's arguments on its subparser."""
        self._get("_arguments")(parser)

    def run(self, args: argparse.Namespace) -> int:
        """Run the command; returns the exit status."""
        return cast(int, self._get()(args))


COMMANDS: dict[str, Command] = {
    "validate": Command("data", "validate", "check a manifest before training"),
    "train": Command("train", "train", "train a model from a YAML config"),
    "predict": Command("predict", "predict", "predict a manifest with a trained artifact"),
    "embed": Command(
        "batch", "embed", "per-row embeddings of a manifest as Parquet parts (optionally on Ray)"
    ),
    "evaluate": Command("evaluate", "evaluate", "evaluate an artifact on a labelled manifest"),
    "info": Command("info", "info", "describe an artifact"),
    "export": Command(
        "export", "export", "export an artifact as ONNX graphs, fp32 or int8 (--quantize int8)"
    ),
    "card": Command(
        "card", "card", "print an artifact's model card, or re-evaluate and rewrite it"
    ),
    "gate": Command("gate", "gate", "check release rules on an artifact (exit 0 pass, 1 fail)"),
    "list": Command("info", "list_components", "list modality kinds, encoders and fusions"),
    "index": Command(
        "retrieval", "index", "embed a manifest into a vector index (alignment artifacts)"
    ),
    "search": Command("retrieval", "search", "search a vector index by text or image"),
    "caption": Command("retrieval", "caption", "caption images with a captioning artifact"),
    "monitor": Command(
        "monitor",
        "monitor",
        "check data for drift per modality and estimate accuracy without labels",
    ),
    "scan": Command("guard", "scan", "scan files for PII, prompt injection and hidden text"),
    "schema": Command(
        "schema", "schema", "print the JSON Schema of config, serve, policy, ray, slo or gate"
    ),
    "demo": Command("demo", "demo", "run the whole flow on data that ships with the install"),
    "serve": Command(
        "serve", "serve", "serve an artifact over HTTP (REST and Open Inference Protocol v2)"
    ),
    "feedback": Command(
        "feedback", "feedback", "export human reviewers' labels as a training manifest"
    ),
    "canary": Command(
        "canary", "canary", "a running service's versions; promote, roll back or weigh its canary"
    ),
    "ops": Command("ops", "ops", "write Prometheus rules (from slo.yaml) and Grafana dashboards"),
    "register": Command(
        "registry", "register", "register an artifact as a model version on MLflow"
    ),
    "registry": Command(
        "registry", "registry", "list, promote, roll back and pull models on the MLflow registry"
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="polyfuse",
        description="Multimodal models for text, image, audio and time series: "
        "validate data, train, predict, evaluate.",
        epilog="Run 'polyfuse COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"polyfuse {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    for name, command in COMMANDS.items():
        description = command._get().__doc__
        p = sub.add_parser(name, help=command.help, description=description, parents=[common])
        command.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``polyfuse`` command."""
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    try:
        status = COMMANDS[args.command].run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at exit
        return status
    except PolyfuseError as exc:
        print(error_line(exc), file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout went to a reader that stopped early (`polyfuse schema serve | head`): end
        # quietly like other Unix tools; point stdout at devnull so the exit flush is silent.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


__all__ = ["COMMANDS", "EXIT_ERROR", "EXIT_FINDINGS", "EXIT_OK", "Command", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
