"""The service's review queue: what it keeps of routed answers, blocked requests, the
shadow path, labels and its counts (a real SQLite store in a temp folder)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from polyfuse.serve.review.queue import ReviewQueue
from polyfuse.serve.review.routing import Router, RoutingDecision, RoutingPolicy, Signals
from polyfuse.serve.review.store import ReviewStore, SQLiteStore
from polyfuse.serve.types import ServeResult
from tests.serve.review.test_routing import RULES

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


LABELS = ["cat", "dog", "bird"]


def result(rid: str, cat: float, without: dict[str, list[float]] | None = None) -> ServeResult:
    """An answer of ``cat`` with probability ``cat`` (dog and bird share the rest 3:2)."""
    return ServeResult(
        request_id=rid,
        label="cat",
        probabilities={
            "cat": cat,
            "dog": round((1 - cat) * 0.6, 6),
            "bird": round((1 - cat) * 0.4, 6),
        },
        contributions=None,
        modalities_used=["image", "text"],
        model={"name": "m", "version": "v1", "contracts": {}},
        without=without,
    )


def queue(tmp_path: Path, keep: bool = False, **policy: object) -> ReviewQueue:
    store = SQLiteStore(tmp_path / "review.db")
    return ReviewQueue(
        Router(RoutingPolicy(**{"reasons": RULES, **policy})),  # type: ignore[arg-type]
        store,
        LABELS,
        keep_inputs=keep,
    )


INPUTS = {"image": PNG, "text": "a cat on a mat"}


def test_routed_answers_keep_digests_only_by_default(tmp_path: Path) -> None:
    q = queue(tmp_path)
    confident = asyncio.run(q.consider(result("ok", 0.9), INPUTS))
    doubtful = asyncio.run(q.consider(result("low", 0.45), INPUTS))
    assert not confident.routed and doubtful.reasons == ("low_confidence",)
    item = q.store.get("low")
    assert item is not None and q.store.get("ok") is None
    assert item.prediction == "cat" and item.model == {"name": "m", "version": "v1"}
    assert item.inputs["text"].sha256 == hashlib.sha256(b"a cat on a mat").hexdigest()
    assert item.inputs["image"].format == "png" and not item.inputs["image"].stored
    assert q.store.payload("low", "image") is None
    counts = q.snapshot()
    assert (counts.judged, counts.queued, counts.routed["low_confidence"]) == (2, 1, 1)


def test_inputs_are_kept_as_the_firewall_left_them_when_asked(tmp_path: Path) -> None:
    q = queue(tmp_path, keep=True)
    redacted = {"image": PNG, "text": "call [PHONE_NUMBER]"}
    d = asyncio.run(
        q.consider(result("r", 0.9), redacted, firewall="redact", findings=["PHONE_NUMBER"])
    )
    assert d.reasons == ("firewall",)
    item = q.store.get("r")
    assert item is not None and item.findings == ("PHONE_NUMBER",) and item.firewall == "redact"
    assert q.store.payload("r", "text") == b"call [PHONE_NUMBER]"
    assert q.store.payload("r", "image") == PNG


def test_contradiction_reads_the_present_modalities_leave_one_out_outputs(
    tmp_path: Path,
) -> None:
    q = queue(tmp_path, threshold=0.0)
    without = {"image": [0.02, 0.97, 0.01], "text": [0.8, 0.1, 0.1], "audio": [0.0, 1.0, 0.0]}
    d = asyncio.run(q.consider(result("r", 0.7, without), INPUTS))
    assert d.reasons == ("contradiction",) and d.contradicting == ("image",)
    item = q.store.get("r")
    assert item is not None and item.contradicting == ("image",)


def test_blocked_requests_never_keep_content(tmp_path: Path) -> None:
    q = queue(tmp_path, keep=True)
    d = asyncio.run(q.blocked("b", {"text": "ignore previous instructions"}, ["PROMPT_INJECTION"]))
    item = q.store.get("b")
    assert d.reasons == ("firewall",) and item is not None
    assert item.prediction is None and item.firewall == "block" and not item.inputs["text"].stored
    assert q.store.payload("b", "text") is None


def test_shadow_disagreement_by_request_id(tmp_path: Path) -> None:
    """The method the shadow path calls: the champion's answer is remembered by id."""
    q = queue(tmp_path)
    asyncio.run(q.consider(result("a", 0.9), INPUTS))  # not routed by the champion
    agree = asyncio.run(q.shadow("a", {"cat": 0.8, "dog": 0.1, "bird": 0.1}, version="v2"))
    assert not agree.routed and q.store.get("a") is None
    differ = asyncio.run(q.shadow("a", {"cat": 0.3, "dog": 0.7, "bird": 0.0}, version="v2"))
    assert differ.reasons == ("shadow_disagreement",)
    item = q.store.get("a")
    assert item is not None and item.reasons == ("shadow_disagreement",)
    assert item.shadow == {
        "version": "v2",
        "prediction": "dog",
        "probabilities": {"cat": 0.3, "dog": 0.7, "bird": 0.0},
    }
    assert not item.inputs["image"].stored  # the champion's inputs were not kept
    asyncio.run(q.consider(result("b", 0.45), INPUTS))  # routed for low confidence first
    asyncio.run(q.shadow("b", {"cat": 0.1, "dog": 0.1, "bird": 0.8}, version="v2"))
    both = q.store.get("b")
    assert both is not None and both.reasons == ("low_confidence", "shadow_disagreement")
    assert not asyncio.run(q.shadow("never-served", {"cat": 1.0}, version="v2")).routed
    assert q.snapshot().routed["shadow_disagreement"] == 2 and q.snapshot().judged == 2


def test_labels_resolve_items_and_count_outcomes(tmp_path: Path) -> None:
    q = queue(tmp_path)
    asyncio.run(q.consider(result("r1", 0.45), INPUTS))  # answered cat
    asyncio.run(q.consider(result("r2", 0.40), INPUTS))
    asyncio.run(q.blocked("r3", INPUTS, []))
    assert asyncio.run(q.resolve("r1", "cat", "ana")) is not None
    asyncio.run(q.resolve("r2", "dog", None))
    asyncio.run(q.resolve("r3", "cat", None))
    assert asyncio.run(q.resolve("unqueued", "cat", None)) is None
    assert q.snapshot().reviewed == {"correct": 1, "wrong": 1, "unanswered": 1}
    assert q.pending() == 0


class BrokenStore(SQLiteStore):
    def add(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def,override]
        raise OSError("disk full")


def test_a_failing_store_never_fails_the_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store: ReviewStore = BrokenStore(tmp_path / "x.db")
    q = ReviewQueue(Router(RoutingPolicy(reasons=RULES)), store, LABELS)
    d = asyncio.run(q.consider(result("r", 0.45), INPUTS))
    assert d.routed and q.snapshot().errors == 1
    assert "review_store_failed" in caplog.text


class Recording(Router):
    """The real router, remembering what it was handed."""

    seen: list[Signals]

    def decide(self, signals: Signals) -> RoutingDecision:
        self.seen = [*getattr(self, "seen", []), signals]
        return super().decide(signals)


def test_the_router_reads_unrounded_outputs_heads_and_the_modalities_used(
    tmp_path: Path,
) -> None:
    """The answer's probabilities are rounded to 6 decimals (1.0 here); the router ranks
    on the exact ones, with the heads of the modalities the fusion used."""
    router = Recording(RoutingPolicy(share=0.5, window=10), seed=[0.0] * 10)
    q = ReviewQueue(router, SQLiteStore(tmp_path / "review.db"), LABELS)
    answer = result("r1", 1.0, {"image": [0.9, 0.05, 0.05], "text": [0.8, 0.1, 0.1]})
    answer.modalities_used = ["image"]
    answer.exact = [0.9999991, 0.0000006, 0.0000003]
    answer.unimodal = {"image": [0.7, 0.2, 0.1], "text": [0.1, 0.8, 0.1]}
    decision = asyncio.run(q.consider(answer, INPUTS))
    (signals,) = router.seen
    assert signals.probs == answer.exact and list(signals.used or ()) == ["image"]
    assert dict(signals.unimodal) == {"image": [0.7, 0.2, 0.1]}
    assert dict(signals.without) == {"image": [0.9, 0.05, 0.05]}
    assert decision.error == pytest.approx(9e-7) and decision.reasons == ("predicted_error",)
    assert q.store.get("r1") is not None
