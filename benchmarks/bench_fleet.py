"""What a Pushgateway costs as a fleet grows, and what reading it costs jobreport: 10 (the
baseline), 1,000 and 10,000 groups of 28 series, with the gateway's default consistency
check and with ``--push.disable-consistency-check``.

For each: the gateway's resident memory (loaded, and after answering the readings below:
the Go runtime keeps what rendering its answers took), the time of one push (jobreport's
PUT of one group's state, as the end of a run makes it), and ``jobreport status``,
``jobreport status --check`` and ``jobreport prune --older-than 30d --dry-run`` as whole
commands (each reads every group the gateway holds): their wall time and the peak RSS of
the jobreport process. With ``--before DIR`` (another checkout, e.g. ``git archive main``
unpacked there), the same commands of that checkout too, interleaved with this one's (A B
A B ...) so that both see the same machine; both are regular installs (``_install.py``).
``status --check`` gives up after 8 s (UNKNOWN, exit 3): the count of those is shown.
Figures for docs/containers.md ("Fleet sizing") and benchmarks/README.md.

    .venv/bin/python benchmarks/bench_fleet.py [--repeat 5] [--groups 10,1000,10000]
        [--before DIR] [--consistency on,off]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import PYTHON, Stats, header, parser, write_json
from _fleet import body, environment, fleet_gateway, grouping, rss_mib
from _install import install

from jobreport import load_config
from jobreport.sinks.pushgateway import PushgatewaySink

COMMANDS = {
    "status": ["status"],
    "status --check": ["status", "--check"],
    "prune --dry-run": ["prune", "--older-than", "30d", "--dry-run"],
}


# A small intermediary forks and execs the command, then says its wall time, exit code
# and the peak RSS of what it reaped (RUSAGE_CHILDREN). Forked straight from this process
# (which holds jobreport and a gateway's worth of data), the child's figure would start at
# our own RSS: Linux counts the pages of the process an exec replaced.
_MEASURE = """
import os, resource, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status = os.waitpid(pid, 0)
took = time.perf_counter() - t0
print(took, os.waitstatus_to_exitcode(status),
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
"""


def command(jobreport: str, args: list[str], url: str, db: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MiB, exit code) of one jobreport command."""
    # (a budget that lets the reading finish however long it takes: the time is the figure;
    # --check holds itself to its own 5 s reading and 8 s in all)
    env = environment(JOBREPORT_GATEWAY=url, JOBREPORT_DB=f"sqlite:///{db}",
                      JOBREPORT_BUDGET="300s", JOBREPORT_TIMEOUT="60s")
    done = subprocess.run([PYTHON, "-S", "-c", _MEASURE, jobreport, *args], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=900, check=True)
    took, code, peak = done.stdout.split()[-3:]
    if int(code) not in (0, 1, 2, 3) or (int(code) == 3 and "--check" not in args):
        raise RuntimeError(f"{' '.join(args)}: exit {code}: {done.stderr[-2000:]}")
    return float(took), float(peak) / 2**20, int(code)


def _timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--groups", default="10,1000,10000")
    p.add_argument("--before", type=Path, default=None,
                   help="another checkout to measure beside this one")
    p.add_argument("--consistency", default="on,off",
                   help="the gateway's consistency check: on, off or both")
    opts = p.parse_args()
    repeat = opts.repeat or 5
    header("a Pushgateway holding a fleet's groups")
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as installs:
        sides = {"now": install(Path(installs) / "now")[1]}
        if opts.before is not None:
            sides["before"] = install(Path(installs) / "before", opts.before)[1]
        for check in (c == "on" for c in opts.consistency.split(",")):
            extra = [] if check else ["--push.disable-consistency-check"]
            what = "check on" if check else "check off"
            for groups in (int(n) for n in opts.groups.split(",")):
                results[f"{groups}_{'check' if check else 'nocheck'}"] = _fleet(
                    groups, extra, what, sides, repeat)
    write_json(opts.json, "bench_fleet.py", results)


def _fleet(groups: int, extra: list[str], what: str, sides: dict[str, str],
           repeat: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        with fleet_gateway(tmp / "gw", groups, extra=extra) as (url, pid):
            config = load_config(env={}, gateway=url, db=f"sqlite:///{tmp / 's.db'}")
            sink = PushgatewaySink(config)
            one = grouping(groups // 2)

            def push(one: dict[str, str] = one, sink: PushgatewaySink = sink,
                     text: bytes = body(groups // 2)) -> None:
                sink.push_text(one["job"], one, text, replace=True,
                               deadline=time.monotonic() + 60)

            push()
            idle = rss_mib(pid)
            pushes = Stats(f"push, {groups} groups, {what}",
                           [_timed(push) for _ in range(repeat * 4)])
            print(pushes.line())
            found: dict[str, object] = {"push": pushes.to_json(),
                                        "gateway_rss_mib": round(idle, 1)}
            times: dict[tuple[str, str], list[float]] = {}
            peaks: dict[tuple[str, str], list[float]] = {}
            codes: dict[tuple[str, str], Counter[int]] = {}
            for _ in range(repeat):
                for name, args in COMMANDS.items():
                    for side, jobreport in sides.items():
                        took, peak, code = command(jobreport, args, url, tmp / "s.db")
                        times.setdefault((name, side), []).append(took)
                        peaks.setdefault((name, side), []).append(peak)
                        codes.setdefault((name, side), Counter())[code] += 1
            for (name, side), values in times.items():
                wall = Stats(f"{name}, {groups} groups, {what}, {side}", values, "s")
                rss = Stats(f"  peak RSS, {side}", [m * 2**20 for m in peaks[name, side]],
                            "MiB")
                unknown = codes[name, side][3] if name == "status --check" else 0
                print(wall.line() + (f"  UNKNOWN {unknown}/{len(values)}" if unknown else ""))
                print(rss.line())
                found[f"{name} ({side})"] = {"wall": wall.to_json(), "peak_rss": rss.to_json(),
                                             "exit_codes": dict(codes[name, side])}
            memory = rss_mib(pid)
            print(f"{'gateway RSS, ' + str(groups) + ' groups, ' + what:<44} "
                  f"{idle:9.1f} MiB loaded, {memory:.1f} MiB after the readings")
            found["gateway_rss_after_readings_mib"] = round(memory, 1)
            return found


if __name__ == "__main__":
    sys.exit(main())
