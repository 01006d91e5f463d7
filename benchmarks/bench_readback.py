"""A new store's first delivery beside a Pushgateway holding 1,000 and 10,000 groups.

A new store (a pod's, a container's) reads what the gateway holds for its group before it
pushes (the gateway's ``/metrics`` as it streams in, only the group's samples kept), then
pushes; an old store only pushes. Both are measured in the same run, interleaved, each
delivery in a process of its own: the time of the delivery (``deliver_group``), the peak of
memory Python allocated during it (tracemalloc) and the process's peak RSS. Beside them,
the reading of every group as ``jobreport status`` makes it (the same ``/metrics``, what
status judges kept of each group; until this round it parsed the whole ``/api/v1/metrics``
answer: 10.3 s and 921 MiB at 10,000 groups).

Target: every delivery within the default budget (10 s), and memory that does not grow with
the gateway (the answer is not held whole).

    .venv/bin/python benchmarks/bench_readback.py [--repeat 5] [--groups 1000,10000]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PYTHON, Stats, header, parser, verdict, write_json
from _fleet import fleet_gateway, grouping

from jobreport.result import RunResult
from jobreport.store.store import RunStart, Store

WORKER = """
import json, resource, sys, time, tracemalloc
sys.path.insert(0, {root!r})
from jobreport import load_config
from jobreport.delivery import deliver_group
from jobreport.sinks.base import Delivered
from jobreport.sinks.pushgateway import PushgatewaySink
from jobreport.state import group_key
from jobreport.store.store import Store

kind, url, db, grouping = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
config = load_config(env={{}}, gateway=url, db=db, budget="30s", timeout="10s")
sink = PushgatewaySink(config)
import jobreport.exposition, jobreport.sinks.pushgateway_api  # loaded before the clock
from jobreport.commands.status import READ
if kind == "all":  # every group, as status reads them
    tracemalloc.start(); t0 = time.perf_counter()
    sink.groups(deadline=time.monotonic() + 30, keep=READ)
    took = time.perf_counter() - t0; ok = True
else:  # a store the parent made (new, or old) with a run of the group to deliver
    store = Store(db)
    key = group_key(grouping)
    store.group_state(key)
    tracemalloc.start(); t0 = time.perf_counter()
    result = deliver_group(store, sink, key, budget=30.0)
    took = time.perf_counter() - t0; ok = isinstance(result, Delivered)
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({{"seconds": took, "traced": peak,
                  "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "ok": ok}}))
"""


def record_run(db: str, group: dict[str, str]) -> str:
    """Record a run of ``group`` in the store ``db`` (made new if it does not exist): what
    the worker then delivers (the store is opened, not made, in the worker)."""
    store = Store(db)
    now = time.time()
    store.record_run(RunStart(group["job"], group, now - 1, "bench"),
                     RunResult(ended=now, duration=1.0, outcome="success", exit_code=0))
    store.close()
    return db


def worker(kind: str, url: str, db: str, group: dict[str, str]) -> dict[str, float]:
    root = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run([PYTHON, "-c", WORKER.format(root=root), kind, url, db,
                          json.dumps(group)], capture_output=True, text=True, timeout=120,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if not result["ok"]:
        raise RuntimeError(f"{kind}: not delivered")
    return result


def old_store(tmp: Path, url: str, group: dict[str, str]) -> str:
    """A store that has delivered the group before (it reads nothing back)."""
    db = record_run(f"sqlite:///{tmp / 'old.db'}", group)
    worker("new", url, db, group)
    return db


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--groups", default="1000,10000")
    opts = p.parse_args()
    repeat = opts.repeat or 5
    header("a new store's first delivery beside a gateway holding many groups")
    results: dict[str, object] = {}
    verdicts = []
    for groups in (int(n) for n in opts.groups.split(",")):
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            t0 = time.perf_counter()
            with fleet_gateway(tmp / "gw", groups) as (url, _pid):
                print(f"-- {groups} groups (28 series each), gateway filled and restarted in "
                      f"{time.perf_counter() - t0:.1f} s")
                group = grouping(groups // 2)
                old_db = old_store(tmp, url, group)
                runs: dict[str, list[dict[str, float]]] = {"new": [], "old": [], "all": []}
                for i in range(repeat):
                    new_db = record_run(f"sqlite:///{tmp / f'new{i}.db'}", group)
                    runs["new"].append(worker("new", url, new_db, group))
                    runs["old"].append(worker("old", url, record_run(old_db, group), group))
                    runs["all"].append(worker("all", url, old_db, group))
                names = {"new": "new store: read back + push", "old": "old store: push",
                         "all": "every group, as status reads them"}
                for kind, values in runs.items():
                    took = Stats(f"{names[kind]} ({groups})", [v["seconds"] for v in values])
                    traced = Stats(f"  traced peak ({groups})", [v["traced"] for v in values],
                                   "MiB")
                    rss = Stats(f"  process peak RSS ({groups})", [v["maxrss"] for v in values],
                                "MiB")
                    for s in (took, traced, rss):
                        print(s.line())
                    results[f"{kind}_{groups}"] = {"seconds": took.to_json(),
                                                   "traced": traced.to_json(),
                                                   "maxrss": rss.to_json()}
                new = Stats("", [v["seconds"] for v in runs["new"]], "s")
                verdicts.append(verdict(f"new store's delivery at {groups} groups",
                                        new.max < 10.0, f"max {new.max:.2f} s of a 10 s "
                                        "budget"))
                traced_new = max(v["traced"] for v in runs["new"]) / 2**20
                verdicts.append(verdict(f"memory of the read at {groups} groups",
                                        traced_new < 4.0, f"{traced_new:.2f} MiB traced peak"))
    results["verdicts"] = verdicts
    write_json(opts.json, "bench_readback.py", results)


if __name__ == "__main__":
    sys.exit(main())
