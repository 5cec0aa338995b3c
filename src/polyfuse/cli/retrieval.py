"""``polyfuse index``, ``search`` and ``caption``: alignment and captioning artifacts at work."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from polyfuse.cli.batch import job_settings, ray_arguments, runner, uses_ray
from polyfuse.cli.common import EXIT_FINDINGS, EXIT_OK, check_positive

_POLICY_HELP = (
    "firewall policy: what is printed passes its outputs section (e-mail addresses, card "
    "numbers ... redacted as <TYPE>; exit 1 without printing when it blocks)"
)


def index_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``index``."""
    p.add_argument("artifact", help="alignment artifact (task: contrastive)")
    p.add_argument("--data", required=True, metavar="MANIFEST", help="pair manifest")
    p.add_argument("--db", required=True, metavar="DIR", help="LanceDB folder to write")
    p.add_argument("--batch-size", type=int, default=32, help="rows per batch with --ray")
    ray_arguments(p)
    p.add_argument(
        "--parts",
        metavar="DIR",
        help="with --ray: folder of the embedding parts (default DB/_embeddings; resumable)",
    )


def index(args: argparse.Namespace) -> int:
    """Embed a pair manifest with an alignment artifact into a LanceDB folder (with --ray:
    the embeddings on Ray Data, as resumable Parquet parts, then the tables)."""
    if uses_ray(args):
        from polyfuse.batch.jobs import index as index_job

        settings = job_settings(args)
        counts = index_job(
            args.artifact, args.data, args.db, runner(args), settings, parts=args.parts
        )
    else:
        from polyfuse.retrieval.pipeline import build_index

        counts = build_index(args.artifact, args.data, args.db, progress=not args.quiet)
    print(", ".join(f"{n} {name} rows" for name, n in counts.items()) + f" in {args.db}")
    return EXIT_OK


def search_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``search``."""
    p.add_argument("--db", required=True, metavar="DIR", help="folder from `index`")
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="find images described by this text")
    query.add_argument("--image", metavar="PATH", help="find texts that describe this image")
    p.add_argument("-k", type=int, default=10, help="results (default 10)")
    p.add_argument("--json", action="store_true", help="one JSON object per result")
    p.add_argument("--policy", metavar="FILE", help=_POLICY_HELP)


def search(args: argparse.Namespace) -> int:
    """Search an index by text or by image; prints ranked items with scores."""
    check_positive("-k", args.k)
    from polyfuse.retrieval.pipeline import search_index

    modality, value = ("text", args.text) if args.text is not None else ("image", args.image)
    hits = search_index(args.db, modality, value, args.k)
    found = {"hits": [{"id": h.id, "metadata": h.metadata} for h in hits]}
    answer = _screened(found, args.policy, "search")
    if answer is None:
        return EXIT_FINDINGS
    for rank, (h, shown) in enumerate(zip(hits, answer["hits"], strict=True), 1):
        if args.json:
            line = {"rank": rank, "id": shown["id"], "score": h.score, **shown["metadata"]}
            print(json.dumps(line))
        else:
            print(f"{rank:>3}  {h.score:.3f}  {shown['id']}")
    return EXIT_OK


def _screened(answer: dict[str, Any], policy: str | None, name: str) -> dict[str, Any] | None:
    """``answer`` as the policy's outputs section lets it out (unchanged without a
    policy); None, with the reason on stderr, when the policy blocks it."""
    if policy is None:
        return answer
    from polyfuse.guard.engine import Guard
    from polyfuse.guard.policy import Policy

    shown, scan = Guard(Policy.load(policy)).scan_answer(answer, name=name)
    if scan.action == "block":
        types = sorted({f.type for f, a in scan.findings if a == "block"})
        print(f"error: the firewall policy blocks the answer ({', '.join(types)})", file=sys.stderr)
        return None
    redacted = scan.redacted()
    if redacted:
        counts = ", ".join(f"{t} x{n}" for t, n in sorted(redacted.items()))
        print(f"output firewall: redacted {counts}", file=sys.stderr)
    screened: dict[str, Any] = shown
    return screened


def caption_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``caption``."""
    p.add_argument("artifact", help="captioning artifact (task: captioning)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--beam", type=int, default=3, help="beam width (1: greedy)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--policy", metavar="FILE", help=_POLICY_HELP)


def caption(args: argparse.Namespace) -> int:
    """Caption images with a captioning artifact."""
    from polyfuse.inference.captioner import Captioner

    captions = Captioner(args.artifact).caption(args.images, beam=args.beam)
    answer = _screened({"captions": captions}, args.policy, "caption")
    if answer is None:
        return EXIT_FINDINGS
    for path, text in zip(args.images, answer["captions"], strict=True):
        print(json.dumps({"image": path, "caption": text}) if args.json else f"{path}\t{text}")
    return EXIT_OK
