"""``flush`` of 10,000 pending runs over 100 groups into a real Pushgateway.

Target: exactly 100 pushes (one per group, however many runs), in under 5 s. Measured
through the library (``jobreport.flush``) and, when the CLI is installed, as the whole
``jobreport flush`` command. Between repeats every group is marked undelivered again.

    .venv/bin/python benchmarks/bench_flush.py [--repeat 7]
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import JOBREPORT, Stats, cli_ready, header, parser, pushgateway, verdict, write_json
from populate import populate

from jobreport import flush, load_config

RUNS, GROUPS = 10_000, 100


def post_count(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:  # noqa: S310
        text = r.read().decode()
    # PUT with a store (complete state), POST without one
    found = re.findall(r'pushgateway_http_push_size_bytes_count\{method="(?:post|put)"\} (\d+)',
                       text)
    return sum(int(n) for n in found)


def mark_pending(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE jobreport_groups SET delivered_seq = 0")
    conn.execute("DELETE FROM jobreport_deliveries")  # schema 2: the per-sink marks
    conn.close()


def main() -> None:
    opts = parser(__doc__).parse_args()
    repeat = opts.repeat or 7
    header(f"flush of {RUNS} pending runs over {GROUPS} groups")
    results: dict[str, object] = {}
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp, pushgateway(Path(tmp) / "pg") as url:
        db = Path(tmp) / "store.db"
        t0 = time.perf_counter()
        populate(db, RUNS, GROUPS, pending=True)
        print(f"   store filled in {time.perf_counter() - t0:.1f} s")
        env = {"JOBREPORT_GATEWAY": url, "JOBREPORT_DB": f"sqlite:///{db}",
               "JOBREPORT_INSTANCE": "bench"}
        config = load_config(env=env)

        lib, pushes = [], []
        for _ in range(repeat):
            mark_pending(db)
            before = post_count(url)
            t0 = time.perf_counter()
            result = flush(config)
            lib.append(time.perf_counter() - t0)
            pushes.append(post_count(url) - before)
            assert result.ok and result.groups == GROUPS and result.runs == RUNS, result
        s_lib = Stats("library flush()", lib, "s")
        print("   " + s_lib.line())
        print(f"   pushes per flush: {sorted(set(pushes))}")
        verdicts.append(verdict("100 pushes", set(pushes) == {GROUPS}, f"{sorted(set(pushes))}"))
        verdicts.append(verdict("library flush < 5 s", s_lib.median < 5.0,
                                f"{s_lib.median:.2f} s"))
        results["library"] = s_lib.to_json()

        if cli_ready("flush"):
            cli = []
            for _ in range(repeat):
                mark_pending(db)
                before = post_count(url)
                t0 = time.perf_counter()
                proc = subprocess.run([JOBREPORT, "flush"], env={**os.environ, **env},
                                      capture_output=True, text=True, timeout=120,
                                      check=False)
                cli.append(time.perf_counter() - t0)
                assert proc.returncode == 0, proc.stderr
                pushes.append(post_count(url) - before)
            s_cli = Stats("jobreport flush (whole process)", cli, "s")
            print("   " + s_cli.line())
            verdicts.append(verdict("jobreport flush < 5 s", s_cli.median < 5.0,
                                    f"{s_cli.median:.2f} s"))
            verdicts.append(verdict("100 pushes (CLI)", set(pushes) == {GROUPS},
                                    f"{sorted(set(pushes))}"))
            results["cli"] = s_cli.to_json()
        else:
            print("   (jobreport flush not available yet: CLI part not measured)")
    write_json(opts.json, "bench_flush.py", {**results, "verdicts": verdicts})


if __name__ == "__main__":
    main()
