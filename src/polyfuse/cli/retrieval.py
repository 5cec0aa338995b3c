"""``polyfuse index``, ``search`` and ``caption``: alignment and captioning artifacts at work."""

from __future__ import annotations

import argparse
import json

from polyfuse.cli.batch import job_settings, ray_arguments, runner, uses_ray
from polyfuse.cli.common import EXIT_OK, check_positive


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


def search(args: argparse.Namespace) -> int:
    """Search an index by text or by image; prints ranked items with scores."""
    check_positive("-k", args.k)
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


def caption_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``caption``."""
    p.add_argument("artifact", help="captioning artifact (task: captioning)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--beam", type=int, default=3, help="beam width (1: greedy)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")


def caption(args: argparse.Namespace) -> int:
    """Caption images with a captioning artifact."""
    from polyfuse.inference.captioner import Captioner

    captions = Captioner(args.artifact).caption(args.images, beam=args.beam)
    for path, text in zip(args.images, captions, strict=True):
        print(json.dumps({"image": path, "caption": text}) if args.json else f"{path}\t{text}")
    return EXIT_OK
