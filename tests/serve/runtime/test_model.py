"""ModelRuntime over a real tiny trained artifact (image + text, gated fusion)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import torch

from polyfuse.artifacts.classifier import Artifact
from polyfuse.core.errors import ConfigError
from polyfuse.serve.runtime.breaker import BreakerState
from polyfuse.serve.runtime.model import (
    BatchSettings,
    EncodeFn,
    ModelRuntime,
    RuntimeConfig,
)
from polyfuse.serve.types import Runtime, ServeError, ServeRequest, ServeResult
from tests.serve.conftest import CONFIG


class Switch:
    """An encoder wrapper that fails, or blocks until released, on demand."""

    def __init__(self) -> None:
        self.fail = False
        self.block = False
        self.entered = threading.Event()
        self.gate = threading.Event()

    def __call__(self, fn: EncodeFn) -> EncodeFn:
        def wrapped(items: list[torch.Tensor]) -> list[Any]:
            self.entered.set()
            if self.block:
                self.gate.wait(10)
            if self.fail:
                raise RuntimeError("injected encoder failure")
            return fn(items)

        return wrapped


def make(
    artifact: Artifact, wrappers: dict[str, Switch] | None = None, **options: Any
) -> ModelRuntime:
    options.setdefault("batching", BatchSettings(max_batch=4, max_wait_ms=1))
    options.setdefault("preprocess", "thread")
    rt = ModelRuntime(artifact, RuntimeConfig(**options), encoder_wrappers=wrappers)
    rt.setup()
    return rt


def run(rt: ModelRuntime, body: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def go() -> Any:
        try:
            return await body()
        finally:
            await rt.close()

    return asyncio.run(go())


def req(i: int = 0, **inputs: bytes | str) -> ServeRequest:
    return ServeRequest(inputs=inputs, request_id=f"r{i}")


def test_predicts_with_both_modalities_and_reports_everything(
    artifact: Artifact, png: bytes
) -> None:
    rt = make(artifact)
    assert isinstance(rt, Runtime) and rt.ready()
    res: ServeResult = run(rt, lambda: rt.predict(req(1, image=png, text="red apple number 0")))
    assert res.request_id == "r1" and res.label in {"c0", "c1", "c2"}
    assert sum(res.probabilities.values()) == pytest.approx(1, abs=1e-4)
    assert res.modalities_used == ["image", "text"] and not res.degraded
    assert res.contributions is not None and set(res.contributions) == {"image", "text"}
    assert res.model["contracts"] == {"image": 1, "text": 1} and res.model["version"]
    assert {"preprocess:image", "encode:text", "fuse", "total"} <= set(res.timings_ms)
    assert res.to_dict()["prediction"]["label"] == res.label


def test_matches_the_offline_predictor(artifact: Artifact, png: bytes) -> None:
    from polyfuse.inference.predict import Predictor

    offline = Predictor(artifact, device="cpu").predict({"image": png, "text": "blue sky"})
    rt = make(artifact)
    res = run(rt, lambda: rt.predict(req(image=png, text="blue sky")))
    assert res.label == offline.label
    for lab, p in offline.probabilities.items():
        assert res.probabilities[lab] == pytest.approx(p, abs=1e-4)


def test_a_missing_modality_is_not_degraded(artifact: Artifact) -> None:
    rt = make(artifact)
    res = run(rt, lambda: rt.predict(req(text="green leaf")))
    assert res.modalities_used == ["text"] and not res.degraded
    assert res.contributions is not None and res.contributions["image"] == 0.0


def test_concurrent_requests_share_batches(artifact: Artifact) -> None:
    # a long wait: the batch goes when all 8 are queued (as soon as it is full)
    rt = make(artifact, cache="none", batching=BatchSettings(max_batch=8, max_wait_ms=5000))

    async def body() -> list[ServeResult]:
        texts = [f"red apple number {i}" for i in range(8)]
        return list(
            await asyncio.gather(*(rt.predict(req(i, text=t)) for i, t in enumerate(texts)))
        )

    results = run(rt, body)
    assert [r.request_id for r in results] == [f"r{i}" for i in range(8)]
    sizes = rt.stats()["batchers"]["text"]["batch_sizes"]
    assert sizes == {8: 1}


def test_a_failing_encoder_degrades_then_opens_and_recovers(artifact: Artifact, png: bytes) -> None:
    image = Switch()
    rt = make(artifact, {"image": image}, cache="none", breaker_failures=2, breaker_reset_s=60)
    image.fail = True

    async def body() -> list[ServeResult]:
        out = [await rt.predict(req(i, image=png, text="red apple")) for i in range(3)]
        image.fail = False
        rt.breaker("image").reset_timeout = 0  # the timeout has passed: a trial goes through
        out.append(await rt.predict(req(3, image=png, text="red apple")))
        return out

    results = run(rt, body)
    assert [r.degraded_reasons for r in results] == [
        {"image": "error"},
        {"image": "error"},
        {"image": "breaker_open"},
        {},
    ]
    assert all(r.modalities_used == ["text"] for r in results[:3])
    assert results[3].modalities_used == ["image", "text"] and not results[3].degraded
    assert rt.breaker("image").state is BreakerState.CLOSED
    assert rt.stats()["breakers"]["image"]["opens"] == 1


def test_refuse_policy_and_all_failed_answer_unavailable(artifact: Artifact, png: bytes) -> None:
    image = Switch()
    rt = make(artifact, {"image": image}, cache="none", degraded="refuse")
    image.fail = True

    async def body() -> tuple[ServeError, ServeError]:
        with pytest.raises(ServeError) as refused:
            await rt.predict(req(image=png, text="red apple"))
        with pytest.raises(ServeError) as nothing_left:
            await rt.predict(req(image=png))
        return refused.value, nothing_left.value

    refused, nothing_left = run(rt, body)
    assert refused.code == "unavailable" and refused.details == {"reasons": {"image": "error"}}
    assert nothing_left.code == "unavailable" and "every given modality" in nothing_left.message


def test_repeated_content_comes_from_the_cache(artifact: Artifact, png: bytes) -> None:
    rt = make(artifact)

    async def body() -> tuple[ServeResult, ServeResult]:
        first = await rt.predict(req(1, image=png, text="gold ring"))
        return first, await rt.predict(req(2, image=png, text="gold ring"))

    first, second = run(rt, body)
    assert first.cache_hits == [] and second.cache_hits == ["image", "text"]
    assert second.probabilities == first.probabilities
    assert "encode:image" not in second.timings_ms
    assert rt.stats()["cache"]["hit_ratio"] == pytest.approx(0.5)


def test_a_full_queue_answers_overloaded(artifact: Artifact) -> None:
    text = Switch()
    rt = make(
        artifact, {"text": text}, cache="none", queue_size=1, batching=BatchSettings(max_batch=1)
    )
    text.entered.clear()  # set by the warm-up in make(); wait for the first request's call
    text.block = True

    async def body() -> ServeError:
        first = asyncio.create_task(rt.predict(req(1, text="red apple")))
        assert await asyncio.to_thread(text.entered.wait, 10), "the encoder was never called"
        second = asyncio.create_task(rt.predict(req(2, text="blue sky")))
        for _ in range(10_000):  # at most ~10 s: fail, never hang
            if rt.stats()["batchers"]["text"]["queue_depth"] >= 1:
                break
            await asyncio.sleep(0.001)
        else:
            text.gate.set()
            raise AssertionError("the second request never reached the queue")
        with pytest.raises(ServeError) as info:
            await rt.predict(req(3, text="gold ring"))
        text.gate.set()
        await asyncio.gather(first, second)
        return info.value

    err = run(rt, body)
    assert err.code == "overloaded" and err.retry_after is not None
    assert rt.breaker("text").state is BreakerState.CLOSED  # a full queue is not a failure


def test_deadlines(artifact: Artifact) -> None:
    text = Switch()
    rt = make(artifact, {"text": text}, cache="none")
    text.block = True

    async def body() -> tuple[ServeError, ServeError]:
        with pytest.raises(ServeError) as past:
            await rt.predict(ServeRequest({"text": "x y"}, "late", deadline=time.monotonic()))
        soon = time.monotonic() + 0.05
        with pytest.raises(ServeError) as during:
            await rt.predict(ServeRequest({"text": "red apple"}, "slow", deadline=soon))
        text.gate.set()
        return past.value, during.value

    past, during = run(rt, body)
    assert past.code == during.code == "deadline_exceeded" and during.status == 504
    assert rt.breaker("text").state is BreakerState.CLOSED


@pytest.mark.parametrize(
    ("inputs", "modalities", "match"),
    [
        ({"imagee": b"x"}, None, "no modality 'imagee'"),
        ({"image": "img0.png"}, None, "must be sent as file bytes"),
        ({"image": b"not an image at all"}, None, "image"),
        ({"text": "red"}, ("image",), "none of the requested modalities"),
    ],
)
def test_bad_requests_are_invalid_input(
    artifact: Artifact, inputs: dict[str, Any], modalities: tuple[str, ...] | None, match: str
) -> None:
    rt = make(artifact)
    with pytest.raises(ServeError, match=match) as info:
        run(rt, lambda: rt.predict(ServeRequest(inputs, "bad", modalities=modalities)))
    assert info.value.code == "invalid_input"


def test_embed_returns_pooled_vectors_in_the_shared_space(artifact: Artifact, png: bytes) -> None:
    rt = make(artifact)
    out = run(rt, lambda: rt.embed(req(image=png, text="red apple")))
    assert set(out) == {"image", "text"}
    assert len(out["image"]) == len(out["text"]) == CONFIG["model"]["dim"]


def test_process_pool_and_autotune_from_an_artifact_folder(
    trained: tuple[Path, Path], png: bytes
) -> None:
    rt = ModelRuntime.load(
        trained[0], preprocess="process", workers=1, max_batch="auto", autotune_budget_s=0.5
    )
    res = run(rt, lambda: rt.predict(req(image=png, text="grey stone")))
    assert res.modalities_used == ["image", "text"]
    tuned = rt.stats()["autotune"]
    assert set(tuned) == {"image", "text"} and all(t["max_batch"] >= 1 for t in tuned.values())
    assert rt.info()["name"] == "art" and rt.info()["labels"] == ["c0", "c1", "c2"]


def test_bad_options_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"serve\.degradd"):
        RuntimeConfig.from_options(degradd="allow")
    with pytest.raises(ConfigError, match=r"serve\.degraded"):
        RuntimeConfig.from_options(degraded="maybe")
    with pytest.raises(ConfigError, match=r"serve\.batching\.max_batch"):
        RuntimeConfig.from_options(batching=BatchSettings(max_batch=0))


@pytest.fixture(scope="module")
def token_artifact(tmp_path_factory: pytest.TempPathFactory) -> Artifact:
    """The image + text artifact with cross-attention over token sequences."""
    from polyfuse.artifacts.classifier import load_artifact
    from tests.serve.conftest import train_tiny

    config = {**CONFIG, "model": {**CONFIG["model"], "fusion": "cross_attention"}}
    folder, _ = train_tiny(tmp_path_factory.mktemp("tokens"), config, n=12)
    return load_artifact(folder)


@pytest.mark.parametrize("which", ["gated", "cross_attention"])
def test_batched_fusion_equals_one_request_at_a_time(
    which: str, artifact: Artifact, token_artifact: Artifact, png: bytes
) -> None:
    """Requests fused together (different modalities present, text of different token
    lengths) get the answer each gets alone."""
    art = artifact if which == "gated" else token_artifact
    texts = ["red", "a much longer sentence about a blue sky over the sea", None, "green leaf"]
    images = [png, None, png, png]
    requests = [
        req(i, **{k: v for k, v in (("image", im), ("text", t)) if v is not None})
        for i, (im, t) in enumerate(zip(images, texts, strict=True))
    ]
    alone = make(art, cache="none", batching=BatchSettings(max_batch=1))

    async def one_by_one() -> list[ServeResult]:
        return [await alone.predict(r) for r in requests]

    expected = run(alone, one_by_one)
    together = make(art, cache="none", batching=BatchSettings(max_batch=8, max_wait_ms=5000))

    async def all_at_once() -> list[ServeResult]:
        return list(await asyncio.gather(*(together.predict(r) for r in requests)))

    results = run(together, all_at_once)
    sizes = together.stats()["fusion"]["batch_sizes"]
    assert sum(k * v for k, v in sizes.items()) == 4 and max(sizes) >= 2  # fused together
    assert alone.stats()["fusion"]["batch_sizes"] == {1: 4}
    for got, want in zip(results, expected, strict=True):
        assert got.modalities_used == want.modalities_used
        assert got.label == want.label
        for lab, p in want.probabilities.items():
            assert got.probabilities[lab] == pytest.approx(p, abs=1e-5)
        if want.contributions is not None:
            assert got.contributions == pytest.approx(want.contributions, abs=1e-5)


def test_serving_threads_divide_the_cores_among_the_encoders() -> None:
    from polyfuse.serve.runtime.settings import serving_threads

    assert serving_threads(2, cpus=2) == 1
    assert serving_threads(1, cpus=2) == 2
    assert serving_threads(3, cpus=16) == 5
    assert serving_threads(4, cpus=1) == 1
    assert serving_threads(0, cpus=4) == 4


def test_torch_threads_option_is_applied_and_checked(artifact: Artifact) -> None:
    before = torch.get_num_threads()
    try:
        rt = make(artifact, torch_threads=1)
        assert torch.get_num_threads() == 1
        run(rt, lambda: rt.predict(req(text="red apple")))
    finally:
        torch.set_num_threads(before)
    rt = make(artifact)  # the library default leaves torch alone
    assert torch.get_num_threads() == before
    run(rt, lambda: rt.predict(req(text="red apple")))
    with pytest.raises(ConfigError, match="torch_threads"):
        RuntimeConfig(torch_threads=0).check()


def test_process_pool_preprocessing_batches_and_keeps_bad_inputs_apart(
    artifact: Artifact, png: bytes
) -> None:
    """Inputs queued together go to the pool in one batch; a broken image in the batch
    fails only its own request."""
    rt = make(artifact, preprocess="process", workers=2, cache="none")

    async def body() -> list[Any]:
        requests = [rt.predict(req(i, image=png, text=f"red {i}")) for i in range(6)]
        requests.append(rt.predict(req(9, image=b"\x89PNG broken", text="x")))
        return list(await asyncio.gather(*requests, return_exceptions=True))

    results = run(rt, body)
    assert all(isinstance(r, ServeResult) for r in results[:6])
    assert isinstance(results[6], ServeError) and results[6].code == "invalid_input"
    sizes = rt.stats()["preprocess"]["image"]["batch_sizes"]
    assert sum(k * v for k, v in sizes.items()) == 7 and max(sizes) >= 2


def test_auto_preprocesses_a_lone_input_here_and_a_batch_in_the_pool(
    artifact: Artifact, png: bytes
) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from polyfuse.serve.runtime.preprocess import worker_init

    sizes: list[int] = []

    class RecordingPool(ProcessPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            sizes.append(len(args[1]))  # preprocess_many_in_worker(payload, values)
            return super().submit(fn, *args, **kwargs)

    rt = make(artifact, preprocess="auto", workers=1)
    spawn = multiprocessing.get_context("spawn")
    pool = RecordingPool(1, mp_context=spawn, initializer=worker_init)
    try:
        rt._pool = pool
        pre = rt._make_preprocessor("image")
        lone = pre.fn([png])
        several = pre.fn([png, png, b"not an image"])
        assert sizes == [3]  # the lone input never went to the pool
        assert lone[0].array is not None and several[0].array is not None
        assert several[2].array is None and several[2].error  # unreadable, answered as such
        assert (lone[0].array == several[1].array).all()  # the same preprocessing either way
    finally:
        pool.shutdown()
        asyncio.run(rt.close())
