"""Automatic canary rollback on AV-digits: how many requests until a canary that is worse on
one modality loses its traffic, and how many users saw its answers meanwhile.

A real ``polyfuse serve CHAMPION --canary CANARY --canary-weight W`` per seed (a fresh
judge each time) on loopback. The request stream is the held-out test manifest (a speaker
never heard in training), rows drawn at random; a share of the requests sends the audio
only (a camera that is off), which is where the default canary (``audio_worse``: gated
fusion trained without modality dropout and auxiliary losses, from
``benchmarks/release_gate.py``) is worse. Each request comes from one of ``--users``
callers (``X-Polyfuse-Route``, so routing is sticky per user) and a share of them gets its
true label back through ``POST /v1/feedback`` (the real-accuracy signal; the label-free
estimate needs none). The stream stops when ``GET /v1/versions`` shows the rollback, or
after ``--max-requests``.

Printed per seed: requests until the rollback was seen (polled every ``--poll``
requests), the deciding signals, the share of users and of requests that got canary
answers; then the median over seeds.

    python benchmarks/canary_rollback.py [--champion DIR] [--canary DIR] [--data TEST.jsonl]
        [--weight 0.1] [--seeds 5] [--users 200] [--audio-only 0.3] [--feedback 0.5] [--json F]

Timed runs belong to a quiet machine; this script measures counts, not time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

GATEBENCH = Path("/tmp/gatebench")


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--champion", type=Path, default=GATEBENCH / "models" / "champion")
    p.add_argument("--canary", type=Path, default=GATEBENCH / "models" / "audio_worse")
    p.add_argument("--data", type=Path, default=GATEBENCH / "hard" / "test.jsonl")
    p.add_argument("--weight", type=float, default=0.1, help="the canary's share of users")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--users", type=int, default=200, help="callers in the stream")
    p.add_argument("--audio-only", type=float, default=0.3, help="share of audio-only requests")
    p.add_argument("--feedback", type=float, default=0.5, help="share of requests labelled")
    p.add_argument("--max-requests", type=int, default=20_000)
    p.add_argument("--poll", type=int, default=10, help="requests between checks")
    p.add_argument("--min-samples", type=int, default=None, help="canary_judge.min_samples")
    p.add_argument("--json", type=Path, help="also write the results here")
    return p.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: argparse.Namespace, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A server with the canary; returns it and its URL once ready."""
    port = free_port()
    config = folder / "serve.yaml"
    judge = {} if args.min_samples is None else {"min_samples": args.min_samples}
    config.write_text(json.dumps({"canary_judge": judge}))
    cmd = [sys.executable, "-m", "polyfuse", "serve", str(args.champion), "--port", str(port)]
    cmd += ["--canary", str(args.canary), "--canary-weight", str(args.weight)]
    cmd += ["--config", str(config), "--quiet"]
    log = (folder / f"serve-{port}.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"the server did not start; see {log.name}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rows_of(manifest: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    for row in rows:
        for key in ("image", "audio"):
            if row.get(key):
                row[key] = (manifest.parent / row[key]).read_bytes()
    return rows


def one_seed(args: argparse.Namespace, url: str, rows: list[dict[str, Any]], seed: int) -> dict:
    """Drive one stream until the rollback is seen."""
    rng = random.Random(seed)
    users = [f"s{seed}-user-{k}" for k in range(args.users)]
    seen: dict[str, set[str]] = {}
    roles: list[str] = []
    state: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(args.max_requests):
            row, user = rng.choice(rows), rng.choice(users)
            files = {"audio": ("a.wav", row["audio"], "audio/wav")}
            if rng.random() >= args.audio_only and row.get("image"):
                files["image"] = ("i.png", row["image"], "image/png")
            answer = client.post(
                "/v1/predict", files=files, headers={"X-Polyfuse-Route": user}
            ).json()
            role = answer.get("role", "error")
            roles.append(role)
            seen.setdefault(user, set()).add(role)
            if rng.random() < args.feedback and "request_id" in answer:
                label = {"request_id": answer["request_id"], "label": str(row["label"])}
                client.post("/v1/feedback", json=label)
            if (i + 1) % args.poll == 0:
                state = client.get("/v1/versions").json()
                if state["canary"]["rolled_back"]:
                    break
    decision = next(iter(state.get("decisions", [])), None)
    rolled = bool(state.get("canary", {}).get("rolled_back"))
    return {
        "seed": seed,
        "rolled_back": rolled,
        "requests": len(roles),
        "signals": [] if decision is None else decision["signals"],
        "evidence": None
        if decision is None
        else {s: decision["judgement"]["signals"][s] for s in decision["signals"]},
        "users_seen_canary": sum("canary" in r for r in seen.values()) / len(seen),
        "requests_answered_by_canary": roles.count("canary") / len(roles),
    }


def main() -> None:
    args = arguments()
    rows = rows_of(args.data)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "polyfuse-canary-bench"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for seed in range(args.seeds):
        proc, url = start(args, work)
        try:
            result = one_seed(args, url, rows, seed)
        finally:
            stop(proc)
        results.append(result)
        print(
            f"seed {seed}: {'rolled back' if result['rolled_back'] else 'NOT rolled back'} "
            f"after {result['requests']} requests on {', '.join(result['signals']) or '-'}; "
            f"users who saw canary answers {result['users_seen_canary']:.1%}, "
            f"requests {result['requests_answered_by_canary']:.1%}",
            flush=True,
        )
    done = [r for r in results if r["rolled_back"]]
    summary = {
        "weight": args.weight,
        "users": args.users,
        "audio_only": args.audio_only,
        "feedback": args.feedback,
        "seeds": len(results),
        "rolled_back": len(done),
        "median_requests": statistics.median(r["requests"] for r in done) if done else None,
        "max_requests": max((r["requests"] for r in done), default=None),
        "median_users_seen_canary": statistics.median(r["users_seen_canary"] for r in results),
        "median_requests_by_canary": statistics.median(
            r["requests_answered_by_canary"] for r in results
        ),
    }
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "seeds": results}, indent=2))


if __name__ == "__main__":
    main()
