"""A bounded store: what a run costs on a store of 1,000,000 runs against an empty one, and
the store's file size over 20,000 runs of one job with keep_runs 1000.

1. A run (``with job_metrics(...)`` in a warm process, delivered to a real Pushgateway,
   then its group trimmed, as every run does) on three stores, interleaved: empty; 1,000,000
   runs over 100 groups of 10,000 (each at the default keep_runs: the steady state); and
   1,000,000 runs in the run's own group with keep_runs 0 and keep_days 0 (nothing trimmed:
   no query may grow with the group). Target: each big store within 1.5x of the empty one. Printed
   beside: one sweep of the 100-group store (all within their limits), and how a group of
   1,000,000 runs is brought down to 10,000 by its own runs (0.5 s of trimming each).
2. 20,000 runs of one job with a 20-line output tail each, keep_runs 1000, delivered to a
   real Pushgateway: the store's size (the SQLite file with its WAL and shared memory)
   every 2,000 runs, beside the same job with keep_runs 0. Target: flat (the last size
   within 10% of the size at 2,000 runs).

    .venv/bin/python benchmarks/bench_retention.py [--repeat 200] [--runs 20000]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _common import header, interleave, parser, pushgateway, verdict, write_json
from populate import job_name, populate

from jobreport import job_metrics, load_config
from jobreport.config import Config
from jobreport.result import RunResult
from jobreport.runs import Recorder
from jobreport.spec import JobSpec
from jobreport.state import group_key
from jobreport.store.retention import Retention
from jobreport.store.store import Store

TAIL = "\n".join(f"2026-12-01 03:00:{i:02d} dumped table t{i}: 1234 rows" for i in range(20))


def config(url: str, db: Path, **settings: object) -> Config:
    return load_config(env={}, gateway=url, db=f"sqlite:///{db}", instance="bench",
                       **settings)


def one_run(cfg: Config, job: str) -> None:
    with job_metrics(job, config=cfg) as run:
        run.set_size(1000)


def run_cost(url: str, tmp: Path, repeat: int) -> tuple[dict[str, object], list[str]]:
    empty, spread, deep = tmp / "empty.db", tmp / "spread.db", tmp / "deep.db"
    t0 = time.perf_counter()
    populate(spread, 1_000_000, 100, pending=False)
    populate(deep, 1_000_000, 1, pending=False)
    print(f"   two stores of 1,000,000 runs filled in {time.perf_counter() - t0:.1f} s "
          f"({spread.stat().st_size / 2**20:.0f} MiB, {deep.stat().st_size / 2**20:.0f} MiB)")
    Store(f"sqlite:///{empty}").ensure_schema()
    job = job_name(42)
    deep_job = job_name(0)
    cfgs = {"empty": config(url, empty), "spread": config(url, spread),
            "deep": config(url, deep, keep_runs=0, keep_days=0)}
    # the first run of a store sweeps it (due at once): timed on its own, not below
    t0 = time.perf_counter()
    one_run(cfgs["spread"], job)
    first = (time.perf_counter() - t0) * 1000
    print(f"   first run on the 100-group store (trims its group, sweeps all 100): "
          f"{first:.1f} ms")
    stats = interleave({
        "run, empty store": lambda: one_run(cfgs["empty"], job),
        "run, 1M runs / 100 groups (keep 10,000)": lambda: one_run(cfgs["spread"], job),
        "run, 1M runs in its group (keep all)": lambda: one_run(cfgs["deep"], deep_job),
    }, repeat, warmup=5)
    for s in stats.values():
        print("   " + s.line())
    base = stats["run, empty store"].median
    lines = []
    for name in ("run, 1M runs / 100 groups (keep 10,000)", "run, 1M runs in its group (keep all)"):
        ratio = stats[name].median / base
        lines.append(verdict(f"{name} <= 1.5x empty", ratio <= 1.5,
                             f"{stats[name].median:.2f} ms vs {base:.2f} ms = {ratio:.2f}x"))
    spread_store = Store(f"sqlite:///{spread}")
    retention = Retention()
    t0 = time.perf_counter()
    spread_store.ensure_schema()
    from jobreport.store import retention as retention_module

    swept = retention_module.sweep(spread_store._db, retention, ["pushgateway"],
                                   deadline=time.monotonic() + 60, now=time.time() + 7200)
    sweep_ms = (time.perf_counter() - t0) * 1000
    print(f"   one sweep of 100 groups x 10,000 runs, nothing to remove: {sweep_ms:.0f} ms "
          f"(finished: {swept})")
    results: dict[str, object] = {k: v.to_json() for k, v in stats.items()}
    results["first_run_ms"] = round(first, 1)
    results["sweep_ms"] = round(sweep_ms, 1)
    results["catch_up"] = catch_up(deep, url)
    return results, lines


def catch_up(deep: Path, url: str) -> list[dict[str, float]]:
    """A group of 1,000,000 runs under the default keep_runs: its own runs trim it, 0.5 s
    of trimming each after the end is delivered."""
    cfg = config(url, deep)
    store = Store(cfg.db)
    key = group_key({"job": job_name(0), "instance": "bench"})
    rounds = []
    count = "SELECT count(*) AS n FROM jobreport_runs WHERE group_key = :k"
    for i in range(200):
        t0 = time.perf_counter()
        one_run(cfg, job_name(0))
        took = time.perf_counter() - t0
        with store._db.read() as tx:
            left = int(tx.rows(count, {"k": key})[0]["n"])
        rounds.append({"run": i + 1, "seconds": round(took, 3), "runs_left": left})
        if i < 3 or left <= 10_001:
            print(f"   catching up: run {i + 1} took {took * 1000:.0f} ms, the group holds "
                  f"{left} runs")
        if left <= 10_001:
            break
    return rounds


def size_over_time(url: str, tmp: Path, runs: int) -> tuple[dict[str, object], list[str]]:
    sizes: dict[str, list[tuple[int, int]]] = {}
    for keep in (1000, 0):
        db = tmp / f"flat-{keep}.db"
        cfg = config(url, db, keep_runs=keep)
        recorder = Recorder(cfg)
        store = Store(cfg.db)
        sizes[str(keep)] = []
        t0 = time.perf_counter()
        for i in range(1, runs + 1):
            run = recorder.start(JobSpec("nightly"), wait=0.0, delay=0.0)
            recorder.finish(run, RunResult.measured(run.monotonic_start, outcome="success",
                                                    exit_code=0, size=1000.0, tail=TAIL))
            if i % 2000 == 0:
                size = store.size() or 0
                sizes[str(keep)].append((i, size))
                print(f"   keep_runs {keep:>4}: after {i:>6} runs {size / 2**20:7.2f} MiB "
                      f"({time.perf_counter() - t0:.0f} s)")
    flat = sizes["1000"]
    growth = flat[-1][1] / flat[0][1]
    line = verdict("store flat over the runs with keep_runs 1000", growth <= 1.10,
                   f"{flat[0][1] / 2**20:.2f} MiB at {flat[0][0]} runs, "
                   f"{flat[-1][1] / 2**20:.2f} MiB at {flat[-1][0]} "
                   f"({(growth - 1) * 100:+.1f}%); keep_runs 0: "
                   f"{sizes['0'][-1][1] / 2**20:.2f} MiB")
    return {"sizes": sizes}, [line]


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--runs", type=int, default=20_000)
    opts = args.parse_args()
    repeat = opts.repeat or 200
    header("a run on a store of 1,000,000 runs vs an empty one; the store's size over runs")
    with tempfile.TemporaryDirectory() as tmp, pushgateway(Path(tmp) / "pg") as url:
        cost, lines = run_cost(url, Path(tmp), repeat)
        flat, more = size_over_time(url, Path(tmp), opts.runs)
    write_json(opts.json, "bench_retention", {**cost, **flat, "verdicts": lines + more})


if __name__ == "__main__":
    main()
