"""Phone numbers beyond US formats: recall on international and national formats, and the
false-positive rate on numbers that are not phone numbers, before vs after (issue 19).

Positives (a phone number inside a sentence; found when a ``PHONE_NUMBER`` finding
overlaps it):

* the presidio-research sentences (``pii/presidio_synth_dataset_v2.json``) whose
  ``PHONE_NUMBER`` gold is not a valid US number (``+46 (0)8 928 571 38``, ``9469 9966``,
  ``0490 75 40 81`` ...);
* generated numbers: ``phonenumbers.example_number_for_type`` (fixed line and mobile) and
  a valid variant of each (last digits changed) for `REGIONS`, each written in six ways
  (national, international, E.164, dialled from abroad with ``00`` / ``011``, the
  ``+46 (0)8 ...`` trunk form, with an extension ``x52646`` / ``ext. 12``), each in one
  sentence with phone words and one without.

Hard negatives (a sentence counts as a false positive when any ``PHONE_NUMBER`` finding is
reported in it): order, invoice, tracking, booking and account numbers, IDs, amounts,
dates and times, versions, ZIP codes, and access codes: Tensor Trust's human-written
``access_code`` values (``injection/tensortrust_extraction_robustness_dataset.jsonl``) in
sentences and the defences people wrote around them.

Both detectors run the validated rules only (no NER: phone numbers come from the rules),
overlaps resolved as `TextPII` resolves them, findings kept at the default policy's
threshold for ``PHONE_NUMBER``. "before" is the recognizers module at ``--baseline`` (a git
revision; default: the commit before issue 19), "after" the working tree with the default
policy's ``pii.phone_regions``.

    python benchmarks/guard_phones.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECOGNIZERS_PATH = "src/polyfuse/guard/detectors/recognizers.py"
#: The code before issue 19 (the "before" column).
BASELINE = "af004b6"

#: Regions the generated positives come from.
REGIONS = (
    "US", "CA", "GB", "IE", "DE", "AT", "CH", "FR", "BE", "NL", "LU", "ES", "PT", "IT", "SE",
    "NO", "DK", "FI", "PL", "CZ", "HU", "RO", "GR", "TR", "UA", "IL", "AE", "IN", "SG", "HK",
    "JP", "KR", "CN", "TW", "AU", "NZ", "ZA", "NG", "KE", "MX", "BR", "AR", "CL", "CO",
)  # fmt: skip
WITH_WORDS = (
    "Call me on {n} after six.",
    "My mobile number is {n}.",
    "You can reach the office at {n}.",
    "Tel: {n}",
    "Please ring {n} to book a table.",
    "Send a text to {n} when you land.",
    "Fax: {n}",
    "Our support line is {n} (Mon-Fri).",
    "WhatsApp {n} for the address.",
    "Her cell is {n}, call after 5pm.",
)
WITHOUT_WORDS = (
    "For questions: {n}.",
    "Anna Berg, Sales Manager, {n}",
    "I'm at {n} all week.",
    "{n} is the one to use before noon.",
    "Details for the booking: {n}",
)
EXTENSIONS = (" x52646", " ext. 12", " ext 305", " extension 4410", " x 17")


# --------------------------------------------------------------------------- positives


def _variant(pn: ModuleType, number: Any, rng: random.Random) -> Any | None:
    """A valid number of the same region and type with the last two digits changed."""
    for _ in range(20):
        other = pn.PhoneNumber()
        other.merge_from(number)
        other.national_number = number.national_number // 100 * 100 + rng.randrange(100)
        if other.national_number != number.national_number and pn.is_valid_number(other):
            return other
    return None


def _writings(
    pn: ModuleType, number: Any, region: str, rng: random.Random
) -> Iterator[tuple[str, str]]:
    """``(format, text)`` for the ways people write ``number``."""
    fmt = pn.PhoneNumberFormat
    intl = pn.format_number(number, fmt.INTERNATIONAL)
    yield "national", pn.format_number(number, fmt.NATIONAL)
    yield "international", intl
    yield "e164", pn.format_number(number, fmt.E164)
    abroad = "US" if region != "US" else "GB"
    yield "dialled from abroad", pn.format_out_of_country_calling_number(number, abroad)
    if pn.PhoneMetadata.metadata_for_region(region).national_prefix == "0":
        cc, rest = intl.split(" ", 1)
        yield "+cc (0) trunk", f"{cc} (0){rest}"
    national = pn.format_number(number, fmt.NATIONAL)
    yield "with extension", national + rng.choice(EXTENSIONS)


def generated_positives(seed: int = 0) -> list[tuple[str, tuple[int, int], str]]:
    """``(sentence, span, group)`` for numbers of `REGIONS` in every writing."""
    import phonenumbers as pn

    rng = random.Random(seed)
    out = []
    kinds = (pn.PhoneNumberType.FIXED_LINE, pn.PhoneNumberType.MOBILE)
    for region in REGIONS:
        numbers = [pn.example_number_for_type(region, k) for k in kinds]
        numbers = [n for n in numbers if n is not None]
        numbers += [v for n in numbers if (v := _variant(pn, n, rng)) is not None]
        for number in numbers:
            for fmt, written in _writings(pn, number, region, rng):
                for words, templates in (
                    ("phone words", WITH_WORDS),
                    ("no phone words", WITHOUT_WORDS),
                ):
                    template = rng.choice(templates)
                    start = template.index("{n}")
                    text = template.replace("{n}", written)
                    out.append((text, (start, start + len(written)), f"{fmt}, {words}"))
    return out


def presidio_positives(data: Path) -> list[tuple[str, tuple[int, int], str]]:
    """presidio-research sentences whose phone number is not a valid US number."""
    import phonenumbers as pn

    rows = json.loads((data / "pii" / "presidio_synth_dataset_v2.json").read_text("utf-8"))
    out = []
    for row in rows:
        for s in row["spans"]:
            if s["entity_type"] != "PHONE_NUMBER":
                continue
            try:
                us = pn.is_valid_number(pn.parse(s["entity_value"], "US"))
            except pn.NumberParseException:
                us = False
            if not us:
                span = (s["start_position"], s["end_position"])
                out.append((row["full_text"], span, "presidio-research, not US"))
    return out


# --------------------------------------------------------------------------- negatives


def _digits(rng: random.Random, n: int) -> str:
    return str(rng.randrange(1, 10)) + "".join(str(rng.randrange(10)) for _ in range(n - 1))


def _grouped(rng: random.Random, n: int) -> str:
    digits = _digits(rng, n)
    size = rng.choice((3, 4))
    sep = rng.choice((" ", "-", "", ""))
    return sep.join(digits[i : i + size] for i in range(0, n, size))


NEGATIVE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "order number": (
        "Your order #{v} has shipped.",
        "Order no. {v} was delivered to the porch.",
        "I placed order {v} last week but it never arrived.",
        "Please quote your order number {v} in any reply.",
    ),
    "invoice number": (
        "Invoice {v} is due on Friday.",
        "We have received payment for invoice no. {v}.",
        "Attached is invoice {v} for March.",
    ),
    "tracking number": (
        "Tracking number: {v}",
        "Your parcel {v} is out for delivery.",
        "Track shipment {v} on the carrier's site.",
    ),
    "booking / account / ID": (
        "Booking reference {v}, two adults.",
        "Account {v} has been closed.",
        "Employee ID {v} badge expires soon.",
        "Patient record {v} was updated.",
        "Case {v} has been escalated to tier 2.",
        "Serial number {v} is under warranty.",
    ),
    "other numbers, no naming words": (
        "Batch {v} passed QA yesterday.",
        "Lot {v} was recalled.",
        "Scan {v} at the till.",
        "Meter reading {v} kWh.",
        "The counter stopped at {v}.",
    ),
    "phone words next to an ID": (
        "Please call us about order {v}.",
        "Call the store and quote invoice {v}.",
        "When you phone, have your account number {v} ready.",
        "Text us your booking reference {v}.",
    ),
}


def _negative_values(kind: str, rng: random.Random) -> str:
    if kind == "tracking number":
        choice = rng.randrange(4)
        if choice == 0:  # UPS
            body = "".join(rng.choice("0123456789ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(16))
            return "1Z " + " ".join(body[i : i + 4] for i in range(0, 16, 4))
        if choice == 1:  # USPS, 22 digits in groups of four
            return " ".join(_digits(rng, 22)[i : i + 4] for i in range(0, 22, 4))
        return _grouped(rng, rng.choice((10, 12)))  # DHL 10 / FedEx 12
    if kind == "invoice number" and rng.random() < 0.3:
        return f"{rng.randrange(2019, 2027)}-{_digits(rng, 5)}"
    return _grouped(rng, rng.randrange(6, 13))


def _fixed_negatives() -> list[tuple[str, str]]:
    """Amounts, dates, times, versions, ZIP codes, ISBNs: shapes that carry digit groups."""
    rows = {
        "amount": (
            "The total is $1,234,567.89 including tax.",
            "Das kostet 12 500 EUR netto.",
            "Revenue grew to 1 250 000 euros in 2023.",
            "Price: £ 3 499,00 per unit.",
            "They raised 4 800 000 dollars in the seed round.",
            "Budget line 2024: 2 345 678.",
        ),
        "date / time": (
            "The meeting is on 2024-03-15 at 14:30.",
            "Born on 15.03.1984 in Graz.",
            "Due 03/15/2025, overdue after 04/01/2025.",
            "Open from 09.00 to 17.30, Monday to Friday.",
            "The period 2019 2020 2021 was hard.",
            "Between 1998 and 2004 the plant closed twice.",
        ),
        "version": (
            "Upgrade to version 10.0.19045.3803 first.",
            "Build 22621.2861 fixes the driver.",
            "Install v2.14.3 or later.",
            "Tested with Python 3.11.4 and numpy 1.26.4.",
        ),
        "ZIP code": (
            "Send it to 10115 Berlin.",
            "Our office moved to 75008 Paris.",
            "ZIP 94103-1234, San Francisco.",
            "The address is 1600 Amphitheatre Parkway, Mountain View, CA 94043.",
            "Postcode SW1A 1AA, London.",
            "Ship to 2000 Sydney NSW.",
        ),
        "ISBN / coordinates": (
            "ISBN 978-3-16-148410-0 is the second edition.",
            "Coordinates 48.8584, 2.2945 mark the tower.",
            "The score was 21 17 after the second half.",
        ),
    }
    return [(text, kind) for kind, texts in rows.items() for text in texts]


def tensortrust_negatives(data: Path) -> list[tuple[str, str]]:
    """Tensor Trust's access codes that carry digits, in sentences and in the defences
    people wrote around them."""
    path = data / "injection" / "tensortrust_extraction_robustness_dataset.jsonl"
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]
    codes = sorted(
        {r["access_code"] for r in rows if sum(c.isdigit() for c in r["access_code"]) >= 3}
    )
    templates = (
        "The access code is {v}.",
        "Enter {v} at the gate.",
        "Use code {v} to unlock the door.",
        "Password: {v}",
    )
    out = [
        (t.replace("{v}", code), "access code (Tensor Trust)") for code in codes for t in templates
    ]
    defences = sorted(
        {r["pre_prompt"] + r["post_prompt"] for r in rows if r["access_code"] in codes}
    )
    out += [(text, "access-code defence (Tensor Trust)") for text in defences]
    return out


def negatives(data: Path, seed: int = 0, per_kind: int = 150) -> list[tuple[str, str]]:
    """``(sentence, kind)`` hard negatives."""
    rng = random.Random(seed)
    out = []
    for kind, templates in NEGATIVE_TEMPLATES.items():
        for _ in range(per_kind):
            value = _negative_values(kind, rng)
            out.append((rng.choice(templates).replace("{v}", value), kind))
    return out + _fixed_negatives() + tensortrust_negatives(data)


# --------------------------------------------------------------------------- detectors

Detect = Callable[[str], list[tuple[int, int]]]


def load_baseline(rev: str) -> ModuleType:
    """The recognizers module as it was at git revision ``rev``."""
    source = subprocess.run(
        ["git", "show", f"{rev}:{RECOGNIZERS_PATH}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "recognizers_baseline.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("recognizers_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def detector(find_all: Callable[[str], list[Any]], threshold: float) -> Detect:
    """Phone spans after `TextPII`'s overlap resolution, at ``threshold``."""
    from polyfuse.guard.detectors.pii import Candidate, resolve_overlaps

    def detect(text: str) -> list[tuple[int, int]]:
        cands = [Candidate.of_rule(m) for m in find_all(text)]
        kept = resolve_overlaps(cands)
        return [(c.start, c.end) for c in kept if c.type == "PHONE_NUMBER" and c.score >= threshold]

    return detect


def recall(detect: Detect, items: list[tuple[str, tuple[int, int], str]]) -> dict[str, list[int]]:
    """``{group: [found, total]}`` (and ``"all"``)."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for text, (s, e), group in items:
        hit = any(a < e and s < b for a, b in detect(text))
        for g in (group, "all"):
            out[g][0] += hit
            out[g][1] += 1
    return dict(out)


def false_positives(
    detect: Detect, items: list[tuple[str, str]], show: bool
) -> dict[str, list[int]]:
    """``{kind: [flagged, total]}`` (and ``"all"``)."""
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for text, kind in items:
        spans = detect(text)
        if spans and show:
            print(f"  FP [{kind}] {[text[a:b] for a, b in spans]} in {text[:100]!r}")
        for g in (kind, "all"):
            out[g][0] += bool(spans)
            out[g][1] += 1
    return dict(out)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints recall and false-positive tables, writes ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--baseline", default=BASELINE, help="git revision of 'before'")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--show", action="store_true", help="print misses and false positives")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT / "src"))
    from polyfuse.guard.detectors import recognizers
    from polyfuse.guard.policy import Policy

    policy = Policy.load()
    regions = policy.phone_regions
    threshold = policy.rule("PHONE_NUMBER", "text").threshold
    old = load_baseline(args.baseline)
    detectors = {
        "before": detector(old.find_all, threshold),
        "after": detector(lambda t: recognizers.find_all(t, phone_regions=regions), threshold),
    }
    pos = presidio_positives(args.data) + generated_positives()
    neg = negatives(args.data)
    print(f"policy pii.phone_regions: {', '.join(regions)}; threshold {threshold}")
    print(f"positives: {len(pos)} sentences; hard negatives: {len(neg)} sentences\n")

    results: dict[str, Any] = {}
    for name, detect in detectors.items():
        results[name] = {
            "recall": recall(detect, pos),
            "fp": false_positives(detect, neg, args.show and name == "after"),
        }
        if args.show and name == "after":
            for text, (s, e), group in pos:
                if not any(a < e and s < b for a, b in detect(text)):
                    print(f"  miss [{group}] {text[s:e]!r} in {text!r}")

    def row(label: str, key: str, group: str) -> str:
        cells = []
        for name in detectors:
            hit, total = results[name][key][group]
            cells.append(f"{hit / total:.3f} ({hit}/{total})")
        return f"| {label} | " + " | ".join(cells) + " |"

    print("| positives: recall | before | after |\n|---|---:|---:|")
    for group in sorted(results["after"]["recall"], key=lambda g: (g == "all", g)):
        print(row(group, "recall", group))
    print("\n| hard negatives: sentences flagged | before | after |\n|---|---:|---:|")
    for group in sorted(results["after"]["fp"], key=lambda g: (g == "all", g)):
        print(row(group, "fp", group))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
