"""``jobreport run`` as a whole process, against a real Pushgateway and a fresh SQLite store.

1. ``jobreport run -- true`` versus a minimal hand-written prometheus_client script that runs
   the command and pushes its duration and last success with ``pushadd_to_gateway``
   (target: at most 3x);
2. ``jobreport run -- sleep 1`` versus ``sleep 1`` (target: at most 50 ms added);
3. peak RSS of ``jobreport run -- true`` versus ``python -c pass`` (target: under 60 MiB).

Measurements alternate (A B A B ...) so that both sides see the same machine load.

    .venv/bin/python benchmarks/bench_run.py [--repeat 25]
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

from _common import (
    JOBREPORT,
    PYTHON,
    Stats,
    cli_ready,
    header,
    interleave,
    parser,
    pushgateway,
    verdict,
    write_json,
)

BASELINE = textwrap.dedent("""
    import subprocess, sys, time
    from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

    start = time.time()
    code = subprocess.call(sys.argv[2:])
    registry = CollectorRegistry()
    Gauge("job_duration_seconds", "Duration of the job", registry=registry).set(
        time.time() - start)
    if code == 0:
        Gauge("job_last_success_unixtime", "Last success", registry=registry).set_to_current_time()
    pushadd_to_gateway(sys.argv[1], job="baseline", registry=registry)
    sys.exit(code)
""")


def runner(argv: list[str], env: dict[str, str]) -> Callable[[], None]:
    def run() -> None:
        proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{argv} exited {proc.returncode}: {proc.stderr.decode()[-800:]}")
    return run


# A small intermediary forks and execs the command, then reports the peak RSS of what it
# reaped (RUSAGE_CHILDREN). Forked straight from this big process, the child's figure would
# include the pages it shared with us until exec.
_MEASURE = textwrap.dedent("""
    import os, resource, sys
    pid = os.fork()
    if pid == 0:
        os.execvp(sys.argv[1], sys.argv[1:])
    os.waitpid(pid, 0)
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
""")


def peak_rss(argv: list[str], env: dict[str, str]) -> float:
    """Peak RSS in bytes of ``argv``'s process tree (its largest process), from rusage."""
    out = subprocess.run([PYTHON, "-c", _MEASURE, *argv], env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    opts = parser(__doc__).parse_args()
    repeat = opts.repeat or 25
    header("jobreport run, whole process")
    if not cli_ready("run"):
        raise SystemExit("jobreport run is not installed yet (pip install -e .)")
    results: dict[str, object] = {}
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp, pushgateway(Path(tmp) / "pg") as url:
        script = Path(tmp) / "baseline.py"
        script.write_text(BASELINE)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("JOBREPORT_") and k != "PUSHGATEWAY_URL"}
        env.update({"JOBREPORT_GATEWAY": url, "JOBREPORT_DB": f"sqlite:///{tmp}/store.db",
                    "JOBREPORT_INSTANCE": "bench", "XDG_CONFIG_HOME": f"{tmp}/config"})

        stats = interleave({
            "baseline script -- true": runner([PYTHON, str(script), url, "true"], env),
            "jobreport run -- true": runner([JOBREPORT, "run", "--job", "t", "--", "true"],
                                            env),
        }, repeat)
        for s in stats.values():
            print("   " + s.line())
        base = stats["baseline script -- true"].median
        ours = stats["jobreport run -- true"].median
        verdicts.append(verdict("jobreport run -- true <= 3x baseline", ours <= 3 * base,
                                f"{ours:.1f} ms vs {base:.1f} ms = {ours / base:.2f}x"))
        results["true"] = [s.to_json() for s in stats.values()]

        sleeps = interleave({
            "sleep 1": runner(["sleep", "1"], env),
            "jobreport run -- sleep 1": runner(
                [JOBREPORT, "run", "--job", "s", "--", "sleep", "1"], env),
        }, max(5, repeat // 2), warmup=1)
        for s in sleeps.values():
            print("   " + s.line())
        added = sleeps["jobreport run -- sleep 1"].median - sleeps["sleep 1"].median
        verdicts.append(verdict("added to a 1 s job <= 50 ms", added <= 50.0,
                                f"{added:.1f} ms"))
        results["sleep"] = [s.to_json() for s in sleeps.values()]

        rss_base = [peak_rss([PYTHON, "-c", "pass"], env) for _ in range(5)]
        rss_ours = [peak_rss([JOBREPORT, "run", "--job", "t", "--", "true"], env)
                    for _ in range(5)]
        r_base = Stats("peak RSS python -c pass", rss_base, "MiB")
        r_ours = Stats("peak RSS jobreport run -- true", rss_ours, "MiB")
        print("   " + r_base.line())
        print("   " + r_ours.line())
        verdicts.append(verdict("peak RSS < 60 MiB", r_ours.max < 60.0,
                                f"{r_ours.max:.1f} MiB (python -c pass: {r_base.max:.1f} MiB)"))
        results["rss"] = [r_base.to_json(), r_ours.to_json()]
    write_json(opts.json, "bench_run.py", {**results, "verdicts": verdicts})


if __name__ == "__main__":
    main()
