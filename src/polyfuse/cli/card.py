"""``polyfuse card``: print an artifact's model card, or evaluate and rewrite it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from polyfuse.cli.common import (
    ARTIFACT_HELP,
    EXIT_OK,
    check_output_file,
    modality_list,
    resolve_artifact,
    severities,
)


def card_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``card``."""
    p.add_argument("artifact", help=ARTIFACT_HELP)
    p.add_argument(
        "--format",
        choices=("md", "html", "json"),
        default="md",
        help="what to print or write (default md)",
    )
    p.add_argument("--out", metavar="FILE", help="write the card here instead of printing it")
    new = p.add_argument_group(
        "re-evaluate", "with --data the card is rebuilt from a full evaluation and saved"
    )
    new.add_argument("--data", metavar="MANIFEST", help="labelled manifest to evaluate on")
    new.add_argument(
        "--source",
        default="",
        metavar="TEXT",
        help="what the data is (e.g. 'held-out test split'); shown on the card",
    )
    new.add_argument(
        "--slices", type=modality_list, metavar="COL,COL", help="metadata columns to slice on"
    )
    new.add_argument(
        "--severities",
        type=severities,
        default=(3,),
        metavar="1,3,5",
        help="corruption severities of the robustness section (default 3)",
    )
    new.add_argument(
        "--policy",
        metavar="FILE",
        help="firewall policy the model is served with (default: "
        "the config's card.policy, else polyfuse's default policy)",
    )
    new.add_argument("--device", default="auto", help="auto, cpu or cuda")


def card(args: argparse.Namespace) -> int:
    """Print (or write) the card; with --data, evaluate first and save the new card."""
    from polyfuse.release.card import load_card, write_card

    check_output_file("--out", args.out)
    artifact = resolve_artifact(args.artifact)
    if args.data:
        model_card = write_card(
            artifact,
            args.data,
            slices=args.slices,
            severities=args.severities,
            policy=args.policy,
            source=args.source,
            progress=not args.quiet,
            device=args.device,
        )
    else:
        model_card = load_card(artifact)
    if args.format == "json":
        text = json.dumps(model_card.to_dict(), indent=2) + "\n"
    else:
        text = model_card.to_html() if args.format == "html" else model_card.to_markdown()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        if not args.quiet:
            print(f"wrote {args.out}")
    else:
        print(text, end="" if text.endswith("\n") else "\n")
    return EXIT_OK
