"""Where a server's CPU goes: CPU time per request of every thread of a polyfuse server
(and its preprocessing workers) under closed-loop load, with each batcher's batches.

Starts one real server (`serve_common.Server`, the options of a `serve_load.py` variant),
drives it with ``--concurrency`` keep-alive clients for ``--seconds``, and reads each
thread's CPU time from ``/proc/<pid>/task/<tid>/stat`` before and after; thread names come
from ``py-spy dump`` when py-spy is installed (Python 3.11 does not name OS threads). The
table says which thread limits throughput (a batch thread near 100 % of a core) and what
one request costs in all (the sum), which is what the 2 cores divide.

With ``--gil`` (needs py-spy), ``py-spy record --gil --nonblocking`` samples the server
during the same window and counts, per thread, the samples in which that thread held the
GIL: the share of wall time the GIL was held in all says whether the interpreter lock is
the saturated resource (near 100 % while the cores are not), and the per-thread and
per-function shares say whose Python work fills it (the event loop's HTTP handling against
the batch threads' glue around the torch kernels).

Run: ``.venv/bin/python benchmarks/serve_profile.py --variant batched --concurrency 16``
(Linux only; about 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_common import Server, closed_loop, form, load_inputs, variant_options


def thread_cpu(pid: int) -> dict[str, float]:
    """Thread id -> CPU seconds (user + system) of every thread of ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        out[task.name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_names(pid: int) -> dict[str, str]:
    """Thread id -> Python thread name (``py-spy dump``), empty without py-spy."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return {}
    cmd = [spy, "dump", "-p", str(pid)]
    dump = subprocess.run(cmd, check=False, capture_output=True, text=True).stdout
    return {m[1]: m[2] or "?" for m in re.finditer(r'Thread (\d+) \(\w+\)(?:: "([^"]+)")?', dump)}


def start_gil_sampler(pid: int, seconds: float, out: Path, rate: int) -> subprocess.Popen[bytes]:
    """``py-spy record`` of the GIL holder of ``pid`` for ``seconds``, raw folded stacks."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("--gil needs py-spy: .venv/bin/pip install py-spy")
    cmd = [spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    cmd += ["--rate", str(rate), "--format", "raw", "--threads", "--gil", "--nonblocking"]
    cmd += ["--output", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def gil_shares(
    folded: Path, seconds: float, rate: int
) -> tuple[float, dict[str, float], dict[str, float], dict[str, float], dict[str, float]]:
    """(GIL held share of wall time, share per thread, per leaf function's file, and for
    the busiest holder per function on its stacks, counted once per sample it is on, and
    per function it was in itself, the stack's leaf).

    Each line of py-spy's raw output is ``thread (0xID) "name";frame;...;frame COUNT``; with
    ``--gil`` only the thread holding the GIL is sampled, so samples / (rate * seconds) is
    the share of wall time the lock was held.
    """
    ticks = max(1.0, rate * round(seconds))
    threads: dict[str, float] = {}
    leaves: dict[str, float] = {}
    stacks: list[tuple[str, list[str], float]] = []
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        name = re.sub(r"^thread \((0x[0-9A-Fa-f]+)\)\s*", r"\1 ", frames[0]).strip()
        threads[name] = threads.get(name, 0.0) + int(count) / ticks
        leaf = frames[-1]
        where = re.search(r"\(([^():]+)", leaf)
        module = where[1] if where else leaf
        leaves[module] = leaves.get(module, 0.0) + int(count) / ticks
        stacks.append((name, frames[1:], int(count) / ticks))
    top = max(threads, key=lambda t: threads[t], default="")
    functions: dict[str, float] = {}
    own: dict[str, float] = {}
    for name, frames, share in stacks:
        if name == top and frames:
            for frame in set(frames):
                functions[frame] = functions.get(frame, 0.0) + share
            own[frames[-1]] = own.get(frames[-1], 0.0) + share
    return sum(threads.values()), threads, leaves, functions, own


def children_cpu(pid: int) -> float:
    """CPU seconds of ``pid``'s child processes (preprocessing workers)."""
    import psutil  # type: ignore[import-untyped]

    total = 0.0
    for child in psutil.Process(pid).children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifact", default="demo-output/model", help="artifact folder")
    parser.add_argument("--variant", default="batched", choices=("naive", "batched", "cached"))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--inputs", type=int, default=64, help="distinct inputs to cycle over")
    parser.add_argument("--gil", action="store_true", help="sample the GIL holder (py-spy)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=12, help="rows per GIL table")
    args = parser.parse_args()
    inputs = load_inputs(args.artifact, args.inputs)
    bodies = [form(x) for x in (inputs[:8] if args.variant == "cached" else inputs)]

    def request(i: int) -> tuple[str, dict[str, object]]:
        return "/v1/predict", bodies[i % len(bodies)]

    with Server(args.artifact, variant_options(args.variant)) as server:
        asyncio.run(closed_loop(server.url, request, 4, 2.0))  # warm-up
        before, workers = thread_cpu(server.pid), children_cpu(server.pid)
        folded = Path(tempfile.mkdtemp()) / "gil.txt"
        if args.gil:
            print(f"py-spy folded stacks (for a closer look): {folded}")
        spy = start_gil_sampler(server.pid, args.seconds, folded, args.rate) if args.gil else None
        result = asyncio.run(closed_loop(server.url, request, args.concurrency, args.seconds))
        after, workers = thread_cpu(server.pid), children_cpu(server.pid) - workers
        if spy is not None:
            spy.wait(timeout=60)
        names = thread_names(server.pid)
        gauges = server.metrics()
    n = max(1, len(result.latencies_ms))
    print(
        f"{args.variant} at concurrency {args.concurrency}: {result.rps:.1f} req/s, "
        f"p50 {result.pct(50):.1f} ms, p99 {result.pct(99):.1f} ms ({n} requests)"
    )
    rows = sorted(((after[t] - before.get(t, 0.0), t) for t in after), reverse=True)
    total = sum(cpu for cpu, _ in rows) + workers
    print(f"{'thread':<28}{'ms CPU / request':>18}{'% of a core':>14}")
    for cpu, tid in rows:
        if cpu >= 0.01:
            print(
                f"{names.get(tid, tid):<28}{1000 * cpu / n:>18.3f}"
                f"{100 * cpu / result.wall_s:>13.0f}%"
            )
    if workers > 0:
        share = 100 * workers / result.wall_s
        print(f"{'(worker processes)':<28}{1000 * workers / n:>18.3f}{share:>13.0f}%")
    print(f"{'server in all':<28}{1000 * total / n:>18.3f}{100 * total / result.wall_s:>13.0f}%")
    print(f"{'client (this process)':<28}{1000 * result.cpu_s / n:>18.3f}")
    for key, value in sorted(gauges.items()):
        if key.startswith("polyfuse_runtime_batchers_") and key.endswith(
            ("_batches", "_items", "_mean_batch_ms", "_online_cap")
        ):
            print(f"  {key.removeprefix('polyfuse_runtime_batchers_')}: {value:g}")
    if spy is not None:
        held, threads, leaves, functions, own = gil_shares(folded, args.seconds, args.rate)
        print(f"GIL held {100 * held:.0f} % of wall time (py-spy, {args.rate} samples/s)")
        top = max(threads, key=lambda t: threads[t], default="?").split(": ")[-1]
        for label, shares in (
            ("thread", threads),
            ("leaf function's file", leaves),
            (f"function on {top}'s stack", functions),
            (f"function {top} is in itself", own),
        ):
            print(f"{'GIL holder: ' + label:<52}{'% of wall time':>16}")
            for name, share in sorted(shares.items(), key=lambda kv: -kv[1])[: args.top]:
                print(f"  {name[-50:]:<50}{100 * share:>16.1f}")


if __name__ == "__main__":
    main()
