"""``jobreport history JOB`` on a store of 1,000,000 runs (100 jobs of 10,000 runs each).

Target: under 0.5 s for the whole command. Printed beside it: the same command on an empty
store (the fixed cost of starting the process), ``jobreport history`` of every job, and the
library call ``Store.history(job)`` alone. ``jobreport history --outcome timeout`` (no job:
20 timeouts among the million runs) is measured on the store and on a copy without the
outcome indexes of schema 6 (what an older store did: read the whole table); target: within
1.25x of ``history JOB``.

    .venv/bin/python benchmarks/bench_history.py [--repeat 20] [--runs 1000000]
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

from _common import (
    JOBREPORT,
    clean_env,
    cli_ready,
    header,
    interleave,
    measure,
    parser,
    verdict,
    write_json,
)
from populate import job_name, populate

from jobreport.store.store import Store


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--runs", type=int, default=1_000_000)
    opts = args.parse_args()
    repeat = opts.repeat or 20
    header(f"history on a store of {opts.runs} runs")
    results: dict[str, object] = {}
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        big, empty = Path(tmp) / "big.db", Path(tmp) / "empty.db"
        t0 = time.perf_counter()
        populate(big, opts.runs, 100, pending=False)
        print(f"   store filled in {time.perf_counter() - t0:.1f} s "
              f"({big.stat().st_size / 2**20:.0f} MiB)")
        Store(f"sqlite:///{empty}").ensure_schema()
        job = job_name(42)

        bare = Path(tmp) / "bare.db"  # the same runs without the outcome indexes
        shutil.copy(big, bare)
        with sqlite3.connect(bare) as conn:
            conn.execute("DROP INDEX ix_jobreport_runs_outcome")
            conn.execute("DROP INDEX ix_jobreport_runs_job_outcome")

        store = Store(f"sqlite:///{big}")
        lib = measure("Store.history(job) (library, warm)", lambda: store.history(job), repeat)
        print("   " + lib.line())
        results["library"] = lib.to_json()
        old = Store(f"sqlite:///{bare}")
        by_outcome = [
            measure("Store.history(outcomes=[timeout]) (library, warm)",
                    lambda: store.history(outcomes=["timeout"]), repeat),
            measure("the same without the outcome indexes",
                    lambda: old.history(outcomes=["timeout"]), repeat)]
        for m in by_outcome:
            print("   " + m.line())
        results["library_outcome"] = [m.to_json() for m in by_outcome]

        if not cli_ready("history"):
            print("   (jobreport history not available yet: CLI part not measured)")
        else:
            env = clean_env()

            def cli(db: Path, *extra: str) -> object:
                def run() -> None:
                    proc = subprocess.run([JOBREPORT, "history", "--db", str(db), *extra],
                                          env=env, capture_output=True, text=True,
                                          check=False)
                    if proc.returncode != 0:
                        raise SystemExit(proc.stderr)
                return run

            shown = subprocess.run([JOBREPORT, "history", "--db", str(big), job], env=env,
                                   capture_output=True, text=True, check=True).stdout
            print(f"   jobreport history {job} printed {shown.count(chr(10))} lines; first:")
            print("     " + "\n     ".join(shown.splitlines()[:3]))
            stats = interleave({
                "jobreport history JOB (empty store)": cli(empty, job),
                "jobreport history JOB (1M runs)": cli(big, job),
                "jobreport history (1M runs, all jobs)": cli(big),
                "jobreport history JOB --json (1M runs)": cli(big, job, "--json"),
                "jobreport history --outcome timeout (1M runs)": cli(big, "--outcome",
                                                                     "timeout"),
                "jobreport history --outcome timeout (1M runs, no outcome index)": cli(
                    bare, "--outcome", "timeout"),
            }, repeat)
            for s in stats.values():
                print("   " + s.line())
            ours = stats["jobreport history JOB (1M runs)"].median
            verdicts.append(verdict("jobreport history JOB < 0.5 s", ours < 500,
                                    f"{ours:.0f} ms (empty store: "
                                    f"{stats['jobreport history JOB (empty store)'].median:.0f}"
                                    " ms)"))
            by_job = stats["jobreport history JOB (1M runs)"].median
            timeouts = stats["jobreport history --outcome timeout (1M runs)"].median
            unindexed = stats["jobreport history --outcome timeout (1M runs, no outcome "
                              "index)"].median
            verdicts.append(verdict("history --outcome timeout within 1.25x of history JOB",
                                    timeouts < 1.25 * by_job,
                                    f"{timeouts / by_job:.2f}x (without the index: "
                                    f"{unindexed / by_job:.2f}x)"))
            results["cli"] = [s.to_json() for s in stats.values()]
    write_json(opts.json, "bench_history.py", {**results, "verdicts": verdicts})


if __name__ == "__main__":
    main()
