"""Evaluation cost of each jobreport alert over 10,000 groups, per sink variant, in a real
Prometheus.

The data: 10,000 groups (job x instance), each with the whole state jobreport delivers
(about 20 series a group), written as OpenMetrics and turned into a TSDB block with
``promtool tsdb create-blocks-from openmetrics``. Each series has one sample per day over
the last 8 days (what a daily job leaves in a remote-write receiver) and one a minute ago
(what a scrape of the Pushgateway or node_exporter leaves fresh); 5% of the groups are
overdue, 5% failed. Each rule's ``expr`` is evaluated through ``/api/v1/query`` at one
instant, interleaved across rules and variants, and reported in ms (client wall time, and
Prometheus' own ``evalTotalTime`` from ``stats=all``). The baseline is the Pushgateway
variant of the same alert in the same run.

    .venv/bin/python benchmarks/bench_rules.py [--groups 10000] [--repeat 7] [--json FILE]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml
from _common import Stats, header, parser, write_json

from jobreport.monitoring.variants import rules_for
from jobreport.result import RunResult
from jobreport.sinks.remote_write import series
from jobreport.spec import JobSpec
from jobreport.state import GroupState

PROMTOOL = "promtool"
DAY = 86400


def states(groups: int, now: float) -> list[GroupState]:
    out = []
    for i in range(groups):
        job, host = f"job{i % 1000}", f"host{i // 1000}"
        failed = i % 20 == 1
        overdue = i % 20 == 2
        success = now - (3 * DAY if overdue else 600)
        out.append(GroupState(
            job=job, grouping={"job": job, "instance": host}, running=0,
            last_start=success - 30, last_success=success,
            last_failure=now - 600 if failed else now - 5 * DAY,
            last=RunResult(ended=now - 600, duration=30.0, exit_code=1 if failed else 0,
                           outcome="failure" if failed else "success"),
            spec=JobSpec(job, expect_every=DAY, grace=8640.0, max_runtime=3600.0),
        ))
    return out


def write_openmetrics(path: Path, groups: int, now: float) -> int:
    """One family at a time (OpenMetrics wants a family's samples together); returns the
    number of series."""
    by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], float]]] = {}
    for state in states(groups, now):
        for labels, value in series(state):
            name = dict(labels)["__name__"]
            if name in ("jobreport_info",):
                continue
            by_name.setdefault(name, []).append((labels, value))
    stamps = [now - k * DAY for k in range(8, 0, -1)] + [now - 60]
    count = 0
    with open(path, "w", encoding="utf-8") as f:
        for name, items in by_name.items():
            f.write(f"# TYPE {name} gauge\n")
            for labels, value in items:
                count += 1
                sel = ",".join(f'{k}="{v}"' for k, v in labels if k != "__name__")
                for ts in stamps:
                    f.write(f"{name}{{{sel}}} {value} {ts:.3f}\n")
        f.write("# EOF\n")
    return count


def start_prometheus(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    from tests import servers

    config = workdir / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1m}\n")
    server = servers.prometheus(workdir, config,
                                extra=["--storage.tsdb.retention.time=60d",
                                       "--query.max-samples=200000000"])
    server.start(timeout=180)
    assert server.proc is not None
    return server.proc, server.url


def query(url: str, expr: str, at: float) -> tuple[float, float, int]:
    """(client wall seconds, Prometheus evalTotalTime seconds, series returned)."""
    params = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}", "stats": "all"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=120) as r:  # noqa: S310
        body = json.load(r)
    wall = time.perf_counter() - t0
    assert body["status"] == "success", body
    timings = body["data"].get("stats", {}).get("timings", {})
    return wall, float(timings.get("evalTotalTime", 0.0)), len(body["data"]["result"])


def alert_exprs(sink: str, lookback: str) -> dict[str, str]:
    doc = yaml.safe_load(rules_for(sink, lookback=lookback)["jobreport-alerts.yml"])
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--groups", type=int, default=10_000)
    args.add_argument("--lookback", default="8d")
    ns = args.parse_args()
    repeat = ns.repeat or 7
    header(f"rule evaluation over {ns.groups} groups (Prometheus, promtool blocks)")
    now = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        n_series = write_openmetrics(work / "data.om", ns.groups, now)
        data = work / "data"
        subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics",
                        str(work / "data.om"), str(data)], check=True,
                       stdout=subprocess.DEVNULL, timeout=1800)
        (work / "data.om").unlink()
        print(f"   {n_series} series, 9 samples each, blocks built in "
              f"{time.perf_counter() - t0:.0f}s")
        proc, url = start_prometheus(work)
        try:
            variants = {"pushgateway": alert_exprs("pushgateway", ns.lookback),
                        "remote-write": alert_exprs("remote-write", ns.lookback),
                        "textfile": alert_exprs("textfile", ns.lookback)}
            names = [a for a in variants["remote-write"]]
            walls: dict[tuple[str, str], list[float]] = {}
            evals: dict[tuple[str, str], list[float]] = {}
            found: dict[tuple[str, str], int] = {}
            at = now
            for _ in range(1 + repeat):  # the first round warms the caches, untimed
                for alert in names:
                    for sink, exprs in variants.items():
                        if alert not in exprs:
                            continue
                        wall, ev, n = query(url, exprs[alert], at)
                        walls.setdefault((alert, sink), []).append(wall)
                        evals.setdefault((alert, sink), []).append(ev)
                        found[(alert, sink)] = n
            results: dict[str, object] = {"groups": ns.groups, "series": n_series,
                                          "lookback": ns.lookback, "alerts": []}
            for alert in names:
                for sink in variants:
                    key = (alert, sink)
                    if key not in walls:
                        continue
                    stats = Stats(f"{alert} [{sink}]", walls[key][1:])
                    ev_ms = statistics.median(evals[key][1:]) * 1000
                    print(f"   {stats.line()}  eval {ev_ms:.1f} ms  -> {found[key]} alerts")
                    results["alerts"].append(  # type: ignore[attr-defined]
                        {**stats.to_json(), "eval_median_ms": round(ev_ms, 2),
                         "firing": found[key]})
            write_json(ns.json, "bench_rules.py", results)
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
