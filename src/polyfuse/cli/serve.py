"""``polyfuse serve``: an artifact over HTTP (REST and the Open Inference Protocol v2)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from polyfuse.cli.common import ARTIFACT_HELP, EXIT_OK, log, resolve_artifact

if TYPE_CHECKING:
    from polyfuse.serve.config import ServeConfig
    from polyfuse.serve.types import Runtime
    from polyfuse.serve.versions.sources import VersionSource


def serve_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of serve (unset flags leave --config's values)."""
    p.add_argument("artifact", help=ARTIFACT_HELP)
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--policy", metavar="FILE", help="firewall policy YAML (default: no firewall)")
    p.add_argument(
        "--index",
        metavar="DIR",
        help="vector index written by 'polyfuse index': enables /v1/search",
    )
    p.add_argument(
        "--align",
        metavar="DIR",
        help="alignment artifact (or models:/NAME@ALIAS): enables /v1/consistency (default "
        "with --index: the artifact the index was built with)",
    )
    p.add_argument(
        "--caption",
        metavar="DIR",
        help="captioning artifact (or models:/NAME@ALIAS): enables /v1/caption",
    )
    p.add_argument(
        "--api-keys",
        metavar="FILE",
        help="API keys, one a line (or sha256:HEX); adds to POLYFUSE_API_KEYS",
    )
    p.add_argument(
        "--admin-keys",
        metavar="FILE",
        help="keys that may promote, roll back and weigh the canary (POST /v1/versions/...); "
        "they are API keys too",
    )
    p.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback address without API keys"
    )
    p.add_argument(
        "--canary",
        metavar="CANDIDATE",
        help="a second version (folder or models:/ URI) answering --canary-weight of the "
        "callers, rolled back automatically when worse (docs/serving.md)",
    )
    p.add_argument(
        "--canary-weight",
        type=float,
        metavar="W",
        help="the canary's share of callers, 0..1 (default 0.05; sticky per API key or "
        "X-Polyfuse-Route header)",
    )
    p.add_argument(
        "--shadow",
        metavar="CANDIDATE",
        help="a version answering a copy of the traffic after the champion; its answers "
        "are compared and logged, never returned",
    )
    p.add_argument("--request-log", metavar="FILE", help="append one JSON line per request")
    p.add_argument(
        "--audit", metavar="FILE", help="append the firewall's decisions to this JSONL log"
    )
    p.add_argument("--otel", choices=("none", "console", "otlp"), help="trace exporter")
    p.add_argument("--rate-limit", type=float, metavar="RPS", help="requests/second per key")
    p.add_argument(
        "--cors-origin", action="append", metavar="ORIGIN", help="allowed origin (repeatable)"
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML with any ServeConfig field (see 'polyfuse schema serve'); "
        "POLYFUSE_<FIELD> variables override it, flags override both",
    )
    p.add_argument(
        "--quarantine",
        action="store_true",
        default=None,
        help="stop feeding a modality whose drift is confirmed and hurts (docs/monitoring.md)",
    )
    p.add_argument(
        "--no-monitor",
        dest="monitor",
        action="store_false",
        default=None,
        help="do not watch served requests for drift",
    )
    p.add_argument(
        "--review",
        nargs="?",
        const="sqlite://polyfuse-review.db",
        metavar="URI",
        help="queue doubtful answers for human review: sqlite:///path/review.db, or "
        "redis://HOST:6379/0 for several replicas (alone: sqlite://polyfuse-review.db; "
        "docs/review.md)",
    )
    p.add_argument(
        "--sync-model",
        metavar="DIR",
        help="estimate the sound/picture offset of videos with this learned sync model "
        "(default: the signal baseline; set sync: false in the config file to skip)",
    )
    p.add_argument(
        "--review-inputs",
        action="store_true",
        default=None,
        help="keep queued answers' inputs as the firewall left them (default: digests only)",
    )
    p.add_argument(
        "--review-share",
        type=float,
        metavar="S",
        help="route the share S of recent answers most likely wrong, by the error model "
        "fitted on the artifact's reference profile (default 0.1)",
    )
    p.add_argument(
        "--review-threshold",
        type=float,
        metavar="P",
        help="with reason low_confidence: route answers whose confidence is below P (default 0.5)",
    )
    p.add_argument(
        "--review-contradiction",
        type=float,
        metavar="P",
        help="with reason contradiction: route answers a leave-one-modality-out output "
        "contradicts with confidence >= P (default 0.9)",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="what runs the model: onnx (ONNX Runtime) for a folder written by 'polyfuse "
        "export', torch for a trained artifact; auto: whichever the folder holds",
    )
    p.add_argument("--device", help="auto, cpu or cuda (default: the runtime's)")
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch intra-op threads (default: the cores divided among the encoders)",
    )
    p.add_argument(
        "--ray",
        action="store_true",
        help="run the encoders as Ray Serve deployments (pip install 'polyfuse[ray]')",
    )
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="Ray cluster to join: 'auto' (ray start on this node) or ray://HOST:10001; "
        "implies --ray (default: a local Ray instance)",
    )
    p.add_argument(
        "--ray-config",
        metavar="FILE",
        help="YAML of RayConfig: deployment (batching, autoscaling, resources), "
        "per_modality; implies --ray",
    )


def serve(args: argparse.Namespace) -> int:
    """Serve an artifact over HTTP: REST (/v1/predict, /v1/embed, /v1/scan with --policy,
    /v1/search with --index, /v1/consistency with --align, /v1/caption with --caption),
    the Open Inference Protocol v2 (/v2/...), /healthz, /readyz, /metrics and docs at
    /docs. With --review, doubtful answers wait for human labels (/v1/review, the page
    at /review, POST /v1/feedback; docs/review.md).

    ARTIFACT is a folder or a registered model's version, models:/NAME@ALIAS or
    models:/NAME/VERSION on the MLflow registry named by MLFLOW_TRACKING_URI (resolved once
    at start-up: restart to pick up a promotion).

    Without API keys (--api-keys FILE or POLYFUSE_API_KEYS) the server answers on
    loopback only; binding another address without keys needs --insecure.
    """
    config = serve_config(args)
    config.check()  # refuse unsafe settings before loading any model
    if config.policy:
        from polyfuse.guard.policy import Policy

        Policy.load(config.policy)  # a bad policy fails here, not after the model loaded
    try:
        from polyfuse.serve.http.app import create_app
        from polyfuse.serve.http.server import check_port, run
    except ImportError as exc:
        from polyfuse.core.errors import DependencyError

        raise DependencyError(exc.name or "fastapi", "polyfuse serve", "serve") from None
    check_port(config.host, config.port)  # a busy port fails now, not after loading
    from polyfuse.serve.runtime.align import AlignServices

    versioned = bool(getattr(args, "canary", None) or getattr(args, "shadow", None))
    ray = bool(args.ray or args.ray_address or args.ray_config)
    if versioned and ray:
        from polyfuse.core.errors import ConfigError

        raise ConfigError(
            "--canary", "several versions are served in process only", hint="drop --ray"
        )
    sources = _sources(args) if versioned else None  # registry URIs resolve here, first
    artifact = args.artifact if sources else resolve_artifact(args.artifact)
    for folder in [str(s.folder) for s in sources.values()] if sources else [artifact]:
        check_engine(getattr(args, "engine", "auto"), folder, ray=ray)
    if args.artifact.startswith("models:/") and config.model_name is None:
        config = config.replace(model_name=_registered_name(args.artifact))
    align = AlignServices.load(
        index=args.index,
        align=args.align and resolve_artifact(args.align),
        caption=args.caption and resolve_artifact(args.caption),
    )
    threads = "auto" if args.threads is None else args.threads
    options: dict[str, Any] = {"torch_threads": threads, **config.runtime_options()}
    if args.device:
        options["device"] = args.device
    if sources is not None:
        from polyfuse.serve.versions.runtime import load_versions

        runtime: Runtime = load_versions(
            sources["champion"],
            canary=sources.get("canary"),
            shadow=sources.get("shadow"),
            weight=config.canary_weight,
            settings=config.canary_judge,
            shadow_settings=config.shadow_budget,
            **options,
        )
    elif ray:
        import dataclasses

        from polyfuse.serve.runtime.ray import RayConfig, RayRuntime, import_ray

        import_ray()  # DependencyError with the install hint before loading anything
        ray_config = RayConfig.from_file(args.ray_config) if args.ray_config else RayConfig()
        if args.ray_address:
            ray_config = dataclasses.replace(ray_config, address=args.ray_address)
        runtime = RayRuntime.load(artifact, ray_config=ray_config, **options)
    else:
        from polyfuse.serve.runtime.model import ModelRuntime

        runtime = ModelRuntime.load(artifact, **options)
    app = create_app(runtime, config, align=align)
    if not config.auth_enabled:
        log.warning(
            "no API keys configured: %s",
            "serving without authentication (--insecure)"
            if config.insecure
            else "answering loopback clients only",
        )
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(
        f"polyfuse serving {args.artifact} at http://{host}:{config.port} "
        f"(API docs: http://{host}:{config.port}/docs)",
        flush=True,
    )
    level = "debug" if args.verbose else "warning" if args.quiet else "info"
    run(app, config.host, config.port, log_level=level)
    return EXIT_OK


def check_engine(engine: str, folder: str, *, ray: bool = False) -> None:
    """Refuse an engine the folder cannot run: ``onnx`` needs a folder written by
    ``polyfuse export``, ``torch`` a trained artifact; Ray replicas run torch artifacts."""
    from polyfuse.artifacts.onnx import is_onnx_export
    from polyfuse.core.errors import ConfigError

    exported = is_onnx_export(folder)
    if engine == "onnx" and not exported:
        raise ConfigError(
            "--engine",
            f"{folder} is not an ONNX export",
            hint=f"run 'polyfuse export {folder} --format onnx --out DIR' and serve DIR",
        )
    if engine == "torch" and exported:
        raise ConfigError(
            "--engine",
            f"{folder} holds ONNX graphs, not torch weights",
            hint="serve the artifact it was exported from (`polyfuse info` names it under "
            "onnx.source), or drop --engine",
        )
    if ray and exported:
        raise ConfigError(
            "--engine", "the ONNX engine serves in process", hint="drop --ray for an ONNX export"
        )


def _sources(args: argparse.Namespace) -> dict[str, VersionSource]:
    """ARTIFACT, --canary and --shadow by role, registry URIs resolved to local copies."""
    from polyfuse.serve.versions.sources import VersionSource

    given = {"champion": args.artifact, "canary": args.canary, "shadow": args.shadow}
    return {role: VersionSource.resolve(v) for role, v in given.items() if v is not None}


def _registered_name(uri: str) -> str:
    """The registered model's name: the model name of the Open Inference Protocol routes."""
    from polyfuse.release.registry import ModelRef

    return ModelRef.parse(uri).name


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """`ServeConfig`: defaults < --config file < ``POLYFUSE_*`` variables < flags, then the
    keys (--config, POLYFUSE_API_KEYS and --api-keys together)."""
    from polyfuse.serve.config import ServeConfig, env_key_hashes, read_keys_file

    config = ServeConfig.from_file(args.config) if args.config else ServeConfig()
    config = config.with_env()  # POLYFUSE_* variables win over the file, flags over both
    flags = {
        "host": args.host,
        "port": args.port,
        "policy": args.policy,
        "request_log": args.request_log,
        "audit": args.audit,
        "otel": args.otel,
        "rate_limit": args.rate_limit,
        "cors_origins": tuple(args.cors_origin) if args.cors_origin else None,
        "insecure": args.insecure or None,
        "quarantine": getattr(args, "quarantine", None),
        "monitor": getattr(args, "monitor", None),
        "review": getattr(args, "review", None),
        "review_inputs": getattr(args, "review_inputs", None),
        "sync_model": getattr(args, "sync_model", None),
        "review_share": getattr(args, "review_share", None),
        "review_threshold": getattr(args, "review_threshold", None),
        "review_contradiction": getattr(args, "review_contradiction", None),
        "canary_weight": getattr(args, "canary_weight", None),
    }
    config = config.replace(**{k: v for k, v in flags.items() if v is not None})
    keys = config.api_key_hashes + env_key_hashes()
    limits = dict(config.key_limits)
    if args.api_keys:
        file_keys, file_limits = read_keys_file(args.api_keys)
        keys += file_keys
        limits.update(file_limits)  # the keys file wins over --config for the same key
    admins = config.admin_key_hashes
    if getattr(args, "admin_keys", None):
        admins += read_keys_file(args.admin_keys)[0]
        keys += admins  # an admin key is an API key too
    return config.replace(
        api_key_hashes=tuple(dict.fromkeys(keys)),
        key_limits=limits,
        admin_key_hashes=tuple(dict.fromkeys(admins)),
    )
