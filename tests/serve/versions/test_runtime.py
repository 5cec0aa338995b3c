"""`VersionedRuntime` over real tiny runtimes: shared stages, answers stamped with their
version, the shadow (never returned, bounded, compared), delayed labels per version,
automatic rollback on errors and on accuracy, and the operator's promotion."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import torch

from polyfuse.artifacts.classifier import load_artifact
from polyfuse.release.canary import CanarySettings
from polyfuse.serve.runtime.model import EncodeFn, ModelRuntime
from polyfuse.serve.runtime.settings import BatchSettings, RuntimeConfig
from polyfuse.serve.runtime.shared import SharedStages
from polyfuse.serve.types import ServeError, ServeRequest
from polyfuse.serve.versions.records import ShadowOutcome
from polyfuse.serve.versions.runtime import Version, VersionedRuntime, load_versions
from polyfuse.serve.versions.sources import VersionSource
from tests.serve.versions.trained import Models

T = TypeVar("T")
OPTIONS: dict[str, Any] = {
    "preprocess": "thread",
    "max_batch": 1,
    "trace": False,
    "autotune_budget_s": 0.1,
}


def config() -> RuntimeConfig:
    return RuntimeConfig(
        preprocess="thread", batching=BatchSettings(max_batch=1), trace=False, workers=1
    )


def run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(make())


def runtime(
    path: Path,
    shared: SharedStages | None,
    name: str,
    *,
    failing: bool = False,
    perturb: bool = False,
) -> ModelRuntime:
    """A runtime of ``path``: its encoders failing, or its fusion's weights moved."""
    artifact = load_artifact(path)
    if perturb:
        with torch.no_grad():
            for p in artifact.model.fusion.parameters():
                p.add_(0.5)

    down = [False]  # the encoders fail once set up (the warm-up must pass)

    def broken(fn: EncodeFn) -> EncodeFn:
        def maybe(items: list[torch.Tensor]) -> Any:
            if down[0]:
                raise RuntimeError("encoder down")
            return fn(items)

        return maybe

    wrappers = {m: broken for m in ("image", "text")} if failing else None
    rt = ModelRuntime(artifact, config(), shared=shared, name=name, encoder_wrappers=wrappers)
    rt.setup()
    down[0] = failing
    return rt


def version(rt: ModelRuntime, role: str, path: Path) -> Version:
    return Version(f"{path.name}-{role}", role, rt, VersionSource(str(path), path))  # type: ignore[arg-type]


def test_identical_stages_run_once_and_answer_as_alone(models: Models) -> None:
    """A candidate that differs in its fusion only shares both encoder stages (one batcher,
    one breaker, one set of cache entries) and still answers exactly as it does alone."""
    shared = SharedStages()
    a = runtime(models.champion, shared, "a")
    b = runtime(models.champion, shared, "b", perturb=True)
    alone = runtime(models.champion, None, "alone", perturb=True)

    async def go() -> tuple[Any, Any, Any, Any]:
        first = await a.predict(ServeRequest(models.inputs(0), "r1"))
        mine = await b.predict(ServeRequest(models.inputs(0), "r2"))
        reference = await alone.predict(ServeRequest(models.inputs(0), "r3"))
        for rt in (a, b, alone):
            await rt.close()
        await shared.close()
        return first, mine, reference, shared

    first, mine, reference, _ = run(go)
    assert set(shared.shared()) == set(a.info()["encoders"].values())
    assert all(users == ["a", "b"] for users in shared.shared().values())
    assert a.info()["encoders"] == b.info()["encoders"] == alone.info()["encoders"]
    assert b.stats()["encoders"]["image"].endswith("shared with a")
    assert sorted(mine.cache_hits) == ["image", "text"]  # a's entries served b
    assert first.cache_hits == []
    for label, p in reference.probabilities.items():
        assert mine.probabilities[label] == pytest.approx(p, abs=1e-5)
    assert mine.probabilities != first.probabilities  # its own fusion answered


def test_retrained_encoders_are_never_shared(models: Models) -> None:
    shared = SharedStages()
    a = runtime(models.champion, shared, "a")
    b = runtime(models.worse, shared, "b")
    assert shared.shared() == {}
    assert set(a.info()["encoders"].values()).isdisjoint(b.info()["encoders"].values())

    async def close() -> None:
        await a.close()
        await b.close()
        await shared.close()

    run(close)


def test_load_versions_names_and_checks_versions(models: Models) -> None:
    versions = load_versions(
        VersionSource(str(models.champion), models.champion),
        canary=VersionSource(str(models.champion), models.champion),  # an A/A canary
        weight=0.5,
        **OPTIONS,
    )
    try:
        names = [v.name for v in versions.versions]
        assert names[0].startswith("champion-") and len(names[0]) == len("champion-") + 8
        assert names[1] == f"{names[0]}-canary"
        assert versions.info()["versions"] == {names[0]: "champion", names[1]: "canary"}
        assert len(versions.state()["shared_stages"]) == 2
    finally:
        run(versions.close)


def test_errors_roll_the_canary_back_and_every_answer_names_its_version(
    models: Models,
) -> None:
    shared = SharedStages()
    champion = version(runtime(models.champion, shared, "a"), "champion", models.champion)
    canary = version(runtime(models.worse, shared, "b", failing=True), "canary", models.worse)
    versions = VersionedRuntime(
        champion,
        canary=canary,
        weight=0.5,
        settings=CanarySettings(min_samples=10),
        shared=shared,
    )

    async def go() -> list[str]:
        served = []
        for i in range(120):
            request = ServeRequest(models.inputs(i), f"r{i}", route_key=f"user-{i % 30}")
            try:
                result = await versions.predict(request)
                served.append(str(result.version))
            except ServeError as err:
                assert err.code == "unavailable" and err.details["version"] == canary.name
                served.append("failed")
        await versions.close()
        return served

    served = run(go)
    assert versions.rolled_back and versions.weight == 0.0
    decision = versions.decisions[0]
    assert (decision.action, decision.by, decision.signals) == ("rollback", "judge", ("errors",))
    errors = decision.judgement["signals"]["errors"]
    assert errors["canary"]["mean"] == 1.0 and errors["champion"]["mean"] == 0.0
    last = max(i for i, s in enumerate(served) if s == "failed")
    assert last < 100  # within a bounded number of requests; the champion answers after
    assert set(served[last + 1 :]) == {champion.name}
    assert canary.ledger.errors == {"unavailable": canary.ledger.requests}


def test_worse_accuracy_from_delayed_labels_rolls_back(models: Models) -> None:
    shared = SharedStages()
    champion = version(runtime(models.champion, shared, "a"), "champion", models.champion)
    canary = version(runtime(models.worse, shared, "b"), "canary", models.worse)
    settings = CanarySettings.parse(
        {
            "min_samples": 15,
            "signals": {s: {"enabled": False} for s in ("latency", "slow", "estimated_accuracy")},
        }
    )
    versions = VersionedRuntime(
        champion, canary=canary, weight=0.5, settings=settings, shared=shared
    )

    async def go() -> int:
        for i in range(400):
            request = ServeRequest(models.inputs(i), f"r{i}", route_key=f"user-{i % 40}")
            await versions.predict(request)
            versions.feedback(f"r{i}", models.label(i), 0)
            if versions.rolled_back:
                break
        await versions.close()
        return i

    stopped = run(go)
    assert versions.rolled_back and stopped < 399
    assert versions.decisions[0].signals == ("accuracy",)
    assert champion.ledger.accuracy is not None and canary.ledger.accuracy is not None
    assert champion.ledger.accuracy > canary.ledger.accuracy
    assert versions.feedback("never-served", "c0", 0) == "unknown"


def test_the_shadow_answers_a_copy_and_is_never_returned(models: Models) -> None:
    shared = SharedStages()
    champion = version(runtime(models.champion, shared, "a"), "champion", models.champion)
    shadow = version(runtime(models.worse, shared, "b"), "shadow", models.worse)
    versions = VersionedRuntime(champion, shadow=shadow, shared=shared)
    seen: list[ShadowOutcome] = []

    async def hook(outcome: ShadowOutcome) -> None:
        seen.append(outcome)

    versions.on_shadow.append(hook)

    async def go() -> list[Any]:
        results = []
        for i in range(30):
            request = ServeRequest(models.inputs(i), f"r{i}")
            result = await versions.predict(request)
            versions.mirror(request, result)
            results.append(result)
        await versions.runner.drain()
        await versions.close()
        return results

    results = run(go)
    assert {(r.version, r.role) for r in results} == {(champion.name, "champion")}
    assert shadow.ledger.compared == 30 == len(seen)
    assert 0.0 <= shadow.ledger.agreed < 30  # shuffled labels disagree somewhere
    assert {o.version for o in seen} == {shadow.name}
    record = seen[0].to_record()
    assert record["route"] == "shadow" and record["champion"] == champion.name
    assert "prediction" in record and "image" not in record
    assert versions.feedback("r3", models.label(3), 0) == "correct"
    assert shadow.ledger.feedback["correct"] + shadow.ledger.feedback["wrong"] == 1


def test_promotion_needs_evidence_or_force(models: Models) -> None:
    shared = SharedStages()
    champion = version(runtime(models.worse, shared, "a"), "champion", models.worse)
    canary = version(runtime(models.champion, shared, "b"), "canary", models.champion)
    versions = VersionedRuntime(champion, canary=canary, weight=0.5, shared=shared)

    async def go() -> None:
        with pytest.raises(ServeError) as info:
            await versions.promote()
        assert info.value.code == "invalid_input" and "force" in (info.value.hint or "")
        decision = await versions.promote(force=True)
        assert decision.action == "promote" and decision.registry is None
        result = await versions.predict(ServeRequest(models.inputs(0), "r0"))
        assert (result.version, result.role) == (canary.name, "champion")
        with pytest.raises(ServeError):
            versions.rollback()  # no canary any more
        await versions.close()

    run(go)
    assert [v.role for v in versions.versions] == ["previous", "champion"]
