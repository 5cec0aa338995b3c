"""``polyfuse monitor``: has the data drifted from the reference, in which modality, and
does it hurt? Exit code 0 without drift, 1 with drift (usable as a CI/CD gate), 2 on errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from polyfuse.cli.common import EXIT_FINDINGS, EXIT_OK, check_positive

if TYPE_CHECKING:
    from polyfuse.data.manifest import Manifest
    from polyfuse.inference.predict import Predictor
    from polyfuse.monitor.observe import Observations
    from polyfuse.monitor.profile import ReferenceProfile
    from polyfuse.monitor.run import MonitorReport


def monitor_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``monitor``."""
    p.add_argument("artifact", help="artifact folder written by 'polyfuse train'")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--current", metavar="MANIFEST", help="the data to check (in stream order)")
    source.add_argument(
        "--log",
        metavar="REQUESTS.jsonl",
        help="the request log of 'polyfuse serve --request-log' (statistics and sketches "
        "of served requests; no inputs are needed)",
    )
    p.add_argument(
        "--reference",
        metavar="MANIFEST",
        help="reference data (default: the profile training stored in the artifact)",
    )
    p.add_argument("--window", type=int, default=200, help="samples per window (default 200)")
    p.add_argument(
        "--alpha",
        type=float,
        default=0.05,
        help="false-alarm budget per assessment, shared by all decisions (default 0.05)",
    )
    p.add_argument("--out", metavar="DIR", help="write drift.json and drift.html here")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--batch-size", type=int, default=32)


def monitor(args: argparse.Namespace) -> int:
    """Compare a manifest with the reference profile; exit 1 when it drifted."""
    from polyfuse.core.errors import ConfigError

    check_positive("--window", args.window)
    check_positive("--batch-size", args.batch_size)
    if not 0.0 < args.alpha < 1.0:
        raise ConfigError("--alpha", f"must be between 0 and 1, got {args.alpha}", hint="e.g. 0.05")
    from polyfuse.data.manifest import Manifest
    from polyfuse.inference.predict import Predictor
    from polyfuse.monitor import ReferenceProfile, build_profile, monitor, observe

    progress = not args.quiet
    predictor = Predictor.load(args.artifact, device=args.device, batch_size=args.batch_size)
    label = predictor.artifact.config.label
    if args.reference:
        ref_manifest = Manifest.load(args.reference, predictor.modalities, label)
        profile = build_profile(predictor, ref_manifest, progress=progress)
    else:
        profile = ReferenceProfile.of_artifact(args.artifact)
    current = None
    if args.log:
        observed = _from_log(Path(args.log), profile)
    else:
        current = Manifest.load(args.current, predictor.modalities, label)
        observed = observe(predictor, current, vocab=profile.vocab, progress=progress)
    report = monitor(profile, observed, window=args.window, alpha=args.alpha, progress=progress)
    report.meta.update(
        {
            "artifact": str(args.artifact),
            "current": str(args.log or args.current),
            "reference": profile.source,
        }
    )
    data = report.to_dict()
    if args.out:
        from polyfuse.monitor.report import write_report

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "drift.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
        render = None if current is None else _renderer(predictor, current)
        write_report(report, out / "drift.html", render=render)
        print(f"wrote {out / 'drift.json'} and {out / 'drift.html'}", file=sys.stderr)
    if args.json:
        print(json.dumps(data))
    else:
        print(_summary(report))
    return EXIT_FINDINGS if report.drift else EXIT_OK


def _from_log(path: Path, profile: ReferenceProfile) -> Observations:
    """Observations of the answered requests of a service's request log."""
    from polyfuse.core.errors import InvalidInputError
    from polyfuse.monitor.live import MonitorRecord, observations_of

    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidInputError("--log", f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except ValueError as exc:
            raise InvalidInputError("--log", f"{path}:{number} is not JSON ({exc})") from exc
        if isinstance(entry, dict) and isinstance(entry.get("monitor"), dict):
            records.append(MonitorRecord.from_dict(str(entry["request_id"]), entry["monitor"]))
    if not records:
        raise InvalidInputError(
            "--log",
            f"{path} holds no monitored requests",
            hint="serve with --request-log and drift monitoring on (the default for "
            "artifacts with a reference profile)",
        )
    return observations_of(records, profile)


def _summary(report: MonitorReport) -> str:
    data = report.to_dict()
    lines = [f"samples: {data['n']} in {len(data['windows'])} windows of {data['window']}"]
    for m, v in data["modalities"].items():
        first = v["first_window"]
        state = "DRIFT" if v["drift"] else "ok"
        line = f"{m}: {state} (p={v['p_value']:.2g}, score {v['score']:.3f}"
        line += f", first drifted window {first})" if first is not None else ")"
        moved = v["statistics"].get("input_statistics", {}).get("moved", [])
        if v["drift"] and moved:
            line += "; moved most: " + ", ".join(
                f"{s['name']} {s['reference']:.3g} -> {s['current']:.3g}" for s in moved[:3]
            )
        lines.append(line)
    for m, v in data["missing_rate"].items():
        if v["drift"]:
            lines.append(f"{m}: missing rate {v['reference']:.1%} -> {v['current']:.1%} (DRIFT)")
    pred = data["prediction"]
    lines.append(f"prediction: {'DRIFT' if pred['drift'] else 'ok'} (p={pred['p_value']:.2g})")
    est = data["estimated_accuracy"]
    metric = str(est.get("metric", "accuracy")).replace("_", " ")
    if est["current"] is not None:
        line = f"estimated {metric}: {est['current']:.3f} (reference {est['reference']:.3f})"
        if "observed" in est:
            line += f", observed {est['observed']:.3f}"
        lines.append(line)
    for m, h in data["harm"].items():
        lines.append(
            f"without {m}: estimated {metric} {h['without']:.3f} (with it {h['with']:.3f})"
        )
    lines.append("drift" if data["drift"] else "no drift")
    return "\n".join(lines)


def _renderer(predictor: Predictor, manifest: Manifest) -> Any:
    """Render a current sample's input by id for the report (thumbnail, player, text)."""
    from polyfuse.core.errors import PolyfuseError
    from polyfuse.evaluation.report import media

    rows = {r.id: r for r in manifest.rows}
    contracts = predictor.artifact.contracts

    def render(sample_id: str, modality: str) -> str:
        row = rows.get(sample_id)
        if row is None or modality not in row.values:
            return ""
        contract = contracts[modality]
        try:
            obj = contract.load(row.values[modality], field=modality, base_dir=manifest.base_dir)
        except PolyfuseError:
            return ""
        if contract.kind == "image":
            return media.image_tag(obj)
        if contract.kind == "audio":
            return media.audio_tag(obj, int(getattr(contract, "sample_rate", 16000)))
        if contract.kind == "text":
            return media.text_tag(str(obj))
        return media.series_tag(obj)

    return render
