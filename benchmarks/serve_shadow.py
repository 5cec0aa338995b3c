"""What a shadow version costs the champion: p99 latency at concurrency 16 with and without
``--shadow``, over loopback from a second process.

Two real servers side by side (``polyfuse serve CHAMPION`` and ``polyfuse serve CHAMPION
--shadow SHADOW``, embedding cache off so every request computes), driven in turn by
``--concurrency`` closed-loop keep-alive clients (`serve_common.closed_loop`) for
``--seconds`` per round after a ``--warmup`` that is not counted; the order alternates
between rounds, and before each round the
shadow's queue is drained, so one variant's leftovers never load the other's round.
Printed: per variant the pooled p50/p95/p99 and throughput, the ratio of p99s (the
issue's target: at most 1.2), and the shadow's counts (run, dropped by its budget).

    python benchmarks/serve_shadow.py [--champion DIR] [--shadow DIR] [--data TEST.jsonl]
        [--concurrency 16] [--seconds 10] [--rounds 4] [--json F]

Defaults: the AV-digits models of ``benchmarks/release_gate.py`` in /tmp/gatebench
(``champion``, concat fusion; ``better``, gated: no encoder is shared, the worst case).
Timed: run it alone on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Result, closed_loop, form, free_port, manifest_inputs

GATEBENCH = Path("/tmp/gatebench")


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--champion", type=Path, default=GATEBENCH / "models" / "champion")
    p.add_argument("--shadow", type=Path, default=GATEBENCH / "models" / "better")
    p.add_argument("--data", type=Path, default=GATEBENCH / "hard" / "test.jsonl")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--inputs", type=int, default=500, help="distinct requests cycled over")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds per server, not counted")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args()


class Served:
    """``polyfuse serve`` in a child process (a context manager)."""

    def __init__(self, args: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [sys.executable, "-m", "polyfuse", "serve", *args, "--port", str(self.port)]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Served:
        env = {**os.environ, "POLYFUSE_SERVE_CACHE": "none"}  # every request computes
        self.proc = subprocess.Popen([*self.cmd, "--quiet"], env=env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.cmd} did not start")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def shadow(self) -> dict[str, Any] | None:
        """The shadow's counts (None without one)."""
        shadow: dict[str, Any] | None = httpx.get(self.url + "/v1/versions").json().get("shadow")
        return shadow

    def drain(self) -> None:
        """Wait until the shadow's queue is empty and nothing is in flight."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            shadow = self.shadow()
            if shadow is None or (shadow["queue_depth"] == 0 and shadow["in_flight"] == 0):
                return
            time.sleep(0.2)


def main() -> None:
    args = arguments()
    bodies = [form(x) for x in manifest_inputs(args.data, args.inputs)]

    def request(i: int) -> tuple[str, dict[str, Any]]:
        return "/v1/predict", bodies[i % len(bodies)]

    pooled: dict[str, Result] = {}
    with (
        Served([str(args.champion)]) as alone,
        Served([str(args.champion), "--shadow", str(args.shadow)]) as shadowed,
    ):
        servers = {"alone": alone, "shadow": shadowed}
        for server in servers.values():  # first requests pay for lazy set-up: not counted
            asyncio.run(closed_loop(server.url, request, args.concurrency, args.warmup))
        for r in range(args.rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in order:
                shadowed.drain()
                result = asyncio.run(
                    closed_loop(servers[name].url, request, args.concurrency, args.seconds)
                )
                into = pooled.setdefault(name, Result(args.concurrency, 0.0))
                into.latencies_ms += result.latencies_ms
                into.statuses.update(result.statuses)
                into.wall_s += result.wall_s
                print(f"round {r} {name}: {json.dumps(result.summary())}", flush=True)
        counts = shadowed.shadow()
    summary = {
        name: {k: v for k, v in res.summary().items() if k != "driver_cpu_cores"}
        for name, res in pooled.items()
    }
    ratio = pooled["shadow"].pct(99) / pooled["alone"].pct(99)
    out = {"variants": summary, "p99_ratio": round(ratio, 3), "shadow": counts}
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
