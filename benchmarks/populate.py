"""Fill a jobreport store with many finished runs quickly (bulk insert into the real schema).

    .venv/bin/python benchmarks/populate.py STORE.db --runs 1000000 --groups 100 [--pending]

The schema is created by jobreport's own ``Store.ensure_schema()``; rows are then inserted
with sqlite3's ``executemany`` (jobreport's per-run path would take hours for a million).
Each group gets ``runs/groups`` runs, one per minute back from now, 1 in 10 failing; 1 run in
50,000 times out instead (20 in a million: rare, as a real store's timeouts are).
With ``--pending`` every group is left undelivered (what ``jobreport flush`` delivers).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobreport.state import group_key
from jobreport.store.store import Store


def job_name(i: int) -> str:
    return f"job{i:04d}"


def populate(path: Path, runs: int, groups: int, *, pending: bool, instance: str = "bench",
             host: str = "benchhost") -> list[str]:
    """Create ``path`` with ``runs`` runs over ``groups`` groups; return the group keys."""
    store = Store(f"sqlite:///{path}")
    store.ensure_schema()
    store.close()
    per_group = runs // groups
    now = time.time()
    keys = []
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    for g in range(groups):
        job = job_name(g)
        key = group_key({"job": job, "instance": instance})
        keys.append(key)

        def rows(job: str = job, key: str = key, first: int = g * per_group) -> object:
            for i in range(per_group):
                started = now - (per_group - i) * 60.0
                failed = i % 10 == 8
                outcome = ("timeout" if (first + i) % 50_000 == 49_999 else "failure") \
                    if failed else "success"
                yield (key, job, host, 1000 + i % 30000, started, started + 5.0, 5.0,
                       outcome, {"success": 0, "failure": 1, "timeout": 124}[outcome],
                       i + 1, f"/usr/bin/{job} --run {i}")

        conn.executemany(
            "INSERT INTO jobreport_runs (group_key, job, host, pid, started, ended, duration,"
            " outcome, exit_code, closed_seq, command) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows(),  # type: ignore[arg-type]
        )
        if _has_column(conn, "jobreport_groups", "delivered_seq"):  # before schema 5
            conn.execute(
                "INSERT INTO jobreport_groups (group_key, job, seq, delivered_seq)"
                " VALUES (?,?,?,?)", (key, job, per_group, 0 if pending else per_group))
        else:
            conn.execute("INSERT INTO jobreport_groups (group_key, job, seq) VALUES (?,?,?)",
                         (key, job, per_group))
        if _has_table(conn, "jobreport_deliveries"):  # schema 2: delivered marks per sink
            conn.execute(
                "INSERT INTO jobreport_deliveries (group_key, sink, delivered_seq)"
                " VALUES (?, 'pushgateway', ?)", (key, 0 if pending else per_group))
    _summaries(conn)
    conn.execute("COMMIT")  # no ANALYZE: a real store never gets one
    conn.close()
    return keys


def _has_column(conn: sqlite3.Connection, table: str, name: str) -> bool:
    return any(r[1] == name for r in conn.execute(f"PRAGMA table_info({table})"))


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name = ?",
                        (name,)).fetchone() is not None


def _summaries(conn: sqlite3.Connection) -> None:
    """Fill the per-group counters and summaries when the schema has them (the store keeps
    them up to date as runs close; a bulk insert has to compute them once)."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "jobreport_counts" in tables:
        conn.execute("INSERT INTO jobreport_counts (group_key, outcome, n) SELECT group_key,"
                     " outcome, COUNT(*) FROM jobreport_runs GROUP BY group_key, outcome")
    columns = {r[1] for r in conn.execute("PRAGMA table_info(jobreport_groups)")}
    if "last_success" in columns:
        conn.execute(
            "UPDATE jobreport_groups SET"
            " last_success = (SELECT MAX(ended) FROM jobreport_runs r WHERE r.group_key ="
            " jobreport_groups.group_key AND r.outcome = 'success'),"
            " last_failure = (SELECT MAX(ended) FROM jobreport_runs r WHERE r.group_key ="
            " jobreport_groups.group_key AND r.outcome != 'success')")
    if "failure_streak" in columns:  # schema 6: every 10th run fails, the last succeeded
        conn.execute("UPDATE jobreport_groups SET failure_streak = 0, "
                     "recent_durations = '[5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]'")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("path", type=Path)
    p.add_argument("--runs", type=int, default=1_000_000)
    p.add_argument("--groups", type=int, default=100)
    p.add_argument("--pending", action="store_true")
    a = p.parse_args()
    t0 = time.perf_counter()
    populate(a.path, a.runs, a.groups, pending=a.pending)
    print(f"{a.runs} runs over {a.groups} groups in {a.path} "
          f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
