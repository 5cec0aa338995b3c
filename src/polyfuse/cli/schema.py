"""``polyfuse schema``: the JSON Schema of a config file, for editor completion."""

from __future__ import annotations

import argparse
import importlib
import json

from polyfuse.cli.common import EXIT_OK

#: Config file kind -> (module, class) of the model that validates it.
SCHEMAS: dict[str, tuple[str, str]] = {
    "config": ("polyfuse.core.config", "Config"),
    "serve": ("polyfuse.serve.config", "ServeConfig"),
    "policy": ("polyfuse.guard.policy", "PolicyFile"),
    "ray": ("polyfuse.serve.runtime.ray", "RayConfig"),
    "slo": ("polyfuse.ops.slo", "SloFile"),
    "gate": ("polyfuse.release.gate", "GateFile"),
}


def schema_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``schema``."""
    p.add_argument(
        "kind",
        choices=sorted(SCHEMAS),
        help="config: training config; serve: serve --config; policy: firewall policy; "
        "ray: serve --ray-config; slo: ops --slo; gate: gate --rules",
    )


def schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of a config file kind (point an editor's YAML language server
    at it: ``# yaml-language-server: $schema=config.schema.json``)."""
    from polyfuse.core.config import json_schema

    module, name = SCHEMAS[args.kind]
    model = getattr(importlib.import_module(module), name)
    print(json.dumps(json_schema(model), indent=2, sort_keys=True))
    return EXIT_OK
