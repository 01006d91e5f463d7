"""The local store: every run, and per group and sink whether its newest state got there.

SQLite by default, under the XDG state directory with owner-only permissions, in WAL mode
with a busy timeout and short ``BEGIN IMMEDIATE`` transactions, so that many cron jobs can
write one file at once. Any SQLAlchemy URL works (PostgreSQL for a fleet-wide history); the
tables are defined once in ``jobreport.store.schema``, the SQL is in ``jobreport.store.sql``
and runs on both backends (``jobreport.store.backends``); older stores are brought up to date
by ``jobreport.store.migrations``.

Every change to a group (a run opened, closed or abandoned; a heartbeat; pushed values)
bumps the group's ``seq``; a delivery records, per sink, the ``seq`` it carried as that
sink's ``delivered_seq``. A group is pending for a sink while ``seq > delivered_seq`` and it
is not retired (``jobreport delete``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any

from jobreport.errors import StoreError
from jobreport.outcomes import ABANDONED, SKIPPED, SUCCESS
from jobreport.records import (
    CustomFamily,
    GroupState,
    RunPlan,
    RunRecord,
    RunResult,
    dump_custom,
    group_key,
    grouping_from_key,
    load_custom,
)
from jobreport.store import sql
from jobreport.store.backends import Tx, open_backend
from jobreport.store.marks import DeliveryMarks
from jobreport.store.migrations import SCHEMA_VERSION, ensure_schema
from jobreport.store.rows import (
    TAIL_MAX_BYTES,
    PendingGroup,
    RunStart,
    Undelivered,
    end_values,
    run_record,
    run_result,
)

__all__ = ["SCHEMA_VERSION", "TAIL_MAX_BYTES", "PendingGroup", "RunStart", "Store",
           "Undelivered"]

log = logging.getLogger("jobreport")


class Store(DeliveryMarks):
    """The run history and delivery state of one database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._db = open_backend(url)
        self.is_sqlite = self._db.is_sqlite
        self._schema_ready = False
        #: This process created the store (a new install, or one whose file was removed).
        self.created = False
        self._adopts: bool | None = None

    @property
    def display_url(self) -> str:
        """The URL with any password masked."""
        return self._db.display_url

    # --- transactions -------------------------------------------------------------------

    def _write(self) -> AbstractContextManager[Tx]:
        self.ensure_schema()
        return self._db.write()

    def _read(self) -> AbstractContextManager[Tx]:
        self.ensure_schema()
        return self._db.read()

    def ensure_schema(self) -> None:
        """Create the tables on first use, or migrate an older store (safe when many
        processes do it at once). An up-to-date store is only read here."""
        if not self._schema_ready or self._db.replaced:
            self._db.replaced = False
            self.created = ensure_schema(self._db) or self.created
            self._adopts = None
            self._schema_ready = True

    @property
    def fresh(self) -> bool:
        """The store was created new (a new install, or one whose file was removed), by this
        process or another: a group's first delivery to a sink adopts what the sink holds
        (``adopt``), so that the store's first complete push lowers nothing."""
        self.ensure_schema()
        if self._adopts is None:
            with self._db.read() as tx:
                self._adopts = bool(tx.rows(sql.ADOPTS))
        return self.created or self._adopts

    def schema_version(self) -> int:
        self.ensure_schema()
        with self._db.read() as tx:
            rows = tx.rows(sql.VERSION)
        return int(rows[0]["value"]) if rows else 0

    # --- writing ------------------------------------------------------------------------

    @staticmethod
    def _bump(tx: Tx, key: str, job: str) -> int:
        """Increment the group's seq (creating the group) and return the new value.

        The UPDATE locks the group's row until the transaction ends (PostgreSQL), so that
        changes to one group are serialized; a group two processes create at once is
        inserted by one of them, and the other one's UPDATE then waits for it."""
        for _ in range(2):
            if tx.returning:
                rows = tx.rows(sql.BUMP + " RETURNING seq", {"k": key})
                if rows:
                    return int(rows[0]["seq"])
            elif tx.run(sql.BUMP, {"k": key}):
                return int(tx.rows(sql.SEQ, {"k": key})[0]["seq"])
            insert, conflict = tx.insert_missing
            tx.run(sql.NEW_GROUP.format(insert=insert, conflict=conflict),
                   {"k": key, "job": job})
        raise StoreError(f"cannot create the group {key} in the store")

    @staticmethod
    def _count_end(tx: Tx, key: str, end: Mapping[str, Any]) -> None:
        """Fold a closed run into its group's counters and forward-only summaries."""
        outcome = end["outcome"]
        if tx.run(sql.COUNT, {"k": key, "o": outcome}) == 0:
            insert, conflict = tx.insert_missing
            tx.run(sql.NEW_COUNT.format(insert=insert, conflict=conflict),
                   {"k": key, "o": outcome})
            tx.run(sql.COUNT, {"k": key, "o": outcome})
        if outcome == SKIPPED:
            return
        ended = end["ended"]
        g = tx.rows("SELECT last_success, last_failure, last_size_at, last_items_at "
                    "FROM jobreport_groups WHERE group_key = :k", {"k": key})[0]
        values: dict[str, Any] = {}
        column = "last_success" if outcome == SUCCESS else "last_failure"
        if g[column] is None or g[column] < ended:
            values[column] = ended
        for name in ("size", "items"):
            at = g[f"last_{name}_at"]
            if end.get(name) is not None and (at is None or at <= ended):
                values[f"last_{name}"] = end[name]
                values[f"last_{name}_at"] = ended
        if values:
            sets = ", ".join(f"{c} = :{c}" for c in values)  # fixed column names only
            tx.run(f"UPDATE jobreport_groups SET {sets} WHERE group_key = :k",
                   {**values, "k": key})

    def open_run(self, start: RunStart, *, alive: Any = None) -> int:
        """Record a run as started; close runs of its group that were left open on this host
        by processes that are gone (``abandoned``). ``alive(pid, pid_start) -> bool`` decides
        whether a process still runs. Returns the run's id."""
        key = group_key(start.grouping)
        with self._write() as tx:
            self._close_abandoned(tx, key, start, alive)
            self._bump(tx, key, start.job)
            return tx.insert(sql.INSERT_RUN, {**self._start_values(start, key),
                                              **dict.fromkeys(sql.END_COLUMNS)})

    def close_abandoned(self, start: RunStart, *, alive: Any) -> None:
        """Close as abandoned the runs of ``start``'s group left open on its host (and PID
        namespace) by processes that are gone, without opening a run (``jobreport flush``)."""
        with self._write() as tx:
            self._close_abandoned(tx, group_key(start.grouping), start, alive)

    def _close_abandoned(self, tx: Tx, key: str, start: RunStart, alive: Any) -> None:
        if alive is None:
            return
        for row in tx.rows(sql.OPEN_ON_HOST, {"k": key, "host": start.host, "ns": start.pid_ns}):
            if row["pid"] is not None and alive(row["pid"], row["pid_start"]):
                continue
            if row["child_pid"] is not None and alive(row["child_pid"], row["child_pid_start"]):
                continue  # its wrapper is gone (the OOM killer) but its command still runs
            log.warning("jobreport: a run of job %s (pid %s) was left open by a process that "
                        "is gone; recorded as abandoned", start.job, row["pid"])
            # it ended at some point before this run started, never after it
            ended = max(row["started"], min(time.time(), start.started))
            seq = self._bump(tx, key, start.job)
            end = {"ended": ended, "duration": ended - row["started"], "outcome": ABANDONED}
            tx.run(sql.ABANDON, {**end, "seq": seq, "id": row["id"]})
            self._count_end(tx, key, end)

    def close_run(self, run_id: int, result: RunResult) -> tuple[GroupState, int]:
        """Record how a run that ``open_run`` started ended; return its group's new state
        and the ``seq`` that state reflects (read in the same transaction)."""
        with self._write() as tx:
            rows = tx.rows(sql.RUN_GROUP, {"id": run_id})
            if not rows:
                raise StoreError(f"run {run_id} is not in the store {self.display_url}")
            key, job = rows[0]["group_key"], rows[0]["job"]
            if rows[0]["ended"] is None:  # not closed meanwhile (as abandoned, elsewhere)
                seq = self._bump(tx, key, job)
                values = end_values(result, seq)
                tx.run(sql.END_RUN, {**values, "id": run_id})
                self._count_end(tx, key, values)
            return self._state(tx, key)

    def record_run(self, start: RunStart, result: RunResult, *,
                   alive: Any = None) -> tuple[int, GroupState, int]:
        """Record a whole run at once (a skipped run, or one too short to be opened first),
        closing abandoned runs as ``open_run`` does; return its id, its group's new state and
        the ``seq`` of that state."""
        key = group_key(start.grouping)
        with self._write() as tx:
            self._close_abandoned(tx, key, start, alive)
            seq = self._bump(tx, key, start.job)
            values = end_values(result, seq)
            run_id = tx.insert(sql.INSERT_RUN, {**self._start_values(start, key), **values})
            self._count_end(tx, key, values)
            state, seq = self._state(tx, key)
            return run_id, state, seq

    @staticmethod
    def _start_values(start: RunStart, key: str) -> dict[str, Any]:
        return {
            "group_key": key, "job": start.job, "host": start.host, "pid": start.pid,
            "pid_start": start.pid_start, "started": start.started,
            "command": start.command, "uid": start.uid, "pid_ns": start.pid_ns,
            "child_pid": start.child_pid, "child_pid_start": start.child_pid_start,
            **{c: getattr(start.plan, c) for c in sql.PLAN_COLUMNS},
        }

    def set_heartbeat(self, grouping: Mapping[str, str], when: float, *,
                      uid: str | None = None) -> int | None:
        """Record a heartbeat of the group; return the new seq. With ``uid`` (the run's
        ``$JOBREPORT_RUN_ID``) the heartbeat is dropped (None) unless that run is open: a
        late heartbeat of a finished run must never move the group's state."""
        key = group_key(grouping)
        with self._write() as tx:
            if uid is not None and not tx.rows(sql.OPEN_RUN, {"u": uid, "k": key}):
                return None
            seq = self._bump(tx, key, grouping["job"])
            tx.run(sql.HEARTBEAT, {"t": when, "k": key})
            return seq

    def record_pushed(self, grouping: Mapping[str, str],
                      families: Sequence[CustomFamily]) -> int:
        """Keep the values ``jobreport push`` gave the group (a family of the same name
        replaces the older one), so that every later complete push carries them."""
        key = group_key(grouping)
        with self._write() as tx:
            seq = self._bump(tx, key, grouping["job"])
            rows = tx.rows(sql.PUSHED_OF, {"k": key})
            kept = {f.name: f for f in load_custom(rows[0]["pushed"] if rows else None)}
            kept.update((f.name, f) for f in families)
            tx.run(sql.PUSHED, {"p": dump_custom(tuple(kept.values())), "k": key})
            return seq

    def retire_group(self, key: str) -> bool:
        """Retire a deleted group: no flush brings it back, and what ``jobreport push`` gave
        it is forgotten; a new run of the job revives it. False when the store never had it."""
        with self._write() as tx:
            found = tx.run(sql.RETIRE, {"k": key, "now": time.time()}) > 0
            if found:
                tx.run(sql.PUSHED, {"p": None, "k": key})
                tx.run(sql.RETIRE_DELIVERIES, {"k": key})
            return found

    # --- reading ------------------------------------------------------------------------

    def group_state(self, key: str) -> tuple[GroupState, int]:
        """The whole known state of group ``key`` and the ``seq`` it reflects."""
        with self._read() as tx:
            return self._state(tx, key)

    @staticmethod
    def _state(tx: Tx, key: str) -> tuple[GroupState, int]:
        grouping = grouping_from_key(key)
        state = GroupState(job=grouping["job"], grouping=grouping, runs_total={})
        found = tx.rows(sql.GROUP, {"k": key})
        if not found:
            return state, 0
        g = found[0]
        state.last_heartbeat = g["last_heartbeat"]
        state.last_success, state.last_failure = g["last_success"], g["last_failure"]
        state.running = int(g["running"] or 0)
        state.runs_total = {str(r["outcome"]): int(r["n"])
                            for r in tx.rows(sql.COUNTS, {"k": key})}
        state.pushed = load_custom(g["pushed"])
        newest = tx.rows(sql.NEWEST_START, {"k": key})
        if newest:
            state.last_start = newest[0]["started"]
        last = tx.rows(sql.LAST_END, {"k": key})
        if last:
            result = run_result(last[0])
            if result is not None:
                # size and items are the newest ever reported, not only the last run's
                state.last = replace(result, size=g["last_size"], items=g["last_items"])
        state.consecutive_failures = int(
            tx.rows(sql.CONSECUTIVE_FAILURES, {"k": key})[0]["n"] or 0)
        if newest:  # its thresholds, and the deadlines of its schedule
            RunPlan.from_row(newest[0]).apply(state)
        return state, int(g["seq"])

    def group_keys(self, job: str | None = None, *, retired: bool = False) -> list[str]:
        """The groups the store knows (``retired``: the deleted ones too)."""
        where = [] if retired else ["retired IS NULL"]
        if job is not None:
            where.append("job = :job")
        query = "SELECT group_key FROM jobreport_groups"
        if where:
            query += " WHERE " + " AND ".join(where)
        with self._read() as tx:
            return [str(r["group_key"]) for r in tx.rows(query + " ORDER BY group_key",
                                                         {"job": job})]

    def history(self, job: str | None = None, *, limit: int | None = 20,
                since: float | None = None, outcomes: Sequence[str] = ()) -> list[RunRecord]:
        """Runs, newest (last recorded) first."""
        names = [f"o{i}" for i in range(len(outcomes))]
        params: dict[str, Any] = {"job": job, "since": since, "limit": limit,
                                  **dict(zip(names, outcomes, strict=True))}
        where = [clause for clause, used in (
            ("job = :job", job is not None), ("started >= :since", since is not None),
            (f"outcome IN ({', '.join(':' + n for n in names)})", bool(outcomes))) if used]
        query = "SELECT * FROM jobreport_runs"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY id DESC" + (" LIMIT :limit" if limit is not None else "")
        with self._read() as tx:
            return [run_record(row) for row in tx.rows(query, params)]

    def get_run(self, run_id: int | str) -> RunRecord | None:
        """One run, by its store id or by the ``$JOBREPORT_RUN_ID`` its process was given."""
        params: dict[str, Any]
        if isinstance(run_id, str) and not run_id.isdigit():
            query, params = "SELECT * FROM jobreport_runs WHERE uid = :u", {"u": run_id}
        else:
            query, params = "SELECT * FROM jobreport_runs WHERE id = :id", {"id": int(run_id)}
        with self._read() as tx:
            rows = tx.rows(query, params)
            return run_record(rows[0]) if rows else None

    def close(self) -> None:
        self._db.close()
