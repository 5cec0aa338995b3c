"""`ReviewQueue`: the service's side of human review.

Per answered request the service hands the queue the answer and what the firewall did
(`ReviewQueue.consider`); a blocked request is handed over without an answer
(`ReviewQueue.blocked`); a shadow version's answer is compared by request id
(`ReviewQueue.shadow`); a reviewer's label resolves the item (`ReviewQueue.resolve`). The
`Router` decides, the `ReviewStore` keeps the routed items, and the queue counts what the
metrics export (`ReviewCounts`). Store calls run on a worker thread: SQLite and Redis
block.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from polyfuse.serve.review.routing import REASONS, Router, RoutingDecision, Signals
from polyfuse.serve.review.store import ReviewItem, ReviewStore, StoredInput
from polyfuse.serve.types import ServeResult

log = logging.getLogger("polyfuse.serve.review")

#: Outcomes of a reviewer's label, as the reviewed counter names them.
OUTCOMES = ("correct", "wrong", "unanswered")


@dataclass
class ReviewCounts:
    """What the queue has done since the service started (the metrics read it).

    Attributes:
        judged: answers (and blocked requests) the router judged.
        routed: reason -> answers routed for it (an answer with two reasons counts twice).
        queued: answers routed for any reason.
        reviewed: outcome -> labels given to queued items (`OUTCOMES`).
        errors: store calls that failed (the answer went out unqueued).
    """

    judged: int = 0
    routed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    queued: int = 0
    reviewed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    errors: int = 0


def describe_input(value: bytes | str, stored: bool) -> StoredInput:
    """Digest, size and format of one input (what the queue may always keep)."""
    from polyfuse.modalities.readers.formats import sniff

    data = value.encode("utf-8") if isinstance(value, str) else value
    fmt = "text" if isinstance(value, str) else sniff(data[:64])
    return StoredInput(hashlib.sha256(data).hexdigest(), len(data), fmt, stored)


def outcome_of(item: ReviewItem, label: Any) -> str:
    """``correct``, ``wrong`` or ``unanswered`` (the item had no answer)."""
    if item.prediction is None:
        return "unanswered"
    if isinstance(item.prediction, list):
        same = sorted(map(str, item.prediction)) == sorted(map(str, label))
    else:
        same = str(item.prediction) == str(label)
    return "correct" if same else "wrong"


class ReviewQueue:
    """Routes answers to a `ReviewStore` (see the module docstring).

    Args:
        router: the routing rules.
        store: where routed items wait.
        labels: the model's labels (the order of its probabilities).
        keep_inputs: store the inputs as the firewall left them (never for blocked
            requests); else only their digests.
        remember: recent answers kept in memory for the shadow path (`shadow`).
    """

    def __init__(
        self,
        router: Router,
        store: ReviewStore,
        labels: Sequence[str],
        *,
        keep_inputs: bool = False,
        remember: int = 10_000,
    ) -> None:
        self.router = router
        self.store = store
        self.labels = [str(x) for x in labels]
        self.keep_inputs = keep_inputs
        self.counts = ReviewCounts()
        self._recent: OrderedDict[str, ReviewItem] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()

    # ---- routing ---------------------------------------------------------------
    async def consider(
        self,
        result: ServeResult,
        inputs: Mapping[str, bytes | str],
        *,
        firewall: str = "allow",
        findings: Sequence[str] = (),
    ) -> RoutingDecision:
        """Judge one answer; queue it when routed. ``inputs`` are as the firewall left
        them. Never raises: a failing store is logged and counted."""
        probs = result.exact or [float(result.probabilities.get(lab, 0.0)) for lab in self.labels]
        used = result.modalities_used
        without = {m: p for m, p in (result.without or {}).items() if m in used}
        heads = {m: p for m, p in (result.unimodal or {}).items() if m in used}
        decision = self.router.decide(Signals(probs, without, firewall, heads, used))
        draft = ReviewItem(
            request_id=result.request_id,
            created=time.time(),
            reasons=decision.reasons,
            model={k: str(result.model[k]) for k in ("name", "version") if k in result.model},
            prediction=result.label,
            probabilities=dict(result.probabilities),
            confidence=decision.confidence,
            inputs={m: describe_input(v, self.keep_inputs) for m, v in inputs.items()},
            firewall=firewall,
            findings=tuple(sorted(set(findings))),
            contradicting=decision.contradicting,
        )
        self._remember_answer(draft)
        payloads = dict(_payloads(inputs)) if self.keep_inputs else {}
        await self._queue(decision, draft, payloads)
        return decision

    async def blocked(
        self, request_id: str, inputs: Mapping[str, bytes | str], findings: Sequence[str]
    ) -> RoutingDecision:
        """Queue a request the firewall blocked (no answer; digests only, whatever
        ``keep_inputs`` says: the policy refused the content)."""
        reasons = ("firewall",) if self.router.policy.uses("firewall") else ()
        decision = RoutingDecision(reasons)
        draft = ReviewItem(
            request_id=request_id,
            created=time.time(),
            reasons=reasons,
            inputs={m: describe_input(v, False) for m, v in inputs.items()},
            firewall="block",
            findings=tuple(sorted(set(findings))),
        )
        await self._queue(decision, draft, {})
        return decision

    async def shadow(
        self,
        request_id: str,
        probabilities: Mapping[str, float],
        *,
        version: str,
        inputs: Mapping[str, bytes | str] | None = None,
    ) -> RoutingDecision:
        """The shadow path's call: a shadow version (``version``) answered the request
        ``request_id`` with ``probabilities`` (label -> probability). When its answer
        differs from the champion's, the request is queued with reason
        ``shadow_disagreement`` (added to an item already queued for other reasons).
        ``inputs``: the request's inputs as the firewall left them, stored when the
        queue keeps inputs and the champion's answer was not queued with them already.
        An unknown or forgotten request id is not routed."""
        with self._lock:
            champion = self._recent.get(request_id)
        if champion is None or not self.router.policy.uses("shadow_disagreement"):
            return RoutingDecision(())
        theirs = [float(probabilities.get(lab, 0.0)) for lab in self.labels]
        mine = [float(champion.probabilities.get(lab, 0.0)) for lab in self.labels]
        if not self.router.disagree(mine, theirs):
            return RoutingDecision((), champion.confidence)
        shadow = {
            "version": version,
            "prediction": self._answer(theirs),
            "probabilities": {lab: round(p, 6) for lab, p in zip(self.labels, theirs, strict=True)},
        }
        decision = RoutingDecision(("shadow_disagreement",), champion.confidence)
        keep = self.keep_inputs and inputs is not None
        draft = replace(
            champion,
            created=time.time(),
            reasons=decision.reasons,
            shadow=shadow,
            inputs={m: describe_input(v, True) for m, v in (inputs or {}).items()}
            if keep
            else {m: replace(i, stored=False) for m, i in champion.inputs.items()},
        )
        await self._queue(decision, draft, dict(_payloads(inputs or {})) if keep else {})
        return decision

    def _answer(self, probs: Sequence[float]) -> Any:
        outputs = self.router.confidences.outputs
        import numpy as np

        said = outputs.predicted(np.asarray([probs], dtype=np.float64))[0]
        if outputs.multilabel:
            return [lab for lab, on in zip(self.labels, said, strict=True) if on]
        return self.labels[int(said)]

    def _remember_answer(self, draft: ReviewItem) -> None:
        with self._lock:
            self._recent[draft.request_id] = draft
            while len(self._recent) > self._remember:
                self._recent.popitem(last=False)

    async def _queue(
        self, decision: RoutingDecision, draft: ReviewItem, payloads: dict[str, bytes]
    ) -> None:
        with self._lock:
            if "shadow_disagreement" not in decision.reasons:
                self.counts.judged += 1
            for r in decision.reasons:
                self.counts.routed[r] += 1
            self.counts.queued += int(decision.routed)
        if not decision.routed:
            return
        try:
            await asyncio.to_thread(self.store.add, draft, payloads)
        except Exception:
            with self._lock:
                self.counts.errors += 1
            event = {"event": "review_store_failed", "request_id": draft.request_id}
            log.exception(json.dumps(event))

    # ---- labels ----------------------------------------------------------------
    async def resolve(self, request_id: str, label: Any, reviewer: str | None) -> ReviewItem | None:
        """A reviewer's label for a queued request (None: the request was not queued).
        Store failures raise (the caller answers an error: the label was not kept)."""
        item = await asyncio.to_thread(self.store.resolve, request_id, label, reviewer)
        if item is not None:
            with self._lock:
                self.counts.reviewed[outcome_of(item, label)] += 1
        return item

    def pending(self) -> int | None:
        """Items waiting in the store (None when the store cannot be read)."""
        try:
            return self.store.count("pending")
        except Exception:
            log.exception(json.dumps({"event": "review_store_failed", "call": "count"}))
            return None

    def snapshot(self) -> ReviewCounts:
        """A copy of the counts."""
        with self._lock:
            return ReviewCounts(
                self.counts.judged,
                dict(self.counts.routed),
                self.counts.queued,
                dict(self.counts.reviewed),
                self.counts.errors,
            )

    def close(self) -> None:
        """Close the store."""
        self.store.close()


def _payloads(inputs: Mapping[str, bytes | str]) -> dict[str, bytes]:
    return {m: v.encode("utf-8") if isinstance(v, str) else bytes(v) for m, v in inputs.items()}
