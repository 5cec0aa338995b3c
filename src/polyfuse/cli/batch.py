"""``polyfuse embed`` and the Ray Data options that ``predict``, ``embed`` and ``index`` share."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from polyfuse.cli.common import (
    EXIT_OK,
    artifact_data_arguments,
    check_positive,
    report_bad,
    resolve_artifact,
)

if TYPE_CHECKING:
    from polyfuse.batch.jobs import JobResult, JobSettings
    from polyfuse.batch.runners import Runner


def ray_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a job on Ray Data."""
    g = p.add_argument_group("distributed (Ray Data)")
    g.add_argument(
        "--ray",
        action="store_true",
        help="run on Ray Data: an actor pool per stage, Parquet parts, resumable",
    )
    g.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="join a running cluster (HOST:PORT, ray://HOST:PORT or auto; implies --ray); "
        "default: start a local Ray",
    )
    g.add_argument(
        "--actors",
        type=int,
        default=1,
        help="workers per stage: preprocessing, each encoder, fusion (default 1)",
    )
    g.add_argument(
        "--gpus-per-actor", type=float, default=0.0, help="GPUs per encoder/fusion worker"
    )
    g.add_argument(
        "--part-rows",
        type=int,
        default=1000,
        help="rows per Parquet part, the unit a rerun with the same --out resumes from",
    )


def uses_ray(args: argparse.Namespace) -> bool:
    """Whether the command runs on Ray (``--ray`` or ``--ray-address``)."""
    return bool(args.ray or args.ray_address)


def job_settings(args: argparse.Namespace) -> JobSettings:
    """`JobSettings` from the flags (checked before any work)."""
    from polyfuse.batch.jobs import JobSettings

    check_positive("--batch-size", args.batch_size)
    check_positive("--actors", args.actors)
    check_positive("--part-rows", args.part_rows)
    modalities = getattr(args, "modalities", None)
    return JobSettings(
        batch_size=args.batch_size,
        part_rows=args.part_rows,
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        device=getattr(args, "device", "cpu"),
        modalities=None if modalities is None else tuple(modalities),
        on_bad_row=getattr(args, "on_bad_row", "skip"),
    )


def runner(args: argparse.Namespace) -> Runner:
    """Ray Data with ``--ray``, else this process."""
    from polyfuse.batch.runners import LocalRunner, RayRunner

    if uses_ray(args):
        return RayRunner(args.ray_address, progress=not args.quiet)
    return LocalRunner()


def print_result(result: JobResult, what: str) -> None:
    """One summary line and the bad rows, on stderr."""
    kept = result.parts - result.written
    print(
        f"{what} of {result.rows} rows in {result.parts} parts in {result.out} "
        f"({result.written} computed, {kept} already there)",
        file=sys.stderr,
    )
    report_bad(result.bad)


def embed_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``embed``."""
    artifact_data_arguments(p)
    p.add_argument(
        "--out", required=True, metavar="DIR", help="folder of Parquet parts (reruns resume)"
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--on-bad-row", choices=("skip", "fail"), default="skip")
    ray_arguments(p)


def embed(args: argparse.Namespace) -> int:
    """Per-row pooled embeddings of every modality in the artifact's shared space, as
    Parquet parts (a column per modality; null where the row lacks it)."""
    from polyfuse.batch.jobs import embed as embed_job

    settings = job_settings(args)
    result = embed_job(resolve_artifact(args.artifact), args.data, args.out, runner(args), settings)
    print_result(result, "embeddings")
    return EXIT_OK
