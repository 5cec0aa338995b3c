"""``polyfuse feedback``: what human reviewers labelled (``polyfuse serve --review``)."""

from __future__ import annotations

import argparse
import json
import os

from polyfuse.cli.common import EXIT_OK, check_output_file

#: Environment variable naming the review store (as ``polyfuse serve`` reads it).
STORE_ENV = "POLYFUSE_REVIEW"


def feedback_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of feedback (one action: export)."""
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export",
        help="write the reviewed samples as a training manifest",
        description="Write the reviewed samples as a JSONL training manifest (the shape "
        "'polyfuse train' reads; inputs written beside it). Samples whose inputs were not "
        "kept (serve without --review-inputs, or blocked by the firewall) go to "
        "<stem>.hashes.jsonl instead: their labels and input SHA-256 digests.",
    )
    export.add_argument("--out", required=True, metavar="MANIFEST", help="the .jsonl to write")
    export.add_argument(
        "--store",
        metavar="URI",
        help="review store: sqlite:///path/review.db or redis://HOST:6379/0 "
        f"(default: ${STORE_ENV}, else the serve default sqlite://polyfuse-review.db)",
    )
    export.add_argument("--json", action="store_true", help="print the summary as JSON")


def feedback(args: argparse.Namespace) -> int:
    """What human reviewers labelled: ``polyfuse feedback export --out MANIFEST`` writes the
    reviewed samples of the review store as a training manifest (docs/review.md)."""
    from polyfuse.serve.review.export import export_manifest
    from polyfuse.serve.review.store import DEFAULT_STORE, open_store

    check_output_file("--out", args.out)
    uri = args.store or os.environ.get(STORE_ENV) or DEFAULT_STORE
    store = open_store(uri)
    try:
        summary = export_manifest(store, args.out)
    finally:
        store.close()
    if args.json:
        print(json.dumps(summary.to_dict()))
        return EXIT_OK
    if not summary.rows and not summary.without_inputs:
        print(f"no reviewed samples in {store.uri}")
    print(f"{summary.rows} training rows -> {summary.manifest}")
    if summary.hashes is not None:
        print(
            f"{summary.without_inputs} reviewed samples had no kept inputs (serve with "
            f"--review-inputs to keep them; blocked requests never keep them): labels and "
            f"input SHA-256 digests -> {summary.hashes}"
        )
    return EXIT_OK
