"""The longest stall of an asyncio event loop caused by jobreport, with a gateway that accepts
connections and never answers and the default budget (10 s; JOBREPORT_TIMEOUT 5 s, start
budget 1 s).

Each sample is a fresh process (cold: the first run of a program pays for the imports and
the store's set-up, and that is when a stall would hurt) running one asyncio program twice
(``asyncio.run`` twice: the second run is warm). A ticker task sleeps 1 ms at a time and
records how late each wake-up is; the figure is the largest lateness while the program's
jobs run and their ends are delivered: an ``async with`` block with heartbeats every second,
five decorated coroutines through ``asyncio.gather`` (one fails), a decorated async
generator, a decorated generator and a plain ``with`` inside a coroutine, all at once.
The baseline is the same program without jobreport (a stand-in ``job_metrics`` that does
nothing), run A/B interleaved with it in the same pass. Target: under 50 ms.

On a shared machine the other processes' load makes both sides stall now and then for
tens of milliseconds (the loop thread waits for a core), which hides what jobreport itself
causes. ``--fifo`` runs each program under ``chrt -f 1`` (SCHED_FIFO, the lowest real-time
priority: no ordinary process preempts it), so that what remains is the program's own doing:
the GIL held by jobreport's threads, and the garbage collector. The programs mostly sleep.

    .venv/bin/python benchmarks/bench_async.py [--repeat 5] [--fifo]
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from _common import (
    PYTHON,
    ROOT,
    Stats,
    clean_env,
    header,
    parser,
    verdict,
    write_json,
)

from tests.faults import SilentServer

TARGET_MS = 50.0

PROGRAM = r'''
import asyncio, json, sys, time

if sys.argv[1] == "jobreport":
    from jobreport import job_metrics
else:
    class job_metrics:  # the same program without jobreport
        def __init__(self, job, **spec): pass
        def __call__(self, func): return func
        def __enter__(self): return self
        def __exit__(self, *exc): return False
        async def __aenter__(self): return self
        async def __aexit__(self, *exc): return False

TICK = 0.001


async def ticker(stop, lags):
    loop = asyncio.get_running_loop()
    last = loop.time()
    while not stop.is_set():
        await asyncio.sleep(TICK)
        now = loop.time()
        lags.append(now - last - TICK)
        last = now


@job_metrics("bench_async_download")
async def download(i):
    await asyncio.sleep(0.2)
    if i == 3:
        raise ConnectionError("the server refused")
    return i


@job_metrics("bench_async_items")
async def items(n):
    for i in range(n):
        await asyncio.sleep(0.02)
        yield i


@job_metrics("bench_async_lines")
def lines(n):
    yield from range(n)


async def long_block():
    async with job_metrics("bench_async_long", heartbeat="1s"):
        await asyncio.sleep(2.5)  # two heartbeats meanwhile, each to a silent gateway


async def consume():
    return [i async for i in items(5)] + list(lines(3))


async def plain_with():
    with job_metrics("bench_async_plain"):  # a plain `with` in a coroutine
        await asyncio.sleep(0.1)


async def main():
    stop, lags = asyncio.Event(), []
    tick = asyncio.create_task(ticker(stop, lags))
    await asyncio.sleep(0.05)
    lags.clear()
    t0 = time.perf_counter()
    await asyncio.gather(long_block(), consume(), plain_with(),
                         *(download(i) for i in range(5)), return_exceptions=True)
    elapsed = time.perf_counter() - t0
    stop.set()
    await tick
    lags.sort()
    return {"max_lag": lags[-1], "p99_lag": lags[int(len(lags) * 0.99)], "ticks": len(lags),
            "elapsed": elapsed}


first = asyncio.run(main())
second = asyncio.run(main())
print(json.dumps({"first": first, "second": second}))
'''


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--fifo", action="store_true",
                      help="run each program under chrt -f 1 (no preemption by other load)")
    opts = args.parse_args()
    repeat = opts.repeat or 5
    prefix = ["chrt", "-f", "1"] if opts.fifo else []
    header("event loop stall, gateway that accepts and never answers, default budget "
           f"(cold process: asyncio.run twice){' under chrt -f 1' if opts.fifo else ''}")
    with tempfile.TemporaryDirectory() as tmp, SilentServer() as silent:
        program = Path(tmp) / "program.py"
        program.write_text(PROGRAM)
        values: dict[str, list[float]] = {}
        walls: dict[str, list[float]] = {"jobreport": [], "bare": []}
        for n in range(repeat):
            for mode in ("jobreport", "bare"):  # A/B interleaved: the same machine load
                env = {**clean_env(), "PYTHONPATH": str(ROOT),
                       "JOBREPORT_GATEWAY": silent.url, "JOBREPORT_INSTANCE": "bench",
                       "JOBREPORT_DB": f"sqlite:///{tmp}/store-{n}.db"}
                proc = subprocess.run([*prefix, PYTHON, str(program), mode], env=env, cwd=tmp,
                                      capture_output=True, text=True, timeout=300,
                                      check=False)
                if proc.returncode != 0:
                    raise SystemExit(f"the program ({mode}) failed: {proc.stderr[-2000:]}")
                data = json.loads(proc.stdout.strip().splitlines()[-1])
                label = "with jobreport" if mode == "jobreport" else "without jobreport"
                for run in ("first", "second"):
                    for figure in ("max_lag", "p99_lag"):
                        key = f"{figure.replace('_lag', '')} lag, {label}, {run} run"
                        values.setdefault(key, []).append(data[run][figure])
                walls[mode].append(data["first"]["elapsed"])
        stats = {k: Stats(k, v) for k, v in sorted(values.items())}
        for s in stats.values():
            print("   " + s.line())
        for mode, v in walls.items():
            print("   " + Stats(f"program's first run, wall ({mode})", v, "s").line())
        worst = max(stats[f"max lag, with jobreport, {r} run"].max for r in ("first", "second"))
        bare = max(stats[f"max lag, without jobreport, {r} run"].max
                   for r in ("first", "second"))
        verdict(f"the loop's longest stall with jobreport < {TARGET_MS:g} ms",
                worst < TARGET_MS, f"worst {worst:.1f} ms; without jobreport {bare:.1f} ms")
        write_json(opts.json, "bench_async", {"fifo": opts.fifo,
                                              **{k: s.to_json() for k, s in stats.items()}})
    os.environ.pop("JOBREPORT_GATEWAY", None)


if __name__ == "__main__":
    main()
