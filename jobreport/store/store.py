"""The local store: every run, and per group and sink whether its newest state got there.

SQLite by default, under the XDG state directory with owner-only permissions, in WAL mode
with a busy timeout and short ``BEGIN IMMEDIATE`` transactions, so that many cron jobs can
write one file at once. Any SQLAlchemy URL works (PostgreSQL for a fleet-wide history):
tables in ``schema``, SQL in ``sql`` for both ``backends``, older stores in ``migrations``;
what its readers hand back is in ``read_rows``.

Every change to a group (a run opened, closed or abandoned; a heartbeat; pushed values)
bumps the group's ``seq``; a delivery records, per sink, the ``seq`` it carried as that
sink's ``delivered_seq`` (with the error of a failed attempt). A group is pending for a sink
while ``seq > delivered_seq`` and it is not retired (``jobreport delete``). What one
transaction does to a group is in ``jobreport.store.groups``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from jobreport.errors import StoreError
from jobreport.paths import sqlite_path
from jobreport.result import CustomFamily, RunResult, dump_custom, load_custom
from jobreport.spec import JobSpec
from jobreport.state import GroupState, group_key, grouping_from_key
from jobreport.store import retention as retention_
from jobreport.store import sql
from jobreport.store.backends import Tx, open_backend
from jobreport.store.groups import (
    Alive,
    bump,
    close_abandoned,
    count_end,
    delivery_row,
    read_state,
    start_values,
    take_over,
)
from jobreport.store.migrations import SCHEMA_VERSION, ensure_schema
from jobreport.store.retention import Retention
from jobreport.store.rows import DEFAULT_SINK, TAIL_MAX_BYTES, RunStart, end_values, spec_values

if TYPE_CHECKING:
    from jobreport.held import HeldGroup
    from jobreport.store.read_rows import PendingGroup, RunRecord, Undelivered

__all__ = ["SCHEMA_VERSION", "TAIL_MAX_BYTES", "RunStart", "Store"]


class Store:
    """The run history and delivery marks of one database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._db = open_backend(url)
        self.is_sqlite = self._db.is_sqlite
        self._schema_ready = False
        #: This process created the store (a new install, or one whose file was removed).
        self.created = False
        self._meta: dict[str, str] = {}

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
            created, self._meta = ensure_schema(self._db)
            self.created = created or self.created
            self._schema_ready = True

    @property
    def _new_group(self) -> str:
        # a store made before schema 5 has a NOT NULL groups.delivered_seq to fill
        return sql.NEW_GROUP_V4 if self._meta.get("groups_delivered_seq") else sql.NEW_GROUP

    @property
    def fresh(self) -> bool:
        """The store was created new (a new install, or one whose file was removed), by this
        process or another: a group's first delivery to a sink adopts what the sink holds
        (``adopt``), so that the store's first complete push lowers nothing."""
        self.ensure_schema()
        return self.created or bool(self._meta.get("adopts"))

    def schema_version(self) -> int:
        self.ensure_schema()
        with self._db.read() as tx:
            rows = tx.rows(sql.VERSION)
        return int(rows[0]["value"]) if rows else 0

    # --- runs ---------------------------------------------------------------------------

    def open_run(self, start: RunStart, *, alive: Alive | None = None) -> int:
        """Record a run as started; close runs of its group that were left open on this host
        by processes that are gone (``abandoned``). ``alive(pid, pid_start) -> bool`` decides
        whether a process still runs. Returns the run's id."""
        key = group_key(start.grouping)
        with self._write() as tx:
            close_abandoned(tx, key, start, alive, self._new_group)
            bump(tx, key, start.job, self._new_group)
            return tx.insert(sql.INSERT_RUN, {**start_values(start, key),
                                              **dict.fromkeys(sql.END_COLUMNS)})

    def close_abandoned(self, start: RunStart, *, alive: Alive) -> None:
        """Close as abandoned the runs of ``start``'s group left open on its host (and PID
        namespace) by processes that are gone, without opening a run (``jobreport flush``)."""
        with self._write() as tx:
            close_abandoned(tx, group_key(start.grouping), start, alive, self._new_group)

    def close_run(self, run_id: int, result: RunResult, *,
                  spec: JobSpec | None = None) -> tuple[GroupState, int]:
        """Record how a run that ``open_run`` started ended (``spec``: what it is held to
        after all, when its end added to it); return its group's new state and the ``seq``
        that state reflects (read in the same transaction)."""
        with self._write() as tx:
            rows = tx.rows(sql.RUN_GROUP, {"id": run_id})
            if not rows:
                raise StoreError(f"run {run_id} is not in the store {self.display_url}")
            key, job = rows[0]["group_key"], rows[0]["job"]
            if rows[0]["ended"] is None:  # not closed meanwhile (as abandoned, elsewhere)
                seq = bump(tx, key, job, self._new_group)
                values = end_values(result, seq)
                tx.run(sql.END_RUN, {**values, "id": run_id})
                if spec is not None:
                    tx.run(sql.SPEC_OF_RUN, {**spec_values(spec), "id": run_id})
                count_end(tx, key, values)
            return read_state(tx, key)

    def record_run(self, start: RunStart, result: RunResult, *,
                   alive: Alive | None = None) -> tuple[int, GroupState, int]:
        """Record a whole run at once (a skipped run, or one too short to be opened first),
        closing abandoned runs as ``open_run`` does; return its id, its group's new state and
        the ``seq`` of that state."""
        key = group_key(start.grouping)
        with self._write() as tx:
            close_abandoned(tx, key, start, alive, self._new_group)
            seq = bump(tx, key, start.job, self._new_group)
            values = end_values(result, seq)
            run_id = tx.insert(sql.INSERT_RUN, {**start_values(start, key), **values})
            count_end(tx, key, values)
            state, seq = read_state(tx, key)
            return run_id, state, seq

    def set_heartbeat(self, grouping: Mapping[str, str], when: float, *,
                      uid: str | None = None) -> int | None:
        """Record a heartbeat of the group; return the new seq. With ``uid`` (the run's
        ``$JOBREPORT_RUN_ID``) the heartbeat is dropped (None) unless that run is open: a
        late heartbeat of a finished run must never move the group's state."""
        key = group_key(grouping)
        with self._write() as tx:
            if uid is not None and not tx.rows(sql.OPEN_RUN, {"u": uid, "k": key}):
                return None
            seq = bump(tx, key, grouping["job"], self._new_group)
            tx.run(sql.HEARTBEAT, {"t": when, "k": key})
            return seq

    def record_pushed(self, grouping: Mapping[str, str],
                      families: Sequence[CustomFamily]) -> int:
        """Keep the values ``jobreport push`` gave the group (a family of the same name
        replaces the older one), so that every later complete push carries them."""
        key = group_key(grouping)
        with self._write() as tx:
            seq = bump(tx, key, grouping["job"], self._new_group)
            rows = tx.rows(sql.PUSHED_OF, {"k": key})
            kept = {f.name: f for f in load_custom(rows[0]["pushed"] if rows else None)}
            kept.update((f.name, f) for f in families)
            tx.run(sql.PUSHED, {"p": dump_custom(tuple(kept.values())), "k": key})
            return seq

    def retire_group(self, key: str) -> bool:
        """Retire a deleted group: no flush brings it back, and what ``jobreport push`` gave
        it is forgotten; a new run of the job revives it. False when the store never had it.
        A group retired already keeps the time it was first retired (``retired_at``)."""
        with self._write() as tx:
            found = tx.run(sql.RETIRE, {"k": key, "now": time.time()}) > 0
            if found:
                tx.run(sql.PUSHED, {"p": None, "k": key})
                tx.run(sql.RETIRE_DELIVERIES, {"k": key})
            return found

    def retired_at(self, key: str) -> float | None:
        """When group ``key`` was retired (deleted); None while it lives, or when the store
        never had it."""
        with self._read() as tx:
            rows = tx.rows(sql.RETIRED, {"k": key})
            return float(rows[0]["retired"]) if rows and rows[0]["retired"] is not None \
                else None

    # --- reading ------------------------------------------------------------------------

    def group_state(self, key: str) -> tuple[GroupState, int]:
        """The whole known state of group ``key`` and the ``seq`` it reflects."""
        with self._read() as tx:
            return read_state(tx, key)

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
        from jobreport.store.read_rows import run_record
        params: dict[str, Any] = {"job": job, "since": since, "limit": limit}
        where = [clause for clause, used in (
            ("job = :job", job is not None), ("started >= :since", since is not None),
            ("outcome = :outcome", bool(outcomes))) if used]
        query = "SELECT * FROM jobreport_runs"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY id DESC" + (" LIMIT :limit" if limit is not None else "")
        with self._read() as tx:
            if not outcomes:
                return [run_record(row) for row in tx.rows(query, params)]
            # one outcome at a time: each is read newest first from the outcome index and
            # stops at the limit (an IN list would sort every run of those outcomes)
            rows = [row for outcome in dict.fromkeys(outcomes)
                    for row in tx.rows(query, {**params, "outcome": outcome})]
        rows.sort(key=lambda row: -int(row["id"]))
        return [run_record(row) for row in rows[:limit]]

    def get_run(self, run_id: int | str) -> RunRecord | None:
        """One run, by its store id or by the ``$JOBREPORT_RUN_ID`` its process was given."""
        from jobreport.store.read_rows import run_record
        params: dict[str, Any]
        if isinstance(run_id, str) and not run_id.isdigit():
            query, params = "SELECT * FROM jobreport_runs WHERE uid = :u", {"u": run_id}
        else:
            query, params = "SELECT * FROM jobreport_runs WHERE id = :id", {"id": int(run_id)}
        with self._read() as tx:
            rows = tx.rows(query, params)
            return run_record(rows[0]) if rows else None

    # --- per group and sink: how far delivery got ---------------------------------------

    def delivering(self, key: str, sink: str, deadline: float) -> AbstractContextManager[bool]:
        """Hold group ``key``'s delivery to ``sink`` to this process while the block runs
        (it yields True), waiting for it until ``deadline`` (False: another process still
        delivers the group then). Only a store many hosts share (PostgreSQL) holds a lock:
        one delivery of a group to a sink at a time, so that the one that reaches the sink
        last carries the newest state (``store.locks.DeliveryLock``). A store of one host
        yields True at once: its deliveries repeat while the group changed."""
        from jobreport.store.locks import delivery_lock

        return delivery_lock(self.url, self._db, f"{key}\n{sink}", deadline)

    def mark_delivered(self, key: str, seq: int, *, sink: str = DEFAULT_SINK,
                       problem: str | None = None, left_out: Sequence[str] = ()) -> int:
        """``sink`` accepted the state ``seq`` of group ``key`` (``problem``: it did so only
        with ``left_out`` families removed, which keeps the group pending). Returns the
        group's current seq: larger means it changed during the delivery."""
        with self._write() as tx:
            delivery_row(tx, key, sink)
            tx.run(sql.DELIVERED, {
                "k": key, "sink": sink, "s": seq - 1 if problem else seq, "now": time.time(),
                "e": problem[:2000] if problem else None,
                "left": json.dumps(list(left_out)) if left_out else None,
            })
            rows = tx.rows(sql.SEQ, {"k": key})
            return int(rows[0]["seq"]) if rows else 0

    def mark_failed(self, key: str, error: str, *, sink: str = DEFAULT_SINK,
                    seq: int | None = None) -> None:
        """``sink`` did not take group ``key``'s state (``seq``, when known): keep it
        pending, error recorded."""
        with self._write() as tx:
            delivery_row(tx, key, sink, seq)
            tx.run(sql.FAILED_DELIVERY, {"e": error[:2000], "now": time.time(), "k": key,
                                         "sink": sink})

    def delivered_seq(self, key: str, sink: str) -> int | None:
        """The ``seq`` of group ``key`` that ``sink`` took last (None: no delivery mark)."""
        with self._read() as tx:
            rows = tx.rows(sql.DELIVERED_SEQ, {"k": key, "sink": sink})
            return int(rows[0]["delivered_seq"]) if rows else None

    def adopt(self, key: str, sink: str, held: HeldGroup | None) -> bool:
        """Take over what ``sink`` holds for group ``key`` (``held``, read from it before
        this store's first delivery of the group there: its counters, last success and
        failure, failure streak, last size and items), so that the store's first complete
        push lowers nothing and later runs build on it. Returns whether it took it over:
        only when the group has no delivery mark for ``sink`` yet, and it leaves one.

        ``held`` is read without the store's lock (a gateway may take seconds to answer,
        and every other run of the store would wait for it); it is taken over under the
        write lock and the group's row lock, and only while the group has no delivery mark.
        That is exact, also with several processes of one new store: every push of the
        group from this store follows the mark, so a reading made before the mark existed
        holds none of this store's runs; a process that read the sink too, but finds the
        mark when it gets the lock (another one adopted meanwhile) takes nothing over.
        Runs recorded before the mark are added to what is taken over, not counted in it."""
        with self._write() as tx:
            tx.run(sql.LOCK_GROUP, {"k": key})
            if tx.rows(sql.HAS_DELIVERY, {"k": key, "sink": sink}):
                return False  # adopted or delivered already (another process, meanwhile)
            delivery_row(tx, key, sink)
            if held is not None:
                take_over(tx, key, held, self._new_group)
            return True

    def pending(self, sink: str = DEFAULT_SINK) -> list[PendingGroup]:
        """Every group (not retired) whose newest state has not reached ``sink``."""
        from jobreport.store.read_rows import PendingGroup
        with self._read() as tx:
            out = []
            for g in tx.rows(sql.PENDING, {"sink": sink}):
                n = tx.rows(sql.PENDING_RUNS, {"k": g["group_key"], "d": g["delivered_seq"]})
                out.append(PendingGroup(g["group_key"], g["job"],
                                        grouping_from_key(g["group_key"]), int(n[0]["n"]),
                                        since=n[0]["since"], last_error=g["last_error"]))
            return out

    def undelivered(self, job: str | None = None) -> list[Undelivered]:
        """Every group (not retired) that a sink has not taken the newest state of, with
        the error of the last attempt: what ``check``, ``status`` and ``history`` show."""
        from jobreport.store.read_rows import Undelivered
        with self._read() as tx:
            out = []
            for d in tx.rows(sql.UNDELIVERED):
                if job is not None and d["job"] != job:
                    continue
                since = tx.rows(sql.PENDING_RUNS, {"k": d["group_key"],
                                                   "d": d["delivered_seq"]})[0]["since"]
                out.append(Undelivered(str(d["group_key"]), str(d["job"]), d["sink"], since,
                                       d["last_error"]))
            return out

    # --- a bounded store ----------------------------------------------------------------

    def trim(self, key: str, retention: Retention, *, sinks: Sequence[str] = (),
             deadline: float, exact: bool = True) -> bool:
        """Remove group ``key``'s runs beyond ``retention`` (and its old output tails), never
        its newest, an open one or one not yet delivered to ``sinks``; in batches until
        ``deadline`` (``time.monotonic()``). True when nothing is left to trim. Not
        ``exact`` (after each run of the group): ``keep_runs`` is held to within 0.1%
        (``jobreport.store.retention.trim_batch``)."""
        self.ensure_schema()
        return retention_.trim_group(self._db, key, retention, sinks, deadline=deadline,
                                     exact=exact)

    def sweep(self, retention: Retention, *, sinks: Sequence[str] = (),
              deadline: float) -> bool | None:
        """Trim every group, at most once an hour (``jobreport.store.retention.sweep``)."""
        self.ensure_schema()
        return retention_.sweep(self._db, retention, sinks, deadline=deadline)

    def size(self) -> int | None:
        """Bytes the store takes: an SQLite file with its WAL and shared-memory files, or
        PostgreSQL's ``pg_total_relation_size`` of the tables (None: not known)."""
        path = sqlite_path(self.url)
        if path is not None:
            total = 0
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    total += os.stat(path + suffix).st_size
            return total
        self.ensure_schema()
        try:
            with self._read() as tx:
                if not tx.postgresql:
                    return None
                rows = tx.rows(sql.PG_SIZE)
        except StoreError:
            return None
        return int(rows[0]["n"] or 0) if rows else None

    def close(self) -> None:
        self._db.close()
