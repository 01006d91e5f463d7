"""What one transaction of the store does to a group: bump its ``seq``, fold a closed run
into its counters, close the runs its gone processes left open, and read its whole state.

Functions of a transaction (``Tx``), so that ``Store`` (``jobreport.store.store``) keeps
to its public methods, each one transaction.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from jobreport.errors import StoreError
from jobreport.outcomes import ABANDONED, SKIPPED, SUCCESS
from jobreport.result import load_custom
from jobreport.spec import JobSpec
from jobreport.state import GroupState, grouping_from_key
from jobreport.store import sql
from jobreport.store.backends import Tx
from jobreport.store.rows import RunStart, run_result, spec_values

if TYPE_CHECKING:
    from jobreport.held import HeldGroup

__all__ = ["TYPICAL_RUNS", "adopt_typical", "bump", "close_abandoned", "count_end",
           "delivery_row", "load_recent", "read_state", "start_values", "take_over", "typical"]

#: The typical size and duration of a group are the medians of its last this many
#: successful runs (that reported a size, for the size).
TYPICAL_RUNS = 10

log = logging.getLogger("jobreport")

#: ``alive(pid, pid_start) -> bool``: whether a process still runs (jobreport.liveness).
Alive = Callable[[int, Any], bool]


def bump(tx: Tx, key: str, job: str, new_group: str = sql.NEW_GROUP) -> int:
    """Increment the group's seq (creating the group) and return the new value.

    The UPDATE locks the group's row until the transaction ends (PostgreSQL), so that
    changes to one group are serialized; a group two processes create at once is inserted
    by one of them, and the other one's UPDATE then waits for it. ``new_group`` is the
    INSERT of a new group (stores made before schema 5 need ``sql.NEW_GROUP_V4``)."""
    for _ in range(2):
        if tx.returning:
            rows = tx.rows(sql.BUMP + " RETURNING seq", {"k": key})
            if rows:
                return int(rows[0]["seq"])
        elif tx.run(sql.BUMP, {"k": key}):
            return int(tx.rows(sql.SEQ, {"k": key})[0]["seq"])
        insert, conflict = tx.insert_missing
        tx.run(new_group.format(insert=insert, conflict=conflict), {"k": key, "job": job})
    raise StoreError(f"cannot create the group {key} in the store")


def count_end(tx: Tx, key: str, end: Mapping[str, Any]) -> None:
    """Fold a closed run into its group's counters and forward-only summaries."""
    outcome = end["outcome"]
    if tx.run(sql.COUNT, {"k": key, "o": outcome}) == 0:
        insert, conflict = tx.insert_missing
        tx.run(sql.NEW_COUNT.format(insert=insert, conflict=conflict), {"k": key, "o": outcome})
        tx.run(sql.COUNT, {"k": key, "o": outcome})
    if outcome == SKIPPED:
        return
    ended = end["ended"]
    g = tx.rows("SELECT last_success, last_failure, last_size_at, last_items_at, "
                "failure_streak, recent_sizes, recent_durations "
                "FROM jobreport_groups WHERE group_key = :k", {"k": key})[0]
    values: dict[str, Any] = {}
    column = "last_success" if outcome == SUCCESS else "last_failure"
    if g[column] is None or g[column] < ended:
        values[column] = ended
    # in the order runs are recorded (this transaction holds the group's row)
    values["failure_streak"] = 0 if outcome == SUCCESS else int(g["failure_streak"] or 0) + 1
    if outcome == SUCCESS:
        values["recent_durations"] = _recent(g["recent_durations"], end.get("duration"))
        if end.get("size") is not None:
            values["recent_sizes"] = _recent(g["recent_sizes"], end["size"])
    for name in ("size", "items"):
        at = g[f"last_{name}_at"]
        if end.get(name) is not None and (at is None or at <= ended):
            values[f"last_{name}"] = end[name]
            values[f"last_{name}_at"] = ended
    if values:
        sets = ", ".join(f"{c} = :{c}" for c in values)  # fixed column names only
        tx.run(f"UPDATE jobreport_groups SET {sets} WHERE group_key = :k", {**values, "k": key})


def take_over(tx: Tx, key: str, held: HeldGroup, new_group: str = sql.NEW_GROUP) -> None:
    """Add what a sink holds for group ``key`` (read back by a new store) to what the store
    counted: the counters of every outcome, the last success and failure (forward only),
    the failure streak (carried on while the store has no success of its own), the last
    size and items (unless a run of the store reported them), and the typical size and
    duration (``adopt_typical``)."""
    runs = held.runs()
    g = tx.rows("SELECT last_size_at, last_items_at FROM jobreport_groups "
                "WHERE group_key = :k", {"k": key})
    successes = tx.rows("SELECT n FROM jobreport_counts WHERE group_key = :k AND "
                        "outcome = :o", {"k": key, "o": SUCCESS})
    bump(tx, key, held.grouping.get("job", ""), new_group)
    insert, conflict = tx.insert_missing
    for outcome, n in runs.items():
        tx.run(sql.NEW_COUNT.format(insert=insert, conflict=conflict), {"k": key, "o": outcome})
        tx.run(sql.ADD_COUNT, {"k": key, "o": outcome, "n": n})
    for column, name in (("last_success", "last_success_timestamp_seconds"),
                         ("last_failure", "last_failure_timestamp_seconds")):
        value = held.timestamp(name)
        if value is not None:
            tx.run(sql.LATER.format(column=column), {"k": key, "v": value})
    values: dict[str, Any] = {}
    streak = held.count("consecutive_failures")
    if streak and not (successes and successes[0]["n"]):
        # the failures this store recorded follow the ones the sink counted
        values["failure_streak"] = streak
    for name, metric in (("size", "last_size_bytes"), ("items", "last_items")):
        value = held.amount(metric)
        if value is not None and g and g[0][f"last_{name}_at"] is None:
            values[f"last_{name}"], values[f"last_{name}_at"] = value, 0.0
    if values:
        sets = ", ".join(  # fixed column names only
            f"{c} = COALESCE({c}, 0) + :{c}" if c == "failure_streak" else f"{c} = :{c}"
            for c in values)
        tx.run(f"UPDATE jobreport_groups SET {sets} WHERE group_key = :k", {**values, "k": key})
    adopt_typical(tx, key, held.amount("typical_size_bytes"),
                  held.amount("typical_duration_seconds"))


def _recent(kept: str | None, value: float | None) -> str | None:
    """The JSON list ``kept`` with ``value`` added, the oldest dropped past TYPICAL_RUNS."""
    values = load_recent(kept)
    if value is not None:
        values = [*values, float(value)][-TYPICAL_RUNS:]
    return json.dumps(values) if values else None


def adopt_typical(tx: Tx, key: str, size: float | None, duration: float | None) -> None:
    """A new store takes over the typical size and duration a sink holds for group ``key``
    as one more (the oldest) of its last successes, until it has ``TYPICAL_RUNS`` of its
    own: its first runs are judged against the group's past, not against themselves."""
    g = tx.rows("SELECT recent_sizes, recent_durations FROM jobreport_groups "
                "WHERE group_key = :k", {"k": key})
    if not g:
        return
    values = {}
    for column, value in (("recent_sizes", size), ("recent_durations", duration)):
        kept = load_recent(g[0][column])
        if value is not None and len(kept) < TYPICAL_RUNS:
            values[column] = json.dumps([float(value), *kept])
    if values:
        sets = ", ".join(f"{c} = :{c}" for c in values)  # fixed column names only
        tx.run(f"UPDATE jobreport_groups SET {sets} WHERE group_key = :k", {**values, "k": key})


def load_recent(kept: str | None) -> list[float]:
    """The values of a group's ``recent_sizes`` or ``recent_durations`` column."""
    if not kept:
        return []
    try:
        values = json.loads(kept)
    except ValueError:
        return []
    return [float(v) for v in values if isinstance(v, int | float)] if isinstance(
        values, list) else []


def typical(kept: str | None) -> float | None:
    """The median of a ``recent_*`` column (None: no value yet)."""
    values = load_recent(kept)
    return statistics.median(values) if values else None


def close_abandoned(tx: Tx, key: str, start: RunStart, alive: Alive | None,
                    new_group: str = sql.NEW_GROUP) -> None:
    """Close as abandoned the runs of group ``key`` left open on ``start``'s host (and PID
    namespace) by processes that are gone; with ``start.exclusive`` (the run holds the
    group's lock for every host), every run of the group left open anywhere."""
    if alive is None:
        return
    if start.exclusive:
        rows = tx.rows(sql.OPEN_IN_GROUP, {"k": key})
    else:
        rows = tx.rows(sql.OPEN_ON_HOST, {"k": key, "host": start.host, "ns": start.pid_ns})
    for row in rows:
        if not start.exclusive:
            if row["pid"] is not None and alive(row["pid"], row["pid_start"]):
                continue
            if row["child_pid"] is not None and alive(row["child_pid"],
                                                      row["child_pid_start"]):
                continue  # its wrapper is gone (the OOM killer) but its command still runs
        where = "" if row["host"] == start.host else f" on {row['host']}"
        log.warning("jobreport: a run of job %s (pid %s%s) was left open by a process that "
                    "is gone; recorded as abandoned", start.job, row["pid"], where)
        # it ended at some point before this run started, never after it
        ended = max(row["started"], min(time.time(), start.started))
        seq = bump(tx, key, start.job, new_group)
        end = {"ended": ended, "duration": ended - row["started"], "outcome": ABANDONED}
        tx.run(sql.ABANDON, {**end, "seq": seq, "id": row["id"]})
        count_end(tx, key, end)


def start_values(start: RunStart, key: str) -> dict[str, Any]:
    """The columns of a run's start: where it ran, and what it is held to."""
    spec = start.spec if start.spec is not None else JobSpec(start.job)
    return {
        "group_key": key, "job": start.job, "host": start.host, "pid": start.pid,
        "pid_start": start.pid_start, "started": start.started,
        "command": start.command, "uid": start.uid, "pid_ns": start.pid_ns,
        "child_pid": start.child_pid, "child_pid_start": start.child_pid_start,
        **spec_values(spec),
    }


def delivery_row(tx: Tx, key: str, sink: str, attempted: int | None = None) -> None:
    """Make sure group ``key`` has its delivered mark for ``sink``. A new mark made for a
    delivery of state ``attempted`` that failed starts where the other sinks got with the
    group, short of that state (what ``sql.PENDING`` assumes of a sink without a mark)."""
    base = 0
    if attempted is not None:
        rows = tx.rows(sql.DELIVERED_ELSEWHERE, {"k": key, "sink": sink})
        elsewhere = rows[0]["s"] if rows and rows[0]["s"] is not None else 0
        base = max(0, min(int(elsewhere), attempted - 1))
    insert, conflict = tx.insert_missing
    tx.run(sql.NEW_DELIVERY.format(insert=insert, conflict=conflict),
           {"k": key, "sink": sink, "base": base})


def read_state(tx: Tx, key: str) -> tuple[GroupState, int]:
    """The whole known state of group ``key`` and the ``seq`` it reflects."""
    grouping = grouping_from_key(key)
    found = tx.rows(sql.GROUP, {"k": key})
    if not found:
        return GroupState(job=grouping["job"], grouping=grouping, runs_total={}), 0
    g = found[0]
    newest = tx.rows(sql.NEWEST_START, {"k": key})
    last = tx.rows(sql.LAST_END, {"k": key})
    result = run_result(last[0]) if last else None
    state = GroupState(
        job=grouping["job"], grouping=grouping,
        last_heartbeat=g["last_heartbeat"],
        last_success=g["last_success"], last_failure=g["last_failure"],
        running=int(g["running"] or 0),
        runs_total={str(r["outcome"]): int(r["n"]) for r in tx.rows(sql.COUNTS, {"k": key})},
        pushed=load_custom(g["pushed"]),
        last_start=newest[0]["started"] if newest else None,
        # size and items are the newest ever reported, not only the last run's
        last=(result._replace(size=g["last_size"], items=g["last_items"])
              if result is not None else None),
        consecutive_failures=int(g["failure_streak"] or 0),
        typical_size=typical(g["recent_sizes"]),
        typical_duration=typical(g["recent_durations"]))
    if newest:  # what the newest run is held to, and the deadlines of its schedule
        state = state.held_to(JobSpec.from_columns(state.job, newest[0]))
    return state, int(g["seq"])
