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
from pathlib import Path

from _common import JOBREPORT, SilentServer, cli_ready, Stats, header, parser, verdict, write_json

from jobreport import job_metrics, load_config


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
            cli = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                proc = subprocess.run(
                    [JOBREPORT, "run", "--job", "hang", "--", "true"],
                    env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
                cli.append(time.perf_counter() - t0)
                if proc.returncode != 0:
                    print(f"   jobreport run exited {proc.returncode}: {proc.stderr[-500:]}")
            s_cli = Stats("jobreport run -- true (whole process)", cli, "s")
            print("   " + s_cli.line())
            verdicts.append(verdict(f"jobreport run delay <= budget + 1 s ({budget + 1:g} s)",
                                    s_cli.max <= budget + 1, f"max {s_cli.max:.2f} s"))
            results["cli"] = s_cli.to_json()
        else:
            print("   (jobreport run not available yet: CLI part not measured)")
        print(f"   connections the silent server accepted: {len(silent.accepted)}")
    write_json(opts.json, "bench_hang.py", {**results, "budget": budget, "verdicts": verdicts})


if __name__ == "__main__":
    main()
