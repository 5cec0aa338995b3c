"""The ``polyfuse`` command line: a table of subcommand -> typed function.

Every heavy import happens inside the command that needs it, so
``polyfuse --help`` answers instantly.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from polyfuse import __version__
from polyfuse.core.errors import PolyfuseError

if TYPE_CHECKING:
    from polyfuse.serve.config import ServeConfig
    from polyfuse.serve.types import Runtime

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
log = logging.getLogger("polyfuse")


def _severities(value: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,3,5, got '{value}'") from None
    if not levels or any(not 1 <= s <= 5 for s in levels):
        raise argparse.ArgumentTypeError(f"severities are 1..5, got '{value}'")
    return levels


def _modalities(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--modalities needs at least one name")
    return names


# ----------------------------------------------------------------------- commands
def cmd_validate(args: argparse.Namespace) -> int:
    """Check a manifest: files, formats, labels and modality coverage."""
    from polyfuse.train.validate import validate_manifest

    report = validate_manifest(
        args.manifest, config=args.config, modalities=args.modality, progress=not args.quiet
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.render())
    return EXIT_FINDINGS if report.bad_rows else EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    """Train a config on manifests and write an artifact."""
    from polyfuse.core.config import Config
    from polyfuse.train import Trainer

    config = Config.from_dict(_load_config(args.config, args.set))
    if config.task == "contrastive":
        return _train_alignment(config, args)
    if config.task == "captioning":
        from polyfuse.core.errors import ConfigError
        from polyfuse.models.captioner import train_captioning

        if args.val is None:
            raise ConfigError("--val", "captioning reports BLEU / CIDEr on a validation manifest")
        done = train_captioning(config, args.train, args.val, args.out, progress=not args.quiet)
        lines = [f"{k:>16}: {v}" for k, v in done.items()]
        print(json.dumps(done) if args.json else "\n".join(lines))
        return EXIT_OK
    result = Trainer(config, args.out, progress=not args.quiet, resume=args.resume).fit(
        args.train, args.val
    )
    summary: dict[str, Any] = {
        "artifact": str(result.path),
        "best_epoch": result.best_epoch,
        **{k: result.metrics[k] for k in ("accuracy", "macro_f1", "rmse") if k in result.metrics},
        "bad_rows": len(result.bad_rows),
    }
    print(
        json.dumps(summary) if args.json else "\n".join(f"{k:>12}: {v}" for k, v in summary.items())
    )
    return EXIT_OK


def _train_alignment(config: Any, args: argparse.Namespace) -> int:
    """``task: contrastive``: alignment adapters on frozen encoders."""
    from polyfuse.core.errors import ConfigError
    from polyfuse.retrieval.pipeline import train_alignment

    if args.val is None:
        raise ConfigError("--val", "contrastive training picks its epoch on a validation manifest")
    result = train_alignment(config, args.train, args.val, args.out, progress=not args.quiet)
    summary: dict[str, Any] = {"artifact": str(result.path), "best_epoch": result.best_epoch}
    for direction, values in result.metrics.items():
        summary.update({f"val {direction} {k}": v for k, v in values.items()})
    print(
        json.dumps(summary) if args.json else "\n".join(f"{k:>28}: {v}" for k, v in summary.items())
    )
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict every row of a manifest; JSON lines to --out or stdout."""
    from polyfuse.inference.predict import Predictor

    predictor = Predictor.load(args.artifact, device=args.device, batch_size=args.batch_size)
    run = predictor.predict_manifest(
        args.data, modalities=args.modalities, on_bad_row=args.on_bad_row, progress=not args.quiet
    )
    lines = [json.dumps(p.to_dict()) for p in run.predictions]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")
        print(f"wrote {len(lines)} predictions to {args.out}", file=sys.stderr)
    else:
        for ln in lines:
            print(ln)
    _report_bad(run.bad_rows)
    return EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Metrics of an artifact on a labelled manifest; with --out, the full analysis and report."""
    from polyfuse.artifacts.classifier import artifact_kind
    from polyfuse.evaluation import evaluate

    if artifact_kind(args.artifact) == "captioning":
        from polyfuse.models.captioner import evaluate_captioning

        scores = evaluate_captioning(args.artifact, args.data)
        print(
            json.dumps(scores)
            if args.json
            else ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
        )
        return EXIT_OK
    if artifact_kind(args.artifact) == "alignment":
        from polyfuse.retrieval.pipeline import evaluate_alignment

        metrics = evaluate_alignment(args.artifact, args.data, progress=not args.quiet)
        if args.json:
            print(json.dumps(metrics))
        else:
            for direction, values in metrics.items():
                print(f"{direction}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
        return EXIT_OK
    if args.full or args.out or args.slices or args.robustness or args.saliency:
        return _analyse(args)
    result = evaluate(
        args.artifact,
        args.data,
        modalities=args.modalities,
        progress=not args.quiet,
        device=args.device,
    )
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(_render_metrics(result.metrics, result.modalities))
        _report_bad(result.bad_rows)
    return EXIT_OK


def _analyse(args: argparse.Namespace) -> int:
    """``evaluate --out DIR``: every analysis, ``metrics.json`` and ``report.html``."""
    from polyfuse.evaluation.analysis import analyze

    analysis = analyze(
        args.artifact,
        args.data,
        modalities=args.modalities,
        slices=args.slices,
        robustness=args.robustness,
        severities=args.severities,
        saliency=args.saliency,
        bootstrap=args.bootstrap,
        confident=args.confident,
        gap_threshold=args.gap,
        progress=not args.quiet,
        device=args.device,
    )
    data = analysis.to_dict()
    written = []
    if args.out:
        from polyfuse.evaluation.report.html import write_report

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(data, indent=2))
        written = [out / "metrics.json", write_report(analysis, out / "report.html")]
    if args.json:
        print(json.dumps(data))
        return EXIT_OK
    print(_render_metrics(analysis.metrics, tuple(analysis.info["fed"])))
    print(_render_analysis(data))
    _report_bad(analysis.bad_rows)
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def _render_analysis(data: dict[str, Any]) -> str:
    """Text summary of an analysis: subsets, contributions, agreement, failures, slices."""
    ab, contrib = data["ablation"], data["contributions"]
    metric = ab["metric"]
    lines = ["", f"{metric} by modality subset:"]
    for key, v in sorted(ab["subsets"].items(), key=lambda kv: -len(kv[1]["modalities"])):
        lines.append(f"  {key:<28} {v[metric]:.3f}")
    lines.append(
        f"  relative robustness {ab['relative_robustness']:.3f}, "
        f"effective robustness {ab['effective_robustness']:+.3f}"
    )
    for vf, entry in contrib["value_functions"].items():
        shares = ", ".join(f"{m} {v:.0%}" for m, v in entry["share"].items())
        lines.append(f"Shapley share ({vf}): {shares}")
    drops = ", ".join(
        f"{m} {v['mean']:+.3f}" for m, v in contrib["permutation_importance"]["drop"].items()
    )
    lines.append(f"permutation importance ({metric} drop): {drops}")
    if data["agreement"]:
        for pair, v in data["agreement"]["pairs"].items():
            lines.append(
                f"agreement {pair.replace('|', ' vs ')}: kappa {v['kappa']:.3f}, "
                f"{v['contradictions']} confident contradictions"
            )
    if data["failures"]:
        cats = data["failures"]["categories"]
        lines.append(f"errors: {', '.join(f'{k} {n}' for k, n in cats.items()) or 'none'}")
    for col, sl in data["slices"].items():
        if sl["flagged"]:
            lines.append(f"slice gap: {col}={sl['worst']} is {sl['gap']:.3f} below overall")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    """Describe an artifact: task, labels, modalities, contracts, versions, metrics."""
    from polyfuse.artifacts.classifier import load_artifact

    art = load_artifact(args.artifact)
    info = {
        "path": str(art.path),
        "task": art.task.name,
        "labels": list(art.task.labels),
        "contracts": {m: c.to_dict() for m, c in art.contracts.items()},
        "fusion": art.config.model.fusion.name,
        **art.info,
        "metrics": {k: v for k, v in art.metrics.items() if k != "val"},
        "val": {k: v for k, v in art.metrics.get("val", {}).items() if isinstance(v, int | float)},
    }
    print(json.dumps(info, indent=2))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
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


def cmd_demo(args: argparse.Namespace) -> int:
    """Build a spoken+written digits set from installed packages, train, evaluate."""
    from polyfuse.cli.demo import run_demo

    run_demo(Path(args.out), quick=args.quick, progress=not args.quiet)
    return EXIT_OK


# ----------------------------------------------------------------------- helpers
def _load_config(path: str, overrides: Sequence[str]) -> dict[str, Any]:
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


def _render_metrics(metrics: dict[str, Any], modalities: Sequence[str]) -> str:
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


def _report_bad(bad: Sequence[Any]) -> None:
    if bad:
        print(f"{len(bad)} bad rows skipped:", file=sys.stderr)
        for b in bad[:10]:
            print(f"  {b.describe()}", file=sys.stderr)
        if len(bad) > 10:
            print(f"  ... and {len(bad) - 10} more", file=sys.stderr)


# ----------------------------------------------------------------------- parser
def cmd_index(args: argparse.Namespace) -> int:
    """Embed a pair manifest with an alignment artifact into a LanceDB folder."""
    from polyfuse.retrieval.pipeline import build_index

    counts = build_index(args.artifact, args.data, args.db, progress=not args.quiet)
    print(", ".join(f"{n} {name} rows" for name, n in counts.items()) + f" in {args.db}")
    return EXIT_OK


def cmd_caption(args: argparse.Namespace) -> int:
    """Caption images with a captioning artifact."""
    from polyfuse.models.captioner import Captioner

    captions = Captioner(args.artifact).caption(args.images, beam=args.beam)
    for path, text in zip(args.images, captions, strict=True):
        print(json.dumps({"image": path, "caption": text}) if args.json else f"{path}\t{text}")
    return EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    """Search an index by text or by image; prints ranked items with scores."""
    from polyfuse.retrieval.pipeline import search_index

    modality, value = ("text", args.text) if args.text is not None else ("image", args.image)
    hits = search_index(args.db, modality, value, args.k)
    if args.json:
        for rank, h in enumerate(hits, 1):
            print(json.dumps({"rank": rank, "id": h.id, "score": h.score, **h.metadata}))
    else:
        for rank, h in enumerate(hits, 1):
            print(f"{rank:>3}  {h.score:.3f}  {h.id}")
    return EXIT_OK


def _scan_paths(items: Sequence[str]) -> list[Path]:
    """Files named on the command line; folders are walked (sorted, hidden files skipped)."""
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        else:
            out.append(path)
    return out


def cmd_scan(args: argparse.Namespace) -> int:
    """Scan files for PII, prompt injection and hidden text under one policy.

    Exit status: 0 when every input is allowed or only flagged, 1 when any input is
    redacted or blocked (unreadable inputs are blocked), 2 on usage errors.
    """
    from polyfuse.core.progress import bar
    from polyfuse.guard.engine import Guard
    from polyfuse.guard.policy import Policy

    guard = Guard(Policy.load(args.policy), audit=args.audit)
    paths = _scan_paths(args.paths)
    if not paths:
        print("error: no files to scan", file=sys.stderr)
        return EXIT_ERROR
    status = EXIT_OK
    for path in bar(
        paths, enabled=not (args.quiet or args.json) and len(paths) > 1, desc="scanning"
    ):
        result = guard.scan(path)
        redacted = guard.redact(path, result, args.redact_out) if args.redact_out else None
        if result.action in ("redact", "block"):
            status = EXIT_FINDINGS
        if args.json:
            line = result.to_dict()
            if redacted is not None:
                line["redacted"] = str(redacted)
            print(json.dumps(line), flush=True)
            continue
        types = sorted({f.type for f, _ in result.findings})
        detail = result.error if result.error else (", ".join(types) or "no findings")
        extra = f" -> {redacted}" if redacted else ""
        print(f"{result.action:<7} {result.modality:<6} {path}: {detail}{extra}", flush=True)
    return status


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve an artifact over HTTP: REST (/v1/predict, /v1/embed, /v1/scan with --policy,
    /v1/search with --index, /v1/consistency with --align, /v1/caption with --caption),
    the Open Inference Protocol v2 (/v2/...), /healthz, /readyz, /metrics and docs at
    /docs.

    Without API keys (--api-keys FILE or POLYFUSE_API_KEYS) the server answers on
    loopback only; binding another address without keys needs --insecure.
    """
    config = _serve_config(args)
    config.check()  # refuse unsafe settings before loading any model
    if config.audit is not None and config.policy is None:
        from polyfuse.core.errors import ConfigError

        raise ConfigError("--audit", "an audit log needs a firewall", hint="add --policy FILE")
    check_port(config.host, config.port)  # a busy port fails now, not after loading
    try:
        import uvicorn

        from polyfuse.serve.http.app import create_app
    except ImportError as exc:
        from polyfuse.core.errors import DependencyError

        raise DependencyError(exc.name or "fastapi", "polyfuse serve", "serve") from None
    from polyfuse.serve.runtime.align import AlignServices
    from polyfuse.serve.runtime.model import ModelRuntime

    align = AlignServices.load(index=args.index, align=args.align, caption=args.caption)
    threads = "auto" if args.threads is None else args.threads
    options: dict[str, Any] = {"torch_threads": threads}
    if args.device:
        options["device"] = args.device
    if args.ray or args.ray_address or args.ray_config:
        import dataclasses

        from polyfuse.serve.runtime.ray import RayConfig, RayRuntime, import_ray

        import_ray()  # DependencyError with the install hint before loading anything
        ray_config = RayConfig.from_file(args.ray_config) if args.ray_config else RayConfig()
        if args.ray_address:
            ray_config = dataclasses.replace(ray_config, address=args.ray_address)
        runtime: Runtime = RayRuntime.load(args.artifact, ray_config=ray_config, **options)
    else:
        runtime = ModelRuntime.load(args.artifact, **options)
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
    uvicorn.run(app, host=config.host, port=config.port, log_level=level, access_log=False)
    return EXIT_OK


def check_port(host: str, port: int) -> None:
    """Raise `ConfigError` naming --port when ``host:port`` cannot be bound."""
    import socket

    from polyfuse.core.errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                "--port",
                f"cannot listen on {host}:{port} ({exc.strerror})",
                hint="another process holds it: stop it or pass a free --port",
            ) from None


def _serve_config(args: argparse.Namespace) -> ServeConfig:
    """`ServeConfig` from --config, then the flags given, then the keys."""
    import dataclasses

    from polyfuse.serve.config import ServeConfig, env_key_hashes, read_keys_file

    config = ServeConfig.from_file(args.config) if args.config else ServeConfig()
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
    }
    config = dataclasses.replace(config, **{k: v for k, v in flags.items() if v is not None})
    keys = config.api_key_hashes + env_key_hashes()
    limits = dict(config.key_limits)
    if args.api_keys:
        file_keys, file_limits = read_keys_file(args.api_keys)
        keys += file_keys
        limits.update(file_limits)  # the keys file wins over --config for the same key
    return dataclasses.replace(config, api_key_hashes=tuple(dict.fromkeys(keys)), key_limits=limits)


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "validate": (cmd_validate, "check a manifest before training"),
    "train": (cmd_train, "train a model from a YAML config"),
    "predict": (cmd_predict, "predict a manifest with a trained artifact"),
    "evaluate": (cmd_evaluate, "evaluate an artifact on a labelled manifest"),
    "info": (cmd_info, "describe an artifact"),
    "list": (cmd_list, "list modality kinds, encoders and fusions"),
    "index": (cmd_index, "embed a manifest into a vector index (alignment artifacts)"),
    "search": (cmd_search, "search a vector index by text or image"),
    "caption": (cmd_caption, "caption images with a captioning artifact"),
    "scan": (cmd_scan, "scan files for PII, prompt injection and hidden text"),
    "demo": (cmd_demo, "run the whole flow on data that ships with the install"),
    "serve": (cmd_serve, "serve an artifact over HTTP (REST and Open Inference Protocol v2)"),
}


def _alignment_arguments(p: dict[str, argparse.ArgumentParser]) -> None:
    """Arguments of index, search and caption."""
    p["index"].add_argument("artifact", help="alignment artifact (task: contrastive)")
    p["index"].add_argument("--data", required=True, metavar="MANIFEST", help="pair manifest")
    p["index"].add_argument("--db", required=True, metavar="DIR", help="LanceDB folder to write")
    p["caption"].add_argument("artifact", help="captioning artifact (task: captioning)")
    p["caption"].add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p["caption"].add_argument("--beam", type=int, default=3, help="beam width (1: greedy)")
    p["caption"].add_argument("--json", action="store_true", help="one JSON object per image")
    p["search"].add_argument("--db", required=True, metavar="DIR", help="folder from `index`")
    query = p["search"].add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="find images described by this text")
    query.add_argument("--image", metavar="PATH", help="find texts that describe this image")
    p["search"].add_argument("-k", type=int, default=10, help="results (default 10)")
    p["search"].add_argument("--json", action="store_true", help="one JSON object per result")


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of serve (unset flags leave --config's values)."""
    p.add_argument("artifact", help="artifact folder written by 'polyfuse train'")
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
        help="alignment artifact: enables /v1/consistency (default with --index: the "
        "artifact the index was built with)",
    )
    p.add_argument("--caption", metavar="DIR", help="captioning artifact: enables /v1/caption")
    p.add_argument(
        "--api-keys",
        metavar="FILE",
        help="API keys, one a line (or sha256:HEX); adds to POLYFUSE_API_KEYS",
    )
    p.add_argument(
        "--insecure", action="store_true", help="allow a non-loopback address without API keys"
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
    p.add_argument("--config", metavar="FILE", help="YAML with any ServeConfig field")
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
    p = {
        name: sub.add_parser(name, help=h, description=fn.__doc__, parents=[common])
        for name, (fn, h) in COMMANDS.items()
    }

    p["validate"].add_argument("manifest", help="JSONL, CSV or Parquet manifest")
    p["validate"].add_argument("--config", help="training config naming the modalities")
    p["validate"].add_argument(
        "--modality",
        action="append",
        default=[],
        metavar="NAME=KIND",
        help="declare a modality without a config (repeatable)",
    )
    p["validate"].add_argument("--json", action="store_true", help="print the report as JSON")

    p["train"].add_argument("config", help="YAML config")
    p["train"].add_argument("--train", required=True, metavar="MANIFEST", help="training manifest")
    p["train"].add_argument(
        "--val", metavar="MANIFEST", help="validation manifest (default: hold out 10%% of --train)"
    )
    p["train"].add_argument("--out", required=True, metavar="DIR", help="artifact folder")
    p["train"].add_argument("--resume", action="store_true", help="continue from DIR/checkpoints")
    p["train"].add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=5",
    )
    p["train"].add_argument("--json", action="store_true", help="print the summary as JSON")

    for name in ("predict", "evaluate"):
        p[name].add_argument("artifact", help="artifact folder written by 'polyfuse train'")
        p[name].add_argument("--data", required=True, metavar="MANIFEST", help="manifest to run on")
        p[name].add_argument(
            "--modalities",
            type=_modalities,
            metavar="A,B",
            help="feed only these modalities; the rest count as missing",
        )
        p[name].add_argument("--device", default="auto", help="auto, cpu or cuda")
    p["predict"].add_argument(
        "--out", metavar="FILE", help="write JSON lines here (default stdout)"
    )
    p["predict"].add_argument("--batch-size", type=int, default=32)
    p["predict"].add_argument("--on-bad-row", choices=("skip", "fail"), default="skip")
    p["evaluate"].add_argument(
        "--json", action="store_true", help="print one JSON object (accuracy, n, ...)"
    )
    ev = p["evaluate"].add_argument_group(
        "analysis", "any of these runs the full analysis (subsets, Shapley, agreement, failures)"
    )
    ev.add_argument("--out", metavar="DIR", help="write metrics.json and report.html here")
    ev.add_argument("--full", action="store_true", help="full analysis without writing files")
    ev.add_argument(
        "--slices", type=_modalities, metavar="COL,COL", help="metadata columns to slice on"
    )
    ev.add_argument("--robustness", action="store_true", help="corruption curves (slower)")
    ev.add_argument(
        "--severities",
        type=_severities,
        default=(1, 2, 3, 4, 5),
        metavar="1,3,5",
        help="corruption severities (default 1..5)",
    )
    ev.add_argument("--saliency", type=int, default=0, metavar="N", help="IG maps of N errors")
    ev.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="resamples for 95%% intervals"
    )
    ev.add_argument(
        "--confident",
        type=float,
        default=0.8,
        metavar="P",
        help="probability above which disagreeing modalities contradict (default 0.8)",
    )
    ev.add_argument(
        "--gap",
        type=float,
        default=0.05,
        metavar="D",
        help="worst-slice gap that is flagged (default 0.05)",
    )

    p["info"].add_argument("artifact", help="artifact folder")
    _alignment_arguments(p)
    p["scan"].add_argument("paths", nargs="+", metavar="PATH", help="files or folders to scan")
    p["scan"].add_argument("--policy", metavar="FILE", help="policy YAML (default: built-in)")
    p["scan"].add_argument(
        "--redact-out", metavar="DIR", help="write redacted copies of redacted inputs here"
    )
    p["scan"].add_argument("--audit", metavar="FILE", help="append decisions to this JSONL log")
    p["scan"].add_argument("--json", action="store_true", help="one JSON object per input")
    p["demo"].add_argument(
        "--out",
        default="demo-output",
        metavar="DIR",
        help="folder for data and the artifact (default: demo-output)",
    )
    p["demo"].add_argument("--quick", action="store_true", help="smaller data, fewer epochs")
    _serve_arguments(p["serve"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``polyfuse`` command."""
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command][0](args)
    except PolyfuseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
