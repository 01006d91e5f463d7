"""``jobreport run`` as a whole process, against a real Pushgateway and a fresh SQLite store,
on a regular (non-editable) install of this checkout in a temporary venv (``_install.py``).

1. Start-up: from ``jobreport run`` being executed to its command running (the command
   writes the time it started) versus ``python -c pass``, the interpreter's own start
   (target: at most 2.5x). Also shown: the same command started directly, the cost of the
   time stamp itself, which the "net" figure leaves out.
2. ``jobreport run -- true`` versus a minimal hand-written prometheus_client script that runs
   the command and pushes its duration and last success with ``pushadd_to_gateway``
   (target: at most 1.6x); with ``--before DIR``, the same of another checkout (e.g. the
   previous commit, ``git archive``d there) in the same interleaved run;
3. ``jobreport run -- sleep 1`` versus ``sleep 1`` (time added);
4. peak RSS of ``jobreport run -- true`` versus ``python -c pass`` (target: under 60 MiB).

Measurements alternate (A B C A B C ...) so that every side sees the same machine load.

    .venv/bin/python benchmarks/bench_run.py [--repeat 25] [--before DIR]
"""

from __future__ import annotations

import subprocess
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from _common import (
    Stats,
    clean_env,
    header,
    interleave,
    parser,
    pushgateway,
    verdict,
    write_json,
)
from _install import install

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


# The command of the start-up figure: it writes the time it started (CLOCK_REALTIME, ns).
STAMP = ["sh", "-c", 'date +%s%N > "$0"']


class StartTimer:
    """Times from spawning ``argv + [stamp file]`` to the time its command wrote."""

    def __init__(self, argv: list[str], env: dict[str, str], stamp: Path) -> None:
        self.argv = [*argv, str(stamp)]
        self.env = env
        self.stamp = stamp
        self.values: list[float] = []

    def __call__(self) -> None:
        self.stamp.unlink(missing_ok=True)
        t0 = time.time_ns()
        proc = subprocess.run(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{self.argv} exited {proc.returncode}: "
                             f"{proc.stderr.decode()[-800:]}")
        self.values.append((int(self.stamp.read_text()) - t0) / 1e9)


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


def peak_rss(python: str, argv: list[str], env: dict[str, str]) -> float:
    """Peak RSS in bytes of ``argv``'s process tree (its largest process), from rusage."""
    out = subprocess.run([python, "-c", _MEASURE, *argv], env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--before", type=Path, default=None,
                      help="another checkout whose `run -- true` is measured alongside")
    opts = args.parse_args()
    repeat = opts.repeat or 25
    header("jobreport run, whole process (regular install)")
    results: dict[str, object] = {}
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp, pushgateway(Path(tmp) / "pg") as url:
        python, jobreport = install(Path(tmp))
        script = Path(tmp) / "baseline.py"
        script.write_text(BASELINE)
        env = clean_env()
        env.update({"JOBREPORT_GATEWAY": url, "JOBREPORT_DB": f"sqlite:///{tmp}/store.db",
                    "JOBREPORT_INSTANCE": "bench", "XDG_CONFIG_HOME": f"{tmp}/config"})
        stamp = Path(tmp) / "started"

        direct = StartTimer(STAMP, env, stamp)
        ours = StartTimer([jobreport, "run", "--job", "s", "--", *STAMP], env, stamp)
        timed = interleave({
            "python -c pass": runner([python, "-c", "pass"], env),
            "time stamp command alone": direct,
            "jobreport run -- stamp": ours,
        }, repeat)
        for _ in range(2):  # the warm-up calls of interleave
            del direct.values[0], ours.values[0]
        start = {"python -c pass": timed["python -c pass"],
                 "to the command's start: stamp alone": Stats("stamp alone", direct.values),
                 "to the command's start: jobreport run": Stats("jobreport run -- stamp",
                                                                ours.values)}
        for s in start.values():
            print("   " + s.line())
        base = timed["python -c pass"].median
        raw = start["to the command's start: jobreport run"].median
        net = raw - start["to the command's start: stamp alone"].median
        verdicts.append(verdict("to the command's start <= 2.5x python -c pass",
                                raw <= 2.5 * base,
                                f"{raw:.1f} ms vs {base:.1f} ms = {raw / base:.2f}x "
                                f"(net of the stamp command: {net:.1f} ms = "
                                f"{net / base:.2f}x)"))
        results["startup"] = [s.to_json() for s in start.values()]

        runs = {
            "baseline script -- true": runner([python, str(script), url, "true"], env),
            "jobreport run -- true": runner([jobreport, "run", "--job", "t", "--", "true"],
                                            env),
        }
        if opts.before is not None:
            (Path(tmp) / "before").mkdir()
            _, before = install(Path(tmp) / "before", opts.before)
            runs["jobreport run -- true (before)"] = runner(
                [before, "run", "--job", "t", "--", "true"],
                {**env, "JOBREPORT_DB": f"sqlite:///{tmp}/before.db"})
        stats = interleave(runs, repeat)
        for s in stats.values():
            print("   " + s.line())
        base = stats["baseline script -- true"].median
        whole = stats["jobreport run -- true"].median
        verdicts.append(verdict("jobreport run -- true <= 1.6x baseline", whole <= 1.6 * base,
                                f"{whole:.1f} ms vs {base:.1f} ms = {whole / base:.2f}x"))
        if opts.before is not None:
            then = stats["jobreport run -- true (before)"].median
            print(f"   before: {then:.1f} ms = {then / base:.2f}x; now {whole - then:+.1f} ms")
        results["true"] = [s.to_json() for s in stats.values()]

        sleeps = interleave({
            "sleep 1": runner(["sleep", "1"], env),
            "jobreport run -- sleep 1": runner(
                [jobreport, "run", "--job", "s", "--", "sleep", "1"], env),
        }, max(5, repeat // 4), warmup=1)
        for s in sleeps.values():
            print("   " + s.line())
        added = sleeps["jobreport run -- sleep 1"].median - sleeps["sleep 1"].median
        print(f"   time added to a 1 s job: {added:.1f} ms")
        results["sleep"] = [s.to_json() for s in sleeps.values()]

        rss_base = [peak_rss(python, [python, "-c", "pass"], env) for _ in range(5)]
        rss_ours = [peak_rss(python, [jobreport, "run", "--job", "t", "--", "true"], env)
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
