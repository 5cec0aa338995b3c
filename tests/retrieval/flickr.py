"""Small Flickr8k alignment manifests for the alignment and captioning tests."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def small_split(
    shared_data: Path, folder: Path, train_rows: int, val_rows: int
) -> tuple[Path, Path]:
    """The first rows (5 per image) of the alignment train and val manifests."""
    from polyfuse.datasets.flickr8k import build_alignment

    paths = build_alignment(shared_data, folder / "m")
    out = []
    for split, rows in (("train", train_rows), ("val", val_rows)):
        path = folder / f"{split}.jsonl"
        path.write_text("\n".join(paths[split].read_text().splitlines()[:rows]) + "\n")
        out.append(path)
    return out[0], out[1]
