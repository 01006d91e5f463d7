"""Added delay when the gateway accepts connections and never answers.

A socket server on loopback accepts every connection and never replies. The delay a run
suffers (its wall time minus its body) must stay within the configured end-push budget
plus 1 s, for ``job_metrics`` and for ``jobreport run -- true``. The baseline is the budget
itself (``JOBREPORT_BUDGET``), printed beside each figure.

    .venv/bin/python benchmarks/bench_hang.py [--repeat 5] [--budget 2]
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import (
    JOBREPORT,
    Stats,
    cli_ready,
    header,
    interleave,
    parser,
    pushgateway,
    verdict,
    write_json,
)

from jobreport import job_metrics, load_config
from tests.faults import SilentServer


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--budget", type=float, default=2.0, help="JOBREPORT_BUDGET, seconds")
    opts = args.parse_args()
    repeat = opts.repeat or 5
    budget = opts.budget
    header(f"gateway that accepts and never answers; budget {budget:g} s "
           "(JOBREPORT_TIMEOUT 5s, JOBREPORT_START_BUDGET 1s)")
    verdicts, results = [], {}
    with tempfile.TemporaryDirectory() as tmp, SilentServer() as silent:
        env = {"JOBREPORT_GATEWAY": silent.url, "JOBREPORT_DB": f"sqlite:///{tmp}/s.db",
               "JOBREPORT_INSTANCE": "bench", "JOBREPORT_BUDGET": f"{budget:g}s",
               "JOBREPORT_START_BUDGET": "1s", "JOBREPORT_TIMEOUT": "5s",
               "JOBREPORT_PASSWORD": "hunter2-bench", "JOBREPORT_USERNAME": "bench"}
        config = load_config(env=env)
        lib = []
        with job_metrics("hang_warmup", config=config):  # imports and the store, untimed
            pass
        for _ in range(repeat):
            t0 = time.perf_counter()
            with job_metrics("hang", config=config):
                pass
            lib.append(time.perf_counter() - t0)
        s = Stats("job_metrics, empty body", lib, "s")
        print("   " + s.line())
        verdicts.append(verdict(f"job_metrics delay <= budget + 1 s ({budget + 1:g} s)",
                                s.max <= budget + 1, f"max {s.max:.2f} s"))
        results["library"] = s.to_json()

        if cli_ready("run"):
            # baseline in the same run: the same command against a gateway that answers
            with pushgateway(Path(tmp) / "pg") as live:
                def cli(url: str) -> Callable[[], None]:
                    full = {**os.environ, **env, "JOBREPORT_GATEWAY": url}

                    def run() -> None:
                        proc = subprocess.run(
                            [JOBREPORT, "run", "--job", "hang", "--", "true"], env=full,
                            capture_output=True, text=True, timeout=60, check=False)
                        if proc.returncode != 0:
                            print(f"   jobreport run exited {proc.returncode}: "
                                  f"{proc.stderr[-500:]}")
                    return run

                stats = interleave({"jobreport run -- true, live gateway": cli(live),
                                    "jobreport run -- true, silent gateway": cli(silent.url)},
                                   repeat, warmup=1, unit="s")
            for st in stats.values():
                print("   " + st.line())
            base = stats["jobreport run -- true, live gateway"]
            hung = stats["jobreport run -- true, silent gateway"]
            added, worst = hung.median - base.median, hung.max - base.median
            verdicts.append(verdict(f"jobreport run added delay <= budget + 1 s ({budget + 1:g} s)",
                                    worst <= budget + 1,
                                    f"median {added:.2f} s, worst {worst:.2f} s"))
            results["cli"] = [st.to_json() for st in stats.values()]
        else:
            print("   (jobreport run not available yet: CLI part not measured)")
        print(f"   connections the silent server accepted: {len(silent.accepted)}")
    write_json(opts.json, "bench_hang.py", {**results, "budget": budget, "verdicts": verdicts})


if __name__ == "__main__":
    main()
