"""What a schedule costs ``jobreport run``, on a regular install of this checkout in a
temporary venv (``_install.py``), against a real Pushgateway and a fresh SQLite store.

1. Start-up: from ``jobreport run`` being executed to its command running, without and with
   ``--schedule "0 3 * * 1-5" --timezone Europe/Berlin`` (only the cheap checks run before
   the command; cronsim and zoneinfo load after it started). Target: the schedule adds at
   most 10% to the start-up.
2. ``jobreport run -- true`` as a whole, without and with the schedule (the deadlines are
   computed at the start push and the end): what cronsim, zoneinfo and the iteration add.

Measurements alternate so that every side sees the same machine load.

    .venv/bin/python benchmarks/bench_schedule.py [--repeat 25]
"""

from __future__ import annotations

import tempfile
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
from bench_run import STAMP, StartTimer, runner

SCHEDULE = ["--schedule", "0 3 * * 1-5", "--timezone", "Europe/Berlin"]


def main() -> None:
    opts = parser(__doc__).parse_args()
    repeat = opts.repeat or 25
    header("jobreport run with and without --schedule (regular install)")
    results: dict[str, object] = {}
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp, pushgateway(Path(tmp) / "pg") as url:
        _python, jobreport = install(Path(tmp))
        env = clean_env()
        env.update({"JOBREPORT_GATEWAY": url, "JOBREPORT_DB": f"sqlite:///{tmp}/store.db",
                    "JOBREPORT_INSTANCE": "bench", "XDG_CONFIG_HOME": f"{tmp}/config"})
        stamp = Path(tmp) / "started"
        plain = StartTimer([jobreport, "run", "--job", "p", "--", *STAMP], env, stamp)
        scheduled = StartTimer([jobreport, "run", "--job", "s", *SCHEDULE, "--", *STAMP], env,
                               stamp)
        interleave({"plain": plain, "scheduled": scheduled}, repeat)
        for _ in range(2):  # the warm-up calls of interleave
            del plain.values[0], scheduled.values[0]
        start = [Stats("to the command's start: jobreport run", plain.values),
                 Stats("to the command's start: jobreport run --schedule", scheduled.values)]
        for s in start:
            print("   " + s.line())
        base, ours = start[0].median, start[1].median
        verdicts.append(verdict("--schedule adds <= 10% to the start-up", ours <= 1.1 * base,
                                f"{ours:.1f} ms vs {base:.1f} ms = {ours / base:.2f}x"))
        results["startup"] = [s.to_json() for s in start]

        whole = interleave({
            "jobreport run -- true": runner([jobreport, "run", "--job", "t", "--", "true"],
                                            env),
            "jobreport run --schedule -- true": runner(
                [jobreport, "run", "--job", "u", *SCHEDULE, "--", "true"], env),
        }, repeat)
        for s in whole.values():
            print("   " + s.line())
        added = (whole["jobreport run --schedule -- true"].median
                 - whole["jobreport run -- true"].median)
        print(f"   time a schedule adds to a whole run: {added:.1f} ms")
        results["true"] = [s.to_json() for s in whole.values()]
    write_json(opts.json, "bench_schedule.py", {**results, "verdicts": verdicts})


if __name__ == "__main__":
    main()
