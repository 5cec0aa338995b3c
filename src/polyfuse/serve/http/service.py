"""`Service`: one request's pipeline (validate -> firewall -> runtime -> result), the
request log and the firewall's verdicts, shared by the REST and OIP routes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from polyfuse.core.errors import PolyfuseError
from polyfuse.guard.findings import ACTIONS, Action
from polyfuse.serve.config import ServeConfig
from polyfuse.serve.http.metrics import (
    Metrics,
    RequestLog,
    Timed,
    Tracer,
    digest,
    embedding_summary,
)
from polyfuse.serve.http.outputs import LabelNames, scrub
from polyfuse.serve.runtime.align import AlignServices, not_served
from polyfuse.serve.types import Runtime, ServeError, ServeRequest, ServeResult

if TYPE_CHECKING:  # the guard is imported only when a policy is set
    from polyfuse.guard.engine import Guard, ScanResult
    from polyfuse.guard.outputs import OutputScan
    from polyfuse.serve.review.queue import ReviewQueue
    from polyfuse.serve.versions.records import ShadowOutcome
    from polyfuse.serve.versions.runtime import VersionedRuntime


log = logging.getLogger("polyfuse.serve")
T = TypeVar("T")
Inputs = dict[str, bytes | str]


# ------------------------------------------------------------------ pipeline
@dataclass
class Context:
    """What one request carries through the pipeline."""

    request_id: str
    route: str
    deadline: float | None = None
    modalities: tuple[str, ...] | None = None
    key_id: str | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)
    route_key: str | None = None
    explain: tuple[str, ...] = ()


@dataclass
class Screened:
    """Inputs after the firewall: possibly redacted, with the masked findings."""

    inputs: Inputs
    action: Action
    findings: list[dict[str, Any]]


class Service:
    """The pipeline behind the routes: validate -> firewall -> runtime.

    Args:
        runtime: the model runtime.
        config: limits and options.
        guard: the firewall (`polyfuse.guard.engine.Guard`), or None for none.
        metrics: where to count.
        tracer: spans per stage.
        request_log: the JSONL request log, or None.
        align: search, consistency and captioning artifacts, or None.
        review: the human-review queue (`polyfuse.serve.review.queue`), or None.
        versions: the runtime when it serves several versions (it is then ``runtime``
            too): answered requests are copied to its shadow, and the shadow's answers
            go to the request log and human review.
    """

    def __init__(
        self,
        runtime: Runtime,
        config: ServeConfig,
        *,
        guard: Guard | None = None,
        metrics: Metrics,
        tracer: Tracer,
        request_log: RequestLog | None = None,
        align: AlignServices | None = None,
        review: ReviewQueue | None = None,
        versions: VersionedRuntime | None = None,
    ) -> None:
        self.runtime = runtime
        self.versions = versions
        if versions is not None:
            versions.on_shadow.append(self._shadow_answered)
        self.review = review
        self.align = align
        self.config = config
        self.guard = guard
        self.metrics = metrics
        self.tracer = tracer
        self.request_log = request_log
        self.guard_pool = ThreadPoolExecutor(config.guard_threads, thread_name_prefix="guard")
        self.guard_ready = guard is None
        self._sync_method: Any = None  # the sync estimator, made at the first video
        #: The public names of the model's labels (scanned once), when outputs are scanned.
        self.label_names: LabelNames | None = None

    # -- stages -----------------------------------------------------------------------
    def stage(self, ctx: Context, name: str) -> contextlib.AbstractContextManager[Any]:
        """Times a stage into the stage histogram, and a span when tracing is on."""
        timed = Timed(self.metrics.stage.labels(ctx.route, name))
        if not self.tracer.enabled:  # a plain object: no generator per stage and request
            return timed
        return self._traced(ctx, name, timed)

    @contextlib.contextmanager
    def _traced(self, ctx: Context, name: str, timed: Timed) -> Iterator[None]:
        with (
            self.tracer.span(f"polyfuse.{name}", request_id=ctx.request_id, route=ctx.route),
            timed,
        ):
            yield

    def validate(self, inputs: Inputs, ctx: Context, *, known: tuple[str, ...] | None) -> None:
        """Size limits (413) and modality names (400)."""
        if not inputs:
            raise ServeError(
                "invalid_input", "no inputs", hint="send at least one modality's content"
            )
        if len(inputs) > self.config.max_items:
            raise ServeError(
                "too_large", f"{len(inputs)} inputs; the limit is {self.config.max_items}"
            )
        for name, value in inputs.items():
            size = len(value.encode("utf-8")) if isinstance(value, str) else len(value)
            if size > self.config.max_item_bytes:
                raise ServeError(
                    "too_large",
                    f"input '{name}' has {size} bytes; the limit is {self.config.max_item_bytes}",
                    hint="send a smaller file",
                    details={"input": name},
                )
        if known is not None:
            _check_names(inputs, known, "input")
            if ctx.modalities is not None:
                _check_names(dict.fromkeys(ctx.modalities, ""), known, "modalities")

    async def screen(self, inputs: Inputs, ctx: Context) -> Screened:
        """Run the firewall over every input; raises ``blocked_by_policy`` on block,
        passes redacted text (and redacted files) on."""
        if self.guard is None:
            return Screened(inputs, "allow", [])
        guard = self.guard
        names = list(inputs)
        results = await asyncio.gather(
            *(self._in_pool(guard.scan, inputs[n], name=n) for n in names)
        )
        out: Inputs = {}
        findings: list[dict[str, Any]] = []
        action: Action = "allow"
        for name, result in zip(names, results, strict=True):
            item_action = self._item_action(result)
            for finding, act in result.findings:
                self.metrics.findings.labels(finding.type, act).inc()
                findings.append({**finding.to_dict(), "action": act, "input": name})
            if ACTIONS.index(item_action) > ACTIONS.index(action):
                action = item_action
            out[name] = inputs[name]
            if item_action == "redact":
                out[name] = await self._redacted(guard, inputs[name], result)
        if action == "block":
            self._log(ctx, inputs, verdict=("block", findings))  # answered 422: logged too
            raise _blocked(results, names, findings)
        return Screened(out, action, findings)

    def _item_action(self, result: ScanResult) -> Action:
        if result.error is not None and result.modality == "unknown":
            # content the firewall cannot read (e.g. a .npy series): not scannable, so
            # it goes on unscanned and is counted; the runtime validates it.
            self.metrics.findings.labels("UNSCANNED", "allow").inc()
            return "allow"
        action: Action = result.action
        return action

    async def _redacted(self, guard: Guard, value: bytes | str, result: ScanResult) -> bytes | str:
        from polyfuse.guard.redact.text import redact_text

        todo = [f for f, a in result.findings if a == "redact"]
        if isinstance(value, str):
            return redact_text(value, todo)
        if result.modality == "text":
            return redact_text(value.decode("utf-8"), todo).encode("utf-8")
        with tempfile.TemporaryDirectory(prefix="polyfuse-redact-") as tmp:
            path = await self._in_pool(guard.redact, value, result, tmp)
            if path is None:
                return value
            data: bytes = await self._in_pool(Path(path).read_bytes)
            return data

    async def _in_pool(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.guard_pool, lambda: fn(*args, **kwargs))

    async def call_runtime(self, ctx: Context, make: Callable[[], Awaitable[T]]) -> T:
        """Await the runtime within the request's deadline (504 once it passes)."""
        timeout = None if ctx.deadline is None else ctx.deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            raise _deadline()
        try:
            async with asyncio.timeout(timeout):  # no extra task per request, unlike wait_for
                return await make()
        except TimeoutError:
            raise _deadline() from None
        except ServeError:
            raise
        except Exception as exc:
            log.exception(json.dumps({"event": "runtime_error", "request_id": ctx.request_id}))
            raise ServeError("internal", "the model runtime failed") from exc

    # -- whole requests ---------------------------------------------------------------
    async def predict(self, inputs: Inputs, ctx: Context) -> ServeResult:
        """One prediction through every stage."""
        with self.stage(ctx, "validate"):
            self.validate(inputs, ctx, known=self.runtime.modalities)
        with self.stage(ctx, "firewall"):
            screened = await self._screen_for_review(inputs, ctx)
        request = ServeRequest(
            screened.inputs,
            ctx.request_id,
            ctx.deadline,
            ctx.modalities,
            leave_one_out=self.review is not None,
            route_key=ctx.route_key,
        )
        with self.stage(ctx, "runtime"):
            result = await self.call_runtime(ctx, lambda: self.runtime.predict(request))
        result.findings = screened.findings
        videos = _videos(screened.inputs) if self.config.sync or ctx.explain else {}
        if self.config.sync and videos:
            with self.stage(ctx, "sync"):
                result.sync = await self._sync(videos)
        if "frames" in ctx.explain and videos:
            with self.stage(ctx, "explain"):
                result.frames = await self._frames(request, videos)
        if self.review is not None:
            with self.stage(ctx, "review"):
                decision = await self.review.consider(
                    result,
                    screened.inputs,
                    firewall=screened.action,
                    findings=[f["type"] for f in screened.findings],
                )
            result.review = decision.to_dict()
        self._count(result, ctx)
        self._log(ctx, inputs, result=result)
        if self.versions is not None:
            self.versions.mirror(request, result)  # a copy for the shadow, if any
        if self.scans_outputs:  # a copy: the shadow and review keep the model's labels
            return await self._name_labels(result)
        return result

    async def _sync(self, videos: dict[str, bytes]) -> dict[str, Any]:
        """Each video's sound/picture offset (in a thread: it decodes every frame), with
        its metrics; a video the reader refuses gets ``null`` (the model's answer stands)."""
        from polyfuse.modalities.sync import clip_offset

        if self._sync_method is None:
            from polyfuse.models.sync import load_sync_method

            self._sync_method = await asyncio.to_thread(load_sync_method, self.config.sync_model)
        out: dict[str, Any] = {}
        for name, data in videos.items():
            try:
                est = await asyncio.to_thread(clip_offset, data, self._sync_method, name=name)
            except PolyfuseError:
                est = None
            out[name] = None if est is None else est.to_dict()
            if est is not None:
                self.metrics.av_offset.labels(name).observe(abs(est.offset_ms))
                if est.desync:
                    self.metrics.av_desync.labels(name).inc()
        return out

    async def _frames(self, request: ServeRequest, videos: dict[str, bytes]) -> dict[str, Any]:
        """Which frames of each video mattered (`polyfuse.inference.frames`), for runtimes
        that can tell (``frame_effects``); the others answer without it."""
        explain = getattr(self.runtime, "frame_effects", None)
        if explain is None:
            raise ServeError(
                "invalid_input",
                "this service's runtime cannot explain frames",
                hint="?explain=frames needs one in-process model (not Ray replicas or "
                "several versions)",
            )
        known = set(self.runtime.modalities)
        return {m: await explain(request, m) for m in videos if m in known}

    async def _shadow_answered(self, outcome: ShadowOutcome) -> None:
        """The shadow's answer: one request-log record, and human review of a
        disagreement with the champion."""
        if self.request_log is not None:
            self.request_log.write(outcome.to_record())
        if self.review is not None and outcome.result is not None:
            await self.review.shadow(
                outcome.request_id,
                outcome.result.probabilities,
                version=outcome.version,
                inputs=outcome.inputs,
            )

    async def _screen_for_review(self, inputs: Inputs, ctx: Context) -> Screened:
        """`screen`, handing a blocked request to the review queue before the 422."""
        try:
            return await self.screen(inputs, ctx)
        except ServeError as err:
            if err.code == "blocked_by_policy" and self.review is not None:
                found = err.details.get("findings", [])
                await self.review.blocked(ctx.request_id, inputs, [f["type"] for f in found])
            raise

    async def embed(self, inputs: Inputs, ctx: Context) -> dict[str, Any]:
        """Per-modality embeddings through every stage."""
        with self.stage(ctx, "validate"):
            self.validate(inputs, ctx, known=self.runtime.modalities)
        with self.stage(ctx, "firewall"):
            screened = await self.screen(inputs, ctx)
        request = ServeRequest(screened.inputs, ctx.request_id, ctx.deadline, ctx.modalities)
        with self.stage(ctx, "runtime"):
            vectors = await self.call_runtime(ctx, lambda: self.runtime.embed(request))
        self._log(ctx, inputs, embeddings=vectors)
        return {
            "request_id": ctx.request_id,
            "embeddings": vectors,
            "findings": screened.findings,
            "model": model_info(self.runtime),
        }

    async def aligned(
        self, route: str, inputs: Inputs, ctx: Context, **options: Any
    ) -> dict[str, Any]:
        """``/v1/search``, ``/v1/consistency`` or ``/v1/caption`` through validation,
        the firewall and the request's deadline (``options``: ``k`` or ``beam``)."""
        align = self.served(route)
        with self.stage(ctx, "validate"):
            self.validate(inputs, ctx, known=align.modalities(route))
        with self.stage(ctx, "firewall"):
            screened = await self.screen(inputs, ctx)
        calls: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "search": lambda: align.search(screened.inputs, **options),
            "consistency": lambda: align.consistency(screened.inputs),
            "caption": lambda: align.caption(screened.inputs, **options),
        }
        with self.stage(ctx, route):
            out = await self.call_runtime(ctx, calls[route])
        with self.stage(ctx, "output_firewall"):
            try:
                out, scan = await self.screen_answer(out, ctx)
            except ServeError as err:
                if err.code == "blocked_by_policy":
                    types = [{"type": f["type"]} for f in err.details.get("output_findings", [])]
                    self._log(ctx, inputs, verdict=("block", types))
                raise
        self._log(ctx, inputs, outputs=scan)
        answer = {"request_id": ctx.request_id, **out, "findings": screened.findings}
        if scan is not None:
            answer["output_scan"] = scan.to_dict()
        return answer

    # -- what goes out ----------------------------------------------------------------
    @property
    def scans_outputs(self) -> bool:
        """Whether the firewall's policy scans answers (``policy.outputs.enabled``)."""
        return self.guard is not None and self.guard.policy.outputs.enabled

    async def screen_answer(
        self, out: dict[str, Any], ctx: Context
    ) -> tuple[dict[str, Any], OutputScan | None]:
        """An answer with server paths made file names (`serve.http.outputs.scrub`) and,
        when the policy scans outputs, its texts under ``policy.outputs``: redacted spans
        become ``<TYPE>``; a ``block`` refuses the answer (422 ``blocked_by_policy``)."""
        out = scrub(out)
        if not self.scans_outputs:
            return out, None
        out, scan = await self._guarded(
            lambda guard: guard.scan_answer(out, name=f"{ctx.route} {ctx.request_id}")
        )
        if scan.action == "block":
            found = scan.to_dict()["findings"]
            types = sorted({f["type"] for f in found if f["action"] == "block"})
            raise ServeError(
                "blocked_by_policy",
                f"the firewall policy blocks the answer ({', '.join(types)})",
                hint="the policy's outputs section decides what answers may hold",
                details={"output_findings": found},
            )
        return out, scan

    async def _guarded(self, call: Callable[[Guard], tuple[T, OutputScan]]) -> tuple[T, OutputScan]:
        """``call(guard)`` (an output scan) on the firewall's threads, its findings
        counted; an answer the firewall cannot scan is refused (422
        ``blocked_by_policy``)."""
        from polyfuse.core.errors import PolyfuseError

        guard = self.guard
        if guard is None:  # pragma: no cover - callers check scans_outputs
            raise ServeError("internal", "no firewall to scan the answer")
        try:
            out, scan = await self._in_pool(call, guard)
        except PolyfuseError as err:  # an answer that cannot be scanned does not go out
            raise ServeError(
                "blocked_by_policy",
                f"the answer cannot be scanned by the firewall: {err.message}",
                hint="ask for fewer results (a smaller k)",
            ) from None
        for finding, act in scan.findings:
            self.metrics.output_findings.labels(finding.type, act).inc()
        return out, scan

    async def labels(self) -> LabelNames:
        """The model's labels as answers name them, scanned once under the output
        policy: a label holding, say, an e-mail address is shown redacted (a label is
        the model's vocabulary, so ``block`` redacts it too instead of refusing every
        answer). Audited only when something is found."""
        if self.label_names is None:
            labels = [str(x) for x in self.runtime.info().get("labels", [])]
            fields = LabelNames.fields(labels)
            _, scan = await self._guarded(
                lambda guard: (
                    None,
                    guard.scan_outputs(labels, fields, name="labels", audit_clean=False),
                )
            )
            self.label_names = LabelNames(labels, scan)
        return self.label_names

    async def _name_labels(self, result: ServeResult) -> ServeResult:
        """A copy of ``result`` with its label and probabilities under the labels'
        public names, and the labels' scan as its ``output_scan``."""
        import dataclasses

        names = await self.labels()
        return dataclasses.replace(
            result,
            label=names.name(result.label),
            probabilities=names.keys(result.probabilities),
            output_scan=names.scan,
        )

    def served(self, route: str) -> AlignServices:
        """The artifacts behind ``route``; 404 ``not_found`` naming the flag to pass."""
        if self.align is None:
            raise not_served(route)
        self.align.require(route)
        return self.align

    async def scan(self, inputs: Inputs, ctx: Context) -> dict[str, Any]:
        """Firewall verdicts only (no model)."""
        if self.guard is None:
            raise ServeError(
                "not_found",
                "this server runs no firewall",
                hint="start it with --policy FILE to enable /v1/scan",
            )
        with self.stage(ctx, "validate"):
            self.validate(inputs, ctx, known=None)
        names = list(inputs)
        with self.stage(ctx, "firewall"):
            results = await asyncio.gather(
                *(self._in_pool(self.guard.scan, inputs[n], name=n) for n in names)
            )
        verdicts = {
            n: {**r.to_dict(), "sha256": r.sha256} for n, r in zip(names, results, strict=True)
        }
        for r in results:
            for finding, act in r.findings:
                self.metrics.findings.labels(finding.type, act).inc()
        strictest = max((r.action for r in results), key=ACTIONS.index)
        found = [{"type": f.type} for r in results for f, _ in r.findings]
        self._log(ctx, inputs, verdict=(strictest, found))
        return {"request_id": ctx.request_id, "action": strictest, "results": verdicts}

    def _count(self, result: ServeResult, ctx: Context) -> None:
        for stage, ms in result.timings_ms.items():
            self.metrics.stage.labels(ctx.route, f"runtime:{stage}").observe(ms / 1000)
        for modality, reason in result.degraded_reasons.items():
            self.metrics.degraded.labels(modality, reason).inc()
        for modality in self.runtime.modalities:
            if modality not in result.modalities_used:
                self.metrics.missing.labels(modality).inc()

    def _log(
        self,
        ctx: Context,
        inputs: Inputs,
        *,
        result: ServeResult | None = None,
        embeddings: Mapping[str, list[float]] | None = None,
        verdict: tuple[str, list[dict[str, Any]]] | None = None,
        outputs: OutputScan | None = None,
    ) -> None:
        """One request-log record (hashes and summaries, never raw content); ``verdict``
        is the firewall's (action, findings) for blocked requests and /v1/scan."""
        if self.request_log is None:
            return
        record: dict[str, Any] = {
            "request_id": ctx.request_id,
            "route": ctx.route,
            "key": ctx.key_id,
            "inputs": {name: digest(value) for name, value in inputs.items()},
        }
        if result is not None:
            record["prediction"] = {"label": result.label, "probabilities": result.probabilities}
            record["degraded"] = result.degraded
            record["degraded_reasons"] = result.degraded_reasons
            record["findings"] = sorted({f["type"] for f in result.findings})
            if result.monitor is not None:
                record["monitor"] = result.monitor.to_dict()
            if result.review is not None:
                record["review"] = result.review["reasons"]
            if result.version is not None:
                record["version"], record["role"] = result.version, result.role
        if embeddings is not None:
            record["embeddings"] = {m: embedding_summary(v) for m, v in embeddings.items()}
        if verdict is not None:
            record["action"] = verdict[0]
            record["findings"] = sorted({f["type"] for f in verdict[1]})
        if outputs is not None:
            record["output_action"] = outputs.action
            record["output_findings"] = sorted({f.type for f, _ in outputs.findings})
        self.request_log.write(record)

    async def warm_guard(self) -> None:
        """Build the firewall's models once (first scans are otherwise slow)."""
        if self.guard is not None:
            try:
                await self._in_pool(self.guard.warm_up)
                if self.scans_outputs:
                    await self.labels()
            except Exception:  # stays not ready; /readyz answers 503
                log.exception(json.dumps({"event": "firewall_warm_up_failed"}))
                return
        self.guard_ready = True

    def ready(self) -> bool:
        """True when the runtime and the firewall are ready."""
        return self.guard_ready and self.runtime.ready()

    async def close(self) -> None:
        """Close the runtime and the firewall's threads."""
        await self.runtime.close()
        if self.align is not None:
            self.align.close()
        if self.review is not None:
            self.review.close()
        self.guard_pool.shutdown(wait=False, cancel_futures=True)
        self.tracer.close()


def _check_names(inputs: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(inputs) - set(known))
    if unknown:
        raise ServeError(
            "invalid_input",
            f"unknown modality {', '.join(repr(u) for u in unknown)} in {where}",
            hint=f"this model accepts: {', '.join(known)}",
            details={"unknown": unknown},
        )


def _blocked(
    results: list[ScanResult], names: list[str], findings: list[dict[str, Any]]
) -> ServeError:
    blocked = [n for n, r in zip(names, results, strict=True) if r.action == "block"]
    reasons = {n: r.error for n, r in zip(names, results, strict=True) if r.error is not None}
    types = sorted({f["type"] for f in findings if f["action"] == "block"})
    why = f" ({', '.join(types)})" if types else ""
    return ServeError(
        "blocked_by_policy",
        f"the firewall policy blocks input {', '.join(repr(n) for n in blocked)}{why}",
        hint="remove the flagged content; the findings are masked",
        details={"findings": findings, **({"errors": reasons} if reasons else {})},
    )


def _deadline() -> ServeError:
    return ServeError(
        "deadline_exceeded",
        "the request's deadline passed before the model answered",
        hint="raise X-Request-Timeout or retry later",
    )


def model_info(runtime: Runtime) -> dict[str, Any]:
    info = runtime.info()
    return {k: info[k] for k in ("name", "version", "contracts") if k in info}


def _videos(inputs: Inputs) -> dict[str, bytes]:
    """The request's inputs that are video files."""
    from polyfuse.modalities.io import sniff
    from polyfuse.modalities.readers.video import VIDEO_FORMATS

    return {
        name: value
        for name, value in inputs.items()
        if isinstance(value, bytes) and sniff(value[:64]) in VIDEO_FORMATS
    }
