"""`VersionedRuntime`: a champion, an optional canary and an optional shadow behind one
`polyfuse.serve.types.Runtime`.

Per request, `predict` picks the version (`CanaryRouter`: sticky per caller), awaits its
runtime, and stamps the answer with the version's name and role. While the canary has
traffic, every answer of either version feeds `polyfuse.release.canary.CanaryJudge`: 5xx
errors, degraded answers, log latency, "slower than the champion's p95", the calibrated
confidence of the answer (when the version's artifact carries a monitoring profile) and,
through `feedback`, delayed labels. When a signal says the canary is worse with confidence
the canary's weight goes to 0 at once and the decision is logged with its evidence
(`decisions`, ``GET /v1/versions``, the ``polyfuse_canary_*`` metrics and their alert).
Promotion is the same test the other way, and only ever done by an operator (`promote`).

After the service has answered, `mirror` hands the request to the shadow's bounded queue
(`ShadowRunner`); the shadow's answer is compared with the champion's (agreement), counted
and given to the ``on_shadow`` hooks (the request log, human review), never returned.

Encoder stages that are the same in several versions run once (`SharedStages`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from polyfuse.core.errors import ConfigError
from polyfuse.release.canary import Arm, CanaryJudge, CanarySettings, Judgement
from polyfuse.serve.config import ShadowSettings
from polyfuse.serve.runtime.shared import SharedStages
from polyfuse.serve.types import ServeError, ServeRequest, ServeResult
from polyfuse.serve.versions.ledger import SERVER_ERRORS, Ledger
from polyfuse.serve.versions.records import Decision, ShadowHook, ShadowJob, ShadowOutcome
from polyfuse.serve.versions.routing import CanaryRouter, check_weight
from polyfuse.serve.versions.shadow import ShadowRunner
from polyfuse.serve.versions.sources import VersionSource

if TYPE_CHECKING:
    from polyfuse.monitor.live import LiveMonitor
    from polyfuse.serve.runtime.model import ModelRuntime

log = logging.getLogger("polyfuse.serve.versions")

#: What a version does in the service.
Role = Literal["champion", "canary", "shadow", "previous"]
#: Request ids remembered for delayed labels (per version that answered them).
REMEMBER = 10_000


@dataclass
class Version:
    """One served version.

    Attributes:
        name: its name (`VersionSource.name`).
        role: champion, canary, shadow, or previous (a champion replaced by a promotion,
            kept loaded and idle).
        runtime: its model runtime.
        source: where it came from.
        ledger: its counts.
    """

    name: str
    role: Role
    runtime: ModelRuntime
    source: VersionSource
    ledger: Ledger = field(default_factory=Ledger)

    def describe(self) -> dict[str, Any]:
        """JSON form (``GET /v1/versions``)."""
        registered = self.source.registered
        live = self.runtime.live_monitor()
        state = None if live is None else live.state()
        return {
            "name": self.name,
            "role": self.role,
            "source": self.source.given,
            "registry": None if registered is None else vars(registered).copy(),
            "stages": dict(self.runtime.info().get("encoders", {})),
            "counts": self.ledger.to_dict(),
            "monitor": None
            if state is None
            else {
                "estimated_accuracy": state.estimated_accuracy,
                "observed_accuracy": state.observed_accuracy,
                "drift": {m: s.drift for m, s in state.modalities.items()},
            },
        }


class VersionedRuntime:
    """Several versions behind one `Runtime` (see the module docstring).

    Args:
        champion: the version that answers by default.
        canary: a version that answers ``weight`` of the callers, or None.
        shadow: a version that answers a copy of the traffic, or None.
        weight: the canary's share of callers, in [0, 1].
        settings: the canary judge's settings.
        shadow_settings: the shadow's budget.
        shared: the stages the versions share (closed with the runtime).
    """

    def __init__(
        self,
        champion: Version,
        *,
        canary: Version | None = None,
        shadow: Version | None = None,
        weight: float = 0.05,
        settings: CanarySettings | None = None,
        shadow_settings: ShadowSettings | None = None,
        shared: SharedStages | None = None,
    ) -> None:
        self.versions: list[Version] = [v for v in (champion, canary, shadow) if v is not None]
        _check_compatible(self.versions)
        self.settings = settings or CanarySettings()
        self.shared = shared
        self.router = CanaryRouter(canary.name if canary else "", weight if canary else 0.0)
        self.judge = CanaryJudge(self.settings)
        self.rolled_back = False
        self.decisions: list[Decision] = []
        self.on_shadow: list[ShadowHook] = []
        self.runner: ShadowRunner[ShadowJob] = ShadowRunner(self._shadow_work, shadow_settings)
        self._answers: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._slow_reference: list[float] = []
        self._slow: float | None = None
        self._labels = [str(x) for x in champion.runtime.info().get("labels", [])]

    # ---- versions -------------------------------------------------------------
    def _role(self, role: Role) -> Version | None:
        return next((v for v in self.versions if v.role == role), None)

    @property
    def champion(self) -> Version:
        """The version that answers by default."""
        found = self._role("champion")
        if found is None:  # never: the constructor and `promote` keep one
            raise ServeError("internal", "no champion version")
        return found

    @property
    def canary(self) -> Version | None:
        """The canary, if any."""
        return self._role("canary")

    @property
    def shadow(self) -> Version | None:
        """The shadow, if any."""
        return self._role("shadow")

    @property
    def weight(self) -> float:
        """The canary's share of callers now."""
        return self.router.weight

    def active(self) -> bool:
        """Whether the canary has traffic (and the judge is collecting evidence)."""
        return self.canary is not None and self.router.weight > 0.0

    # ---- the Runtime protocol ---------------------------------------------------
    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities every version accepts (the champion's)."""
        return self.champion.runtime.modalities

    def info(self) -> dict[str, Any]:
        """The champion's description, with the versions' names and roles."""
        info = self.champion.runtime.info()
        info["versions"] = {v.name: v.role for v in self.versions}
        return info

    def ready(self) -> bool:
        """True once every version is ready."""
        return all(v.runtime.ready() for v in self.versions)

    def stats(self) -> dict[str, Any]:
        """The champion's runtime stats, plus the batchers and breakers of the other
        versions' stages it does not share, named ``<batcher>_<role>``."""
        stats = self.champion.runtime.stats()
        mine = set(self.champion.runtime.info().get("encoders", {}).values())
        for v in self.versions:
            if v.role == "champion":
                continue
            other = v.runtime.stats()
            keys = v.runtime.info().get("encoders", {})
            for m, b in other["batchers"].items():
                if keys.get(m) not in mine:
                    stats["batchers"][f"{m}_{v.role}"] = b
                    stats["breakers"][f"{m}_{v.role}"] = other["breakers"][m]
            if other.get("fusion") is not None:
                stats["batchers"][f"fusion_{v.role}"] = other["fusion"]
        return stats

    def live_monitor(self) -> LiveMonitor | None:
        """The champion's live drift monitor (each version's is in `describe`)."""
        return self.champion.runtime.live_monitor()

    async def embed(self, request: ServeRequest) -> dict[str, list[float]]:
        """The champion's embeddings."""
        return await self.champion.runtime.embed(request)

    async def predict(self, request: ServeRequest) -> ServeResult:
        """Answer with the champion or the canary (sticky per ``request.route_key``)."""
        champion, canary = self.champion, self.canary
        version = champion
        if canary is not None and self.router.canary(request.route_key):
            version = canary
        arm: Arm | None = None
        if self.active():
            arm = "canary" if version is canary else "champion"
        start = time.perf_counter()
        try:
            result = await version.runtime.predict(request)
        except ServeError as err:
            seconds = time.perf_counter() - start
            version.ledger.failed(seconds, err.code)
            if arm is not None and err.code in SERVER_ERRORS:
                self._observe(arm, seconds, error=True)
            err.details.setdefault("version", version.name)
            raise
        seconds = time.perf_counter() - start
        result.version, result.role = version.name, version.role
        version.ledger.answered(seconds, result.degraded)
        self._remember(request.request_id, version.name, result.label)
        if arm is not None:
            self._observe(arm, seconds, result=result, version=version)
        return result

    async def close(self) -> None:
        """Stop the shadow's queue, every version and the shared stages."""
        await self.runner.close()
        for v in self.versions:
            await v.runtime.close()
        if self.shared is not None:
            await self.shared.close()

    # ---- the canary's evidence ----------------------------------------------------
    def _observe(
        self,
        arm: Arm,
        seconds: float,
        *,
        error: bool = False,
        result: ServeResult | None = None,
        version: Version | None = None,
    ) -> None:
        """Feed one answered (or failed) request of ``arm`` to the judge; roll back when
        a signal turns worse."""
        judge = self.judge
        judge.observe("errors", arm, float(error))
        ms = max(seconds * 1000.0, 1e-3)
        judge.observe("latency", arm, math.log(ms))
        self._observe_slow(arm, ms)
        touched = ["errors", "latency", "slow"]
        if result is not None and version is not None:
            judge.observe("degraded", arm, float(result.degraded))
            touched.append("degraded")
            confidence = self._confidence(version, result)
            if confidence is not None:
                judge.observe("estimated_accuracy", arm, confidence)
                touched.append("estimated_accuracy")
        self._check(touched)

    def _observe_slow(self, arm: Arm, ms: float) -> None:
        """The ``slow`` signal: once the champion has answered ``min_samples`` requests
        of the canary phase, its p95 is the bar both versions are held to."""
        if self._slow is None:
            if arm == "champion":
                self._slow_reference.append(ms)
                if len(self._slow_reference) >= self.settings.min_samples:
                    self._slow = float(np.percentile(self._slow_reference, 95))
            return
        self.judge.observe("slow", arm, float(ms > self._slow))

    def _confidence(self, version: Version, result: ServeResult) -> float | None:
        """The calibrated confidence of ``result`` (the label-free estimate of its
        accuracy), when the version's artifact has a monitoring profile."""
        live = version.runtime.live_monitor()
        if live is None or live.profile.calibration is None:
            return None
        probs = np.array([[result.probabilities.get(lab, 0.0) for lab in self._labels]])
        return float(live.profile.calibration.fused.confidence(probs)[0])

    def _check(self, signals: list[str]) -> None:
        """Roll the canary back when one of ``signals`` says it is worse."""
        if not self.settings.auto_rollback or not self.active():
            return
        worse = [
            s for s in signals if (v := self.judge.verdict(s)) is not None and v.state == "worse"
        ]
        if worse:
            self._rollback("judge", self.judge.judge(), tuple(worse))

    def _rollback(
        self, by: Literal["judge", "operator"], judged: Judgement, why: tuple[str, ...]
    ) -> Decision | None:
        canary = self.canary
        if canary is None:
            return None
        self.router.weight = 0.0
        self.rolled_back = True
        decision = Decision("rollback", canary.name, by, time.time(), 0.0, judged.to_dict(), why)
        self._decide(decision)
        return decision

    def _decide(self, decision: Decision) -> None:
        self.decisions.append(decision)
        del self.decisions[:-100]
        log.warning(json.dumps({"event": f"canary_{decision.action}", **decision.to_dict()}))

    def judgement(self) -> Judgement:
        """Every signal's verdict now."""
        return self.judge.judge()

    # ---- delayed labels -------------------------------------------------------------
    def _remember(self, request_id: str, version: str, label: Any) -> None:
        answers = self._answers.get(request_id)
        if answers is None:
            answers = self._answers[request_id] = {}
            while len(self._answers) > REMEMBER:
                self._answers.popitem(last=False)
        answers[version] = label

    def feedback(self, request_id: str, label: Any, truth: Any) -> str:
        """A delayed label for a served request: ``label`` as given (a list for a
        multi-label model), ``truth`` as the live monitor takes it (class index or
        indices). Each version that answered the request (the one that served it, the
        shadow) counts it; the serving version's live monitor gets it, and while the
        canary has traffic the judge's ``accuracy`` signal too. Returns ``correct`` /
        ``wrong`` for the served answer, or ``unknown`` when the request is forgotten."""
        answers = self._answers.get(request_id)
        if answers is None:
            return "unknown"
        outcome = "unknown"
        for version in self.versions:
            if version.name not in answers:
                continue
            right = _same(answers[version.name], label)
            version.ledger.feedback["correct" if right else "wrong"] += 1
            if version.role in ("champion", "canary"):
                live = version.runtime.live_monitor()
                if live is not None:
                    live.feedback(request_id, truth)
                outcome = "correct" if right else "wrong"
                if self.active():
                    arm: Arm = "canary" if version.role == "canary" else "champion"
                    self.judge.observe("accuracy", arm, float(right))
                    self._check(["accuracy"])
        return outcome

    # ---- the shadow -------------------------------------------------------------------
    def mirror(self, request: ServeRequest, result: ServeResult) -> None:
        """Copy an answered request to the shadow's queue (after the champion answered;
        requests the canary answered are not copied). Never waits."""
        if self.shadow is None or result.role != "champion":
            return
        self.runner.offer(
            ShadowJob(
                request.request_id,
                request.inputs,
                request.modalities,
                str(result.version),
                result.label,
            )
        )

    async def _shadow_work(self, job: ShadowJob) -> None:
        shadow = self.shadow
        if shadow is None:
            return
        request = ServeRequest(job.inputs, job.request_id, None, job.modalities)
        start = time.perf_counter()
        result: ServeResult | None = None
        error: str | None = None
        try:
            async with asyncio.timeout(self.runner.settings.timeout_s):
                result = await shadow.runtime.predict(request)
        except ServeError as err:
            error = err.code
        except TimeoutError:
            error = "deadline_exceeded"
        seconds = time.perf_counter() - start
        agrees = None
        if result is None:
            shadow.ledger.failed(seconds, error or "internal")
        else:
            result.version, result.role = shadow.name, "shadow"
            shadow.ledger.answered(seconds, result.degraded)
            agrees = _same(result.label, job.label)
            shadow.ledger.compare(agrees)
            self._remember(job.request_id, shadow.name, result.label)
        outcome = ShadowOutcome(
            job.request_id, shadow.name, job.champion, agrees, result, error, job.inputs
        )
        for hook in self.on_shadow:
            try:
                await hook(outcome)
            except Exception:
                log.exception(json.dumps({"event": "shadow_hook_failed"}))

    # ---- operator actions -----------------------------------------------------------
    def rollback(self) -> Decision:
        """Take the canary's traffic away (an operator's call)."""
        if self.canary is None:
            raise _no_canary()
        decision = self._rollback("operator", self.judge.judge(), ())
        if decision is None:  # pragma: no cover - checked above
            raise _no_canary()
        return decision

    def set_weight(self, weight: float) -> Decision:
        """Give the canary ``weight`` of the callers. After a rollback, a positive weight
        starts a fresh comparison (the old evidence condemned the canary)."""
        canary = self.canary
        if canary is None:
            raise _no_canary()
        try:
            weight = check_weight(weight, "weight")
        except ConfigError as exc:
            raise ServeError("invalid_input", exc.message, hint=exc.hint) from None
        judged = self.judge.judge()
        if weight > 0 and self.rolled_back:
            self._restart()
        self.router.weight = weight
        decision = Decision(
            "weight", canary.name, "operator", time.time(), weight, judged.to_dict()
        )
        self._decide(decision)
        return decision

    def _restart(self) -> None:
        """A fresh comparison: new judge, new ``slow`` bar."""
        self.judge = CanaryJudge(self.settings)
        self.rolled_back = False
        self._slow_reference, self._slow = [], None

    async def promote(self, *, force: bool = False) -> Decision:
        """Make the canary the champion (an operator's call). Refused unless the judge
        says the canary is better, or ``force``. With registry versions of one model
        whose champion was served by an alias (``models:/NAME@champion``), the alias
        moves to the canary's version first (`polyfuse.release.registry`); the old
        champion stays loaded, idle, as ``previous``."""
        canary = self.canary
        if canary is None:
            raise _no_canary()
        judged = self.judge.judge()
        if judged.state != "better" and not force:
            raise ServeError(
                "invalid_input",
                f"the judge has not found canary {canary.name} better ({judged.state})",
                hint="wait for more traffic, or promote anyway with force",
                details={"judgement": judged.to_dict()},
            )
        moved = await self._move_alias(canary, force)
        old = self.champion
        old.role, canary.role = "previous", "champion"
        self.router = CanaryRouter("", 0.0)
        self._restart()
        decision = Decision(
            "promote", canary.name, "operator", time.time(), 0.0, judged.to_dict(), (), moved
        )
        self._decide(decision)
        return decision

    async def _move_alias(self, canary: Version, force: bool) -> dict[str, Any] | None:
        """Move the champion's registry alias to the canary's version (None when the
        versions are not registry versions of one model served by alias)."""
        mine, theirs = self.champion.source.registered, canary.source.registered
        if mine is None or theirs is None or mine.alias is None or mine.model != theirs.model:
            return None
        from polyfuse.core.errors import PolyfuseError
        from polyfuse.release.registry import ModelRegistry

        def move() -> dict[str, Any]:
            done = ModelRegistry().promote(
                theirs.model, version=theirs.version, to=str(mine.alias), force=force
            )
            return done.to_dict()

        try:
            return await asyncio.to_thread(move)
        except PolyfuseError as exc:
            raise ServeError(
                "unavailable",
                f"the registry refused the promotion: {exc.message}",
                hint=exc.hint or "check MLFLOW_TRACKING_URI, then retry",
            ) from None

    def state(self) -> dict[str, Any]:
        """Everything ``GET /v1/versions`` shows."""
        canary = self.canary
        return {
            "champion": self.champion.name,
            "canary": None
            if canary is None
            else {
                "name": canary.name,
                "weight": self.router.weight,
                "rolled_back": self.rolled_back,
                "judgement": self.judge.judge().to_dict(),
                "slow_bar_ms": self._slow,
            },
            "shadow": None
            if self.shadow is None
            else {"name": self.shadow.name, **self.runner.stats()},
            "settings": self.settings.model_dump(),
            "versions": [v.describe() for v in self.versions],
            "shared_stages": {} if self.shared is None else self.shared.shared(),
            "decisions": [d.to_dict() for d in self.decisions],
        }


def _same(a: Any, b: Any) -> bool:
    """Whether two answers are the same label (or the same set of labels)."""
    if isinstance(a, list | tuple) or isinstance(b, list | tuple):
        return sorted(map(str, a or [])) == sorted(map(str, b or []))
    return str(a) == str(b)


def _no_canary() -> ServeError:
    return ServeError(
        "not_found",
        "this service has no canary",
        hint="start it with --canary CANDIDATE (docs/serving.md)",
    )


def _check_compatible(versions: list[Version]) -> None:
    """Every version must take the same modalities and answer the same labels and task."""
    first = versions[0].runtime.info()
    for v in versions[1:]:
        info = v.runtime.info()
        for key in ("modalities", "labels", "task"):
            if info.get(key) != first.get(key):
                raise ConfigError(
                    f"--{v.role}",
                    f"version {v.name} has {key} {info.get(key)}, the champion {first.get(key)}",
                    hint="serve versions of one model side by side: same modalities, "
                    "labels and task",
                )
    names = [v.name for v in versions]
    if len(set(names)) != len(names):
        raise ConfigError(
            "--canary", f"two versions are both named {names}", hint="rename one folder"
        )


def load_versions(
    champion: VersionSource,
    *,
    canary: VersionSource | None = None,
    shadow: VersionSource | None = None,
    weight: float = 0.05,
    settings: CanarySettings | None = None,
    shadow_settings: ShadowSettings | None = None,
    **options: Any,
) -> VersionedRuntime:
    """Load every version with shared stages and start the service's runtime (``options``
    as for `ModelRuntime.load`)."""
    from polyfuse.serve.runtime.model import ModelRuntime

    shared = SharedStages()
    loaded: dict[Role, Version] = {}
    taken: set[str] = set()
    sources: tuple[tuple[Role, VersionSource | None], ...] = (
        ("champion", champion),
        ("canary", canary),
        ("shadow", shadow),
    )
    for role, source in sources:
        if source is None:
            continue
        runtime = ModelRuntime.load(source.folder, shared=shared, name=role, **options)
        name = source.name(runtime.artifact.info)
        if name in taken:  # the same build twice (an A/A comparison): keep them apart
            name = f"{name}-{role}"
        taken.add(name)
        loaded[role] = Version(name, role, runtime, source)
    return VersionedRuntime(
        loaded["champion"],
        canary=loaded.get("canary"),
        shadow=loaded.get("shadow"),
        weight=weight,
        settings=settings,
        shadow_settings=shadow_settings,
        shared=shared,
    )
