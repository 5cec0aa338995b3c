"""Output scanning: latency added per caption and per search answer (issue 19).

The service's real pipeline in process (`create_app` -> `Service.aligned`: validation, the
input firewall, the answer, the output firewall), with the default policy and the real
text detectors (Presidio + spaCy NER + the validated recognizers), run twice on the same
answers side by side: ``outputs.enabled: false``, outputs scanned as by default
(identifiers and secrets), and with ``outputs.names: true`` (names and places too, by
spaCy NER). The
answers are Flickr8k dev data as the captioning and search routes return them: a caption
(one dev caption), and a search answer of ``k`` hits of an image index (id, image path
and the image's 5 captions each, the metadata ``polyfuse index`` stores). One answer in
``--pii-every`` carries an e-mail address and a card number, so the redaction path runs
too. The models are replaced by these fixed answers: what is timed is the pipeline
around them, and the difference between the two arms is what output scanning adds.
Each answer is timed in every arm back to back, the order rotating; "added" is an arm's
time minus the unscanned arm's on the same answer.

    python benchmarks/guard_outputs.py --data ../shared/data --answers 100 -k 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PII = " Contact jane.doe@example.com, card 4111 1111 1111 1111."


class FixedAnswers:
    """`AlignServices` as the service sees it, answering from a queue of fixed answers."""

    routes = ("search", "caption")

    def __init__(self) -> None:
        self.next: dict[str, Any] = {}

    def require(self, route: str) -> None:
        """Both routes are served."""

    def modalities(self, route: str) -> tuple[str, ...]:
        return ("image",) if route == "caption" else ("image", "text")

    def info(self) -> dict[str, Any]:
        return {"routes": list(self.routes)}

    async def search(self, inputs: Any, k: int) -> dict[str, Any]:
        return dict(self.next)

    async def caption(self, inputs: Any, beam: int) -> dict[str, Any]:
        return dict(self.next)

    def close(self) -> None:
        """Nothing to stop."""


class NoModel:
    """The classifier runtime `create_app` needs; these routes never call it."""

    modalities = ("text",)

    def info(self) -> dict[str, Any]:
        return {"name": "bench", "version": "1", "modalities": ["text"], "labels": []}

    def ready(self) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {}

    def live_monitor(self) -> None:
        return None

    async def close(self) -> None:
        return None


def answers(data: Path, n: int, k: int, every: int) -> tuple[list[Any], list[Any]]:
    """(caption answers, search answers) from Flickr8k dev."""
    dev = [json.loads(x) for x in (data / "flickr8k" / "dev.jsonl").read_text().splitlines()]
    captions, searches = [], []
    for i in range(n):
        item = dev[i % len(dev)]
        extra = PII if i % every == 0 else ""
        captions.append({"caption": item["captions"][0] + extra, "beam": 3})
        hits = []
        for j in range(k):
            hit = dev[(i * k + j) % len(dev)]
            path = f"/srv/flickr8k/{hit['image']}"
            texts = list(hit["captions"])
            if j == 0:
                texts[0] += extra
            hits.append({"id": path, "score": 0.5, "metadata": {"image": path, "text": texts}})
        searches.append({"query": "text", "searched": "image", "hits": hits})
    return captions, searches


def build(outputs: dict[str, Any]) -> tuple[Any, FixedAnswers]:
    from polyfuse.guard.detectors.pii import TextPII
    from polyfuse.guard.engine import Guard
    from polyfuse.guard.policy import DEFAULT_POLICY, Policy
    from polyfuse.serve.config import ServeConfig
    from polyfuse.serve.http.app import create_app

    policy = Policy.from_dict({**DEFAULT_POLICY, "outputs": outputs})
    guard = Guard(policy, text_detectors=[TextPII()])  # one Presidio for both arms
    align = FixedAnswers()
    app = create_app(NoModel(), ServeConfig(), guard=guard, align=align)  # type: ignore[arg-type]
    return app.state.service, align


async def timed(service: Any, align: FixedAnswers, route: str, answer: Any) -> float:
    from polyfuse.serve.http.service import Context

    align.next = answer
    inputs: dict[str, bytes | str] = {"text": "a dog"} if route == "search" else {"image": PNG}
    options = {"k": len(answer["hits"])} if route == "search" else {"beam": 3}
    t = time.perf_counter()
    out = await service.aligned(route, inputs, Context("bench", f"/v1/{route}"), **options)
    ms = (time.perf_counter() - t) * 1000
    if "example.com" in json.dumps(out) and service.scans_outputs:
        raise SystemExit("an e-mail address went out unredacted")
    return ms


#: A 1x1 PNG: the caption route's input (the input firewall's image scan is stubbed).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408"
    "d763f8ffff3f0005fe02fea7d6a4a40000000049454e44ae426082"
)


class NoImageFindings:
    """The input side's image scanner (OCR) left out: this times the output side."""

    def scan(self, data: bytes) -> list[Any]:
        return []


#: The arms timed side by side: no output scan, the default scan, and names too (NER).
ARMS: dict[str, dict[str, Any]] = {
    "off": {"enabled": False},
    "default": {},
    "names": {"names": True},
}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    arms = {name: build(outputs) for name, outputs in ARMS.items()}
    for service, _ in arms.values():
        service.guard._image = NoImageFindings()
        await service.warm_guard()
    captions, searches = answers(Path(args.data), args.answers, args.k, args.pii_every)
    results: dict[str, Any] = {}
    for route, items in (("caption", captions), ("search", searches)):
        for service, align in arms.values():
            await timed(service, align, route, items[0])  # first calls build caches
        ms: dict[str, list[float]] = {name: [] for name in arms}
        for i, answer in enumerate(items):
            order = list(arms)[i % len(arms) :] + list(arms)[: i % len(arms)]  # rotate
            for name in order:
                service, align = arms[name]
                ms[name].append(await timed(service, align, route, answer))
        base = ms["off"]
        results[route] = {
            "answers": len(items),
            "texts_per_answer": sum(1 for _ in _texts(items[0])),
            **{
                name: {
                    "p50_ms": statistics.median(values),
                    "p50_added_ms": statistics.median(
                        [v - b for v, b in zip(values, base, strict=True)]
                    ),
                    "p95_added_ms": statistics.quantiles(
                        [v - b for v, b in zip(values, base, strict=True)], n=20
                    )[-1],
                }
                for name, values in ms.items()
            },
        }
    for service, _ in arms.values():
        await service.close()
    return results


def _texts(answer: Any) -> Any:
    from polyfuse.guard.outputs import texts_of

    return texts_of(answer)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--answers", type=int, default=100, help="answers per route")
    parser.add_argument("-k", type=int, default=10, help="hits per search answer")
    parser.add_argument("--pii-every", type=int, default=10, help="one answer in N has PII")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print(
        f"{'route':<8} {'texts':>5} {'outputs':<8} {'p50':>8} {'added p50':>10} {'added p95':>10}"
    )
    for route, r in results.items():
        for name in ARMS:
            arm = r[name]
            print(
                f"{route:<8} {r['texts_per_answer']:>5} {name:<8} {arm['p50_ms']:>6.2f}ms "
                f"{arm['p50_added_ms']:>8.2f}ms {arm['p95_added_ms']:>8.2f}ms"
            )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
