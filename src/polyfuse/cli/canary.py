"""``polyfuse canary``: a running service's versions, and the operator's hand on its canary
(``polyfuse serve CHAMPION --canary CANDIDATE``)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import urllib.error
import urllib.request
from typing import Any

from polyfuse.cli.common import EXIT_OK

#: Environment variable with the API key the command sends (an admin key to act).
KEY_ENV = "POLYFUSE_API_KEY"
#: What each action asks the service.
ROUTES = {
    "status": ("GET", "/v1/versions"),
    "promote": ("POST", "/v1/versions/promote"),
    "rollback": ("POST", "/v1/versions/rollback"),
    "weight": ("POST", "/v1/versions/weight"),
}


def canary_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of canary: an action and the service's address."""
    p.add_argument("action", choices=tuple(ROUTES), help="what to do")
    p.add_argument("value", nargs="?", type=float, help="the new weight (weight only), 0..1")
    p.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the service (default %(default)s)"
    )
    p.add_argument("--key", help=f"API key (default ${KEY_ENV}); acting needs an admin key")
    p.add_argument(
        "--force", action="store_true", help="promote although the judge has not found it better"
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the service's answer as JSON")


def canary(args: argparse.Namespace) -> int:
    """The versions a service answers with and the canary's evidence (``status``), or an
    operator's decision: ``promote`` the canary to champion (refused unless the sequential
    test found it better, or with --force; a registry alias moves with it), ``rollback``
    (its weight to 0) or ``weight W`` (its share of callers; after a rollback a fresh
    comparison). Acting needs an admin key of the service (``serve --admin-keys``)."""
    from polyfuse.core.errors import ConfigError

    if (args.action == "weight") != (args.value is not None):
        raise ConfigError(
            "value", "a weight goes with 'weight' only", hint="polyfuse canary weight 0.1"
        )
    body: dict[str, Any] | None = None
    if args.action == "promote":
        body = {"force": bool(args.force)}
    elif args.action == "weight":
        body = {"weight": args.value}
    answer = call(args.url, *ROUTES[args.action], body, args.key, args.timeout)
    if args.json:
        print(json.dumps(answer, indent=2))
    elif args.action == "status":
        print(render_status(answer))
    else:
        print(render_decision(answer))
    return EXIT_OK


def call(
    url: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    key: str | None,
    timeout: float,
) -> dict[str, Any]:
    """One JSON call to the service; its typed errors become one-line `PolyfuseError`s."""
    from polyfuse.core.errors import PolyfuseError

    headers = {"Content-Type": "application/json"}
    key = key or os.environ.get(KEY_ENV)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url.rstrip("/") + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read()).get("error", {})
        except ValueError:
            error = {}
        raise PolyfuseError(
            f"{url} answered {exc.code}: {error.get('message', exc.reason)}",
            hint=error.get("hint"),
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PolyfuseError(
            f"cannot reach {url}: {reason}", hint="is 'polyfuse serve' running there? see --url"
        ) from None


def render_status(state: dict[str, Any]) -> str:
    """``GET /v1/versions`` as text: versions, the canary's signals, decisions."""
    lines = [f"champion  {state.get('champion')}"]
    canary = state.get("canary")
    if canary:
        flag = "  ROLLED BACK" if canary.get("rolled_back") else ""
        lines.append(f"canary    {canary['name']}  weight {canary['weight']:.3f}{flag}")
        judged = canary["judgement"]
        deciding = ", ".join(judged.get("deciding", [])) or "-"
        lines.append(f"  judgement: {judged['state']} (deciding: {deciding})")
        lines.append(
            f"  {'signal':<20}{'canary':>18}{'champion':>18}{'worse':>9}{'better':>9}{'bar':>8}"
        )
        for name, v in judged["signals"].items():
            stat = v["statistic"]
            lines.append(
                f"  {name:<20}{_arm(v['canary']):>18}{_arm(v['champion']):>18}"
                f"{stat['worse']:>9.2f}{stat['better']:>9.2f}{v['threshold']:>8.2f}  {v['state']}"
            )
    shadow = state.get("shadow")
    if shadow:
        lines.append(
            f"shadow    {shadow['name']}  run {shadow['run']}, dropped {shadow['dropped']}, "
            f"queue {shadow['queue_depth']}"
        )
    for v in state.get("versions", []):
        counts = v["counts"]
        agreement = counts.get("agreement")
        agrees = "" if agreement is None else f", agreement {agreement:.3f}"
        lines.append(
            f"  {v['role']:<9} {v['name']}: {counts['requests']} requests, "
            f"{sum(counts['errors'].values())} errors, {counts['degraded']} degraded{agrees}"
        )
    for d in state.get("decisions", []):
        lines.append(render_decision(d))
    return "\n".join(lines)


def _arm(arm: dict[str, Any]) -> str:
    return f"{arm['mean']:.4f} (n={arm['n']})"


def render_decision(d: dict[str, Any]) -> str:
    """One decision as a line."""
    when = dt.datetime.fromtimestamp(float(d["time"]), dt.UTC).isoformat(timespec="seconds")
    signals = f" on {', '.join(d['signals'])}" if d.get("signals") else ""
    moved = ""
    if d.get("registry"):
        r = d["registry"]
        moved = f"; registry {r['name']}@{r['alias']} -> version {r['version']}"
    return (
        f"{when}  {d['action']} {d['version']} by {d['by']}{signals} "
        f"(weight now {d['weight']:g}){moved}"
    )
