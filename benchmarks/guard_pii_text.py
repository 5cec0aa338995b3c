"""Text PII benchmark: recall and precision per entity type of `TextPII` on Presidio's
synthetic dataset (``pii/presidio_synth_dataset_v2.json``, 1,500 sentences).

A gold span counts as found when a finding of the same (mapped) type overlaps it; a
finding counts as correct when it overlaps a gold span of its type. The dataset's type
names are mapped to ours (`DATASET_TO_OURS`, printed); dataset types with no counterpart
are reported with their gold counts only, and our types the dataset does not annotate get
no precision. `score` works on any ``(type, location)`` pairs with a pluggable overlap
test, so image and audio renderings of the same sentences can reuse it.

    python benchmarks/guard_pii_text.py --data ../shared/data --json pii_text.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATASET = Path("pii") / "presidio_synth_dataset_v2.json"

#: Dataset entity type -> ours (None: we do not detect it by design).
DATASET_TO_OURS: dict[str, str | None] = {
    "PERSON": "PERSON",
    "GPE": "LOCATION",
    "STREET_ADDRESS": "LOCATION",
    "CREDIT_CARD": "CREDIT_CARD",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "IBAN_CODE": "IBAN_CODE",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_DRIVER_LICENSE": "US_DRIVER_LICENSE",
    "ORGANIZATION": None,
    "DATE_TIME": None,
    "TITLE": None,
    "AGE": None,
    "NRP": None,
    "ZIP_CODE": None,
    "DOMAIN_NAME": None,
}

Item = Sequence[tuple[str, Any]]


def span_overlap(a: Any, b: Any) -> bool:
    """Whether two ``(start, end)`` spans (end exclusive) share a character."""
    return bool(a[0] < b[1] and b[0] < a[1])


def score(
    findings_per_item: Sequence[Item],
    gold_per_item: Sequence[Item],
    overlap: Callable[[Any, Any], bool] = span_overlap,
) -> dict[str, dict[str, Any]]:
    """Recall and precision per entity type.

    Args:
        findings_per_item: per item, the detector's ``(type, location)`` pairs.
        gold_per_item: per item, the gold ``(type, location)`` pairs (types already mapped
            to the detector's names).
        overlap: whether a finding's location matches a gold location (character spans by
            default; pass a box or time-range test for images and audio).

    Returns:
        ``{type: {"gold", "found", "recall", "predicted", "correct", "precision"}}`` for
        every type in either side; ``recall`` is None without gold spans and
        ``precision`` is None for types the gold never annotates.
    """
    if len(findings_per_item) != len(gold_per_item):
        raise ValueError(
            f"{len(findings_per_item)} finding lists for {len(gold_per_item)} gold lists"
        )
    gold_types = {t for item in gold_per_item for t, _ in item}
    types = gold_types | {t for item in findings_per_item for t, _ in item}
    stats = {t: {"gold": 0, "found": 0, "predicted": 0, "correct": 0} for t in types}
    for found, gold in zip(findings_per_item, gold_per_item, strict=True):
        for t, loc in gold:
            stats[t]["gold"] += 1
            stats[t]["found"] += any(ft == t and overlap(floc, loc) for ft, floc in found)
        for t, loc in found:
            stats[t]["predicted"] += 1
            stats[t]["correct"] += any(gt == t and overlap(loc, gloc) for gt, gloc in gold)
    out: dict[str, dict[str, Any]] = {}
    for t in sorted(types):
        s = stats[t]
        out[t] = {
            **s,
            "recall": s["found"] / s["gold"] if s["gold"] else None,
            "precision": (s["correct"] / s["predicted"] if s["predicted"] else None)
            if t in gold_types
            else None,
        }
    return out


def load_gold(path: Path) -> tuple[list[str], list[list[tuple[str, Any]]], dict[str, int]]:
    """Sentences, their mapped gold spans, and gold counts of the unmapped types."""
    rows = json.loads(path.read_text(encoding="utf-8"))
    texts, gold, unmapped = [], [], {}
    for row in rows:
        texts.append(row["full_text"])
        spans = []
        for s in row["spans"]:
            ours = DATASET_TO_OURS.get(s["entity_type"])
            if ours is None:
                unmapped[s["entity_type"]] = unmapped.get(s["entity_type"], 0) + 1
                continue
            spans.append((ours, (s["start_position"], s["end_position"])))
        gold.append(spans)
    return texts, gold, unmapped


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints the mapping and the table, writes ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    parser.add_argument("--misses", type=str, default="", help="print misses of these types")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "src"))
    from polyfuse.guard.detectors.pii import TextPII

    path = args.data / DATASET
    if not path.is_file():
        print(f"dataset not found: {path} (pass --data DIR holding {DATASET})", file=sys.stderr)
        return 2
    texts, gold, unmapped = load_gold(path)
    if args.limit:
        texts, gold = texts[: args.limit], gold[: args.limit]

    print("Entity mapping (dataset -> polyfuse):")
    for k, v in DATASET_TO_OURS.items():
        print(f"  {k} -> {v or '(not detected by design)'}")

    detector = TextPII()
    t0 = time.perf_counter()
    detector.detect("warm-up: John Smith lives in Paris.")
    load_s = time.perf_counter() - t0
    findings, latencies = [], []
    for text in texts:
        t = time.perf_counter()
        found = detector.detect(text)
        latencies.append(time.perf_counter() - t)
        findings.append([(f.type, f.location.span) for f in found])
    result = score(findings, gold)

    print("\n| entity | gold | recall | predicted | precision |")
    print("|---|---:|---:|---:|---:|")
    for t, s in result.items():
        print(
            f"| {t} | {s['gold']} | {_fmt(s['recall'])} | {s['predicted']} | "
            f"{_fmt(s['precision'])} |"
        )
    for t, n in sorted(unmapped.items()):
        print(f"| {t} (unmapped) | {n} | n/a | 0 | n/a |")
    median_ms = statistics.median(latencies) * 1000
    print(f"\nsentences: {len(texts)}; analyzer load + first call: {load_s:.1f} s")
    print(f"median latency per sentence: {median_ms:.1f} ms")

    for t in filter(None, args.misses.split(",")):
        print(f"\nmisses of {t}:")
        for text, found, g in zip(texts, findings, gold, strict=True):
            for gt, loc in g:
                if gt == t and not any(ft == t and span_overlap(fl, loc) for ft, fl in found):
                    got = [(ft, text[fl[0] : fl[1]]) for ft, fl in found if span_overlap(fl, loc)]
                    print(f"  {text[loc[0] : loc[1]]!r} got={got} in {text[:120]!r}")

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "dataset": str(path),
                    "sentences": len(texts),
                    "mapping": DATASET_TO_OURS,
                    "per_entity": result,
                    "unmapped_gold": unmapped,
                    "median_latency_ms": median_ms,
                    "load_s": load_s,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
