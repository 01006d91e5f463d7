"""The local store: every run, and per group whether its newest state reached the gateway.

SQLite by default, under the XDG state directory with owner-only permissions, in WAL mode
with a busy timeout and short ``BEGIN IMMEDIATE`` transactions, so that many cron jobs can
write one file at once. Any SQLAlchemy URL works (PostgreSQL for a fleet-wide history); the
tables are defined once in ``jobreport.store.schema`` and the SQL here runs on both backends
(``jobreport.store.backends``).

Every change to a group (a run opened, closed or abandoned; a heartbeat) bumps the group's
``seq``; a push records the ``seq`` it carried as ``delivered_seq``. A group is pending while
``seq > delivered_seq``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from jobreport.errors import StoreError
from jobreport.outcomes import ABANDONED, OUTCOMES, SKIPPED, SUCCESS
from jobreport.records import (
    CustomFamily,
    GroupState,
    RunRecord,
    dump_custom,
    group_key,
    grouping_from_key,
    load_custom,
)
from jobreport.store.backends import Tx, open_backend

__all__ = ["PendingGroup", "RunEnd", "RunStart", "Store"]

log = logging.getLogger("jobreport")

#: Bump with every change to the tables (jobreport.store.schema); a newer store is refused.
SCHEMA_VERSION = 2
#: Columns each schema version added to a store made by an older one: (table, column, SQL type).
_ADDED_COLUMNS: dict[int, tuple[tuple[str, str, str], ...]] = {
    2: (("jobreport_runs", "pid_ns", "VARCHAR(64)"),
        ("jobreport_runs", "child_pid", "INTEGER"),
        ("jobreport_runs", "child_pid_start", "DOUBLE PRECISION")),
}
TAIL_MAX_BYTES = 64 * 1024

_START_COLUMNS = ("group_key", "job", "host", "pid", "pid_start", "started",
                  "expected_interval", "max_runtime", "command", "uid", "pid_ns", "child_pid",
                  "child_pid_start")
_END_COLUMNS = ("ended", "duration", "outcome", "exit_code", "size", "items", "cpu_seconds",
                "max_rss_bytes", "tail", "custom", "closed_seq")
_NOT_SKIPPED = "(outcome IS NULL OR outcome <> 'skipped')"
_FAILED = "(" + ", ".join(f"'{o}'" for o in OUTCOMES if o not in (SUCCESS, SKIPPED)) + ")"

_INSERT_RUN = (
    f"INSERT INTO jobreport_runs ({', '.join(_START_COLUMNS + _END_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _START_COLUMNS + _END_COLUMNS)})"
)
_END_RUN = (
    f"UPDATE jobreport_runs SET {', '.join(f'{c} = :{c}' for c in _END_COLUMNS)} "
    "WHERE id = :id"
)
_BUMP = "UPDATE jobreport_groups SET seq = seq + 1 WHERE group_key = :k"
_SEQ = "SELECT seq FROM jobreport_groups WHERE group_key = :k"
_NEW_GROUP = ("{insert} INTO jobreport_groups (group_key, job, seq, delivered_seq) "
              "VALUES (:k, :job, 0, 0) {conflict}")
_COUNT = "UPDATE jobreport_counts SET n = n + 1 WHERE group_key = :k AND outcome = :o"
_NEW_COUNT = "{insert} INTO jobreport_counts (group_key, outcome, n) VALUES (:k, :o, 0) {conflict}"
_COUNTS = "SELECT outcome, n FROM jobreport_counts WHERE group_key = :k"
_GROUP = (
    "SELECT g.*, (SELECT count(*) FROM jobreport_runs r "
    "WHERE r.group_key = :k AND r.ended IS NULL) AS running "
    "FROM jobreport_groups g WHERE g.group_key = :k"
)
_NEWEST_START = (
    "SELECT started, outcome, expected_interval, max_runtime FROM jobreport_runs "
    f"WHERE group_key = :k AND {_NOT_SKIPPED} ORDER BY started DESC, id DESC LIMIT 1"
)
_LAST_END = (
    "SELECT * FROM jobreport_runs "
    f"WHERE group_key = :k AND {_NOT_SKIPPED} AND ended IS NOT NULL "
    "ORDER BY ended DESC, id DESC LIMIT 1"
)
_RUN_GROUP = "SELECT group_key, job, ended FROM jobreport_runs WHERE id = :id"
_OPEN_ON_HOST = (
    "SELECT id, pid, pid_start, child_pid, child_pid_start, started FROM jobreport_runs "
    "WHERE group_key = :k AND ended IS NULL AND host = :host "
    "AND (pid_ns IS NULL OR pid_ns = :ns)"
)
_ABANDON = ("UPDATE jobreport_runs SET ended = :ended, duration = :duration, "
            "outcome = :outcome, closed_seq = :seq WHERE id = :id")
_DELIVERED = ("UPDATE jobreport_groups SET delivered_seq = :s, last_error = NULL, "
              "last_attempt = :now WHERE group_key = :k AND delivered_seq < :s")
_FAILED_PUSH = ("UPDATE jobreport_groups SET last_error = :e, last_attempt = :now "
                "WHERE group_key = :k")
_HEARTBEAT = "UPDATE jobreport_groups SET last_heartbeat = :t WHERE group_key = :k"
_OPEN_RUN = ("SELECT id FROM jobreport_runs WHERE uid = :u AND group_key = :k "
             "AND ended IS NULL")
_FORGET = "UPDATE jobreport_groups SET delivered_seq = seq WHERE group_key = :k"
_PENDING = ("SELECT group_key, job, delivered_seq FROM jobreport_groups "
            "WHERE seq > delivered_seq ORDER BY group_key")
_PENDING_RUNS = ("SELECT count(*) AS n FROM jobreport_runs "
                 "WHERE group_key = :k AND closed_seq > :d")
_VERSION = "SELECT value FROM jobreport_meta WHERE key = 'schema_version'"


@dataclass(frozen=True)
class RunStart:
    """What is known when a run starts."""

    job: str
    grouping: Mapping[str, str]
    started: float
    host: str
    pid: int | None = None
    pid_start: float | None = None
    expected_interval: float | None = None
    max_runtime: float | None = None
    command: str | None = None
    uid: str | None = None
    #: The PID namespace ``pid`` and ``child_pid`` belong to (jobreport.liveness).
    pid_ns: str | None = None
    #: The command's own process: the run lives on while it does, even without its wrapper.
    child_pid: int | None = None
    child_pid_start: float | None = None


@dataclass(frozen=True)
class RunEnd:
    """What is known when a run ends."""

    ended: float
    duration: float
    outcome: str
    exit_code: int
    size: float | None = None
    items: float | None = None
    cpu_seconds: float | None = None
    max_rss_bytes: float | None = None
    tail: str | None = None
    custom: tuple[CustomFamily, ...] = ()


@dataclass(frozen=True)
class PendingGroup:
    """A group whose newest state has not reached the gateway."""

    key: str
    job: str
    grouping: dict[str, str]
    pending_runs: int


def _bound_tail(tail: str | None) -> str | None:
    if tail is None:
        return None
    data = tail.encode("utf-8", "replace")
    if len(data) <= TAIL_MAX_BYTES:
        return tail
    return data[-TAIL_MAX_BYTES:].decode("utf-8", "replace")


class Store:
    """The run history and delivery state of one database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._db = open_backend(url)
        self.is_sqlite = self._db.is_sqlite
        self._schema_ready = False

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
        """Create the tables on first use (safe when many processes do it at once).

        An existing store is only read here: no write lock is taken unless tables are
        missing, so a hundred jobs starting at once do not queue behind each other."""
        if self._schema_ready:
            return
        version = self._version()
        if version is None:
            self._db.create_tables()
            with self._db.write() as tx:
                if not tx.rows(_VERSION):
                    tx.run("INSERT INTO jobreport_meta (key, value) VALUES ('schema_version', "
                           ":v)", {"v": str(SCHEMA_VERSION)})
            version = SCHEMA_VERSION
        if version < SCHEMA_VERSION:
            self._upgrade(version)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store {self.display_url} has schema {version}, newer than this "
                f"jobreport ({SCHEMA_VERSION}); upgrade jobreport"
            )
        self._schema_ready = True

    def _upgrade(self, version: int) -> None:
        """Add what newer schema versions added to a store made by an older jobreport.
        One writer at a time does it; the others find the new version and do nothing."""
        with self._db.write() as tx:
            rows = tx.rows(_VERSION)
            current = int(rows[0]["value"]) if rows else version
            for new in range(current + 1, SCHEMA_VERSION + 1):
                for table, column, sql_type in _ADDED_COLUMNS.get(new, ()):
                    missing = "" if self.is_sqlite else "IF NOT EXISTS "
                    tx.run(f"ALTER TABLE {table} ADD COLUMN {missing}{column} {sql_type}")
            if current < SCHEMA_VERSION:
                tx.run("UPDATE jobreport_meta SET value = :v WHERE key = 'schema_version'",
                       {"v": str(SCHEMA_VERSION)})

    def _version(self) -> int | None:
        try:
            with self._db.read() as tx:
                rows = tx.rows(_VERSION)
        except StoreError as e:
            if "no such table" in str(e) or "does not exist" in str(e) or (
                    "doesn't exist" in str(e)):
                return None
            raise
        return int(rows[0]["value"]) if rows else None

    def schema_version(self) -> int:
        self.ensure_schema()
        return self._version() or 0

    # --- writing ------------------------------------------------------------------------

    @staticmethod
    def _bump(tx: Tx, key: str, job: str) -> int:
        """Increment the group's seq (creating the group) and return the new value.

        The UPDATE locks the group's row until the transaction ends (PostgreSQL), so that
        changes to one group are serialized; a group two processes create at once is
        inserted by one of them, and the other one's UPDATE then waits for it."""
        for _ in range(2):
            if tx.returning:
                rows = tx.rows(_BUMP + " RETURNING seq", {"k": key})
                if rows:
                    return int(rows[0]["seq"])
            elif tx.run(_BUMP, {"k": key}):
                return int(tx.rows(_SEQ, {"k": key})[0]["seq"])
            insert, conflict = tx.insert_missing
            tx.run(_NEW_GROUP.format(insert=insert, conflict=conflict), {"k": key, "job": job})
        raise StoreError(f"cannot create the group {key} in the store")

    @staticmethod
    def _count_end(tx: Tx, key: str, end: Mapping[str, Any]) -> None:
        """Fold a closed run into its group's counters and forward-only summaries."""
        outcome = end["outcome"]
        if tx.run(_COUNT, {"k": key, "o": outcome}) == 0:
            insert, conflict = tx.insert_missing
            tx.run(_NEW_COUNT.format(insert=insert, conflict=conflict), {"k": key, "o": outcome})
            tx.run(_COUNT, {"k": key, "o": outcome})
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
            return tx.insert(_INSERT_RUN, {**self._start_values(start, key),
                                           **dict.fromkeys(_END_COLUMNS)})

    def _close_abandoned(self, tx: Tx, key: str, start: RunStart, alive: Any) -> None:
        if alive is None:
            return
        for row in tx.rows(_OPEN_ON_HOST, {"k": key, "host": start.host, "ns": start.pid_ns}):
            if row["pid"] is not None and alive(row["pid"], row["pid_start"]):
                continue
            if row["child_pid"] is not None and alive(row["child_pid"], row["child_pid_start"]):
                continue  # its wrapper is gone (the OOM killer) but its command still runs
            log.warning("jobreport: a run of job %s (pid %s) was left open by a process that "
                        "is gone; recorded as abandoned", start.job, row["pid"])
            # it ended at some point before this run started: never after the run that
            # found it, so that it cannot become "the last run"
            ended = max(row["started"], min(time.time(), start.started))
            seq = self._bump(tx, key, start.job)
            end = {"ended": ended, "duration": ended - row["started"], "outcome": ABANDONED}
            tx.run(_ABANDON, {**end, "seq": seq, "id": row["id"]})
            self._count_end(tx, key, end)

    def close_run(self, run_id: int, end: RunEnd) -> tuple[GroupState, int]:
        """Record how a run that ``open_run`` started ended; return its group's new state
        and the ``seq`` that state reflects (read in the same transaction)."""
        with self._write() as tx:
            rows = tx.rows(_RUN_GROUP, {"id": run_id})
            if not rows:
                raise StoreError(f"run {run_id} is not in the store {self.display_url}")
            key, job = rows[0]["group_key"], rows[0]["job"]
            if rows[0]["ended"] is None:  # not closed meanwhile (as abandoned, elsewhere)
                seq = self._bump(tx, key, job)
                values = self._end_values(end, seq)
                tx.run(_END_RUN, {**values, "id": run_id})
                self._count_end(tx, key, values)
            return self._state(tx, key)

    def record_run(self, start: RunStart, end: RunEnd, *,
                   alive: Any = None) -> tuple[int, GroupState, int]:
        """Record a whole run at once (a skipped run, or one too short to be opened first),
        closing abandoned runs as ``open_run`` does; return its id, its group's new state and
        the ``seq`` of that state."""
        key = group_key(start.grouping)
        with self._write() as tx:
            self._close_abandoned(tx, key, start, alive)
            seq = self._bump(tx, key, start.job)
            values = self._end_values(end, seq)
            run_id = tx.insert(_INSERT_RUN, {**self._start_values(start, key), **values})
            self._count_end(tx, key, values)
            state, seq = self._state(tx, key)
            return run_id, state, seq

    @staticmethod
    def _start_values(start: RunStart, key: str) -> dict[str, Any]:
        return {
            "group_key": key, "job": start.job, "host": start.host, "pid": start.pid,
            "pid_start": start.pid_start, "started": start.started,
            "expected_interval": start.expected_interval, "max_runtime": start.max_runtime,
            "command": start.command, "uid": start.uid, "pid_ns": start.pid_ns,
            "child_pid": start.child_pid, "child_pid_start": start.child_pid_start,
        }

    @staticmethod
    def _end_values(end: RunEnd, seq: int) -> dict[str, Any]:
        return {
            "ended": end.ended, "duration": end.duration, "outcome": end.outcome,
            "exit_code": end.exit_code, "size": end.size, "items": end.items,
            "cpu_seconds": end.cpu_seconds, "max_rss_bytes": end.max_rss_bytes,
            "tail": _bound_tail(end.tail), "custom": dump_custom(end.custom),
            "closed_seq": seq,
        }

    def set_heartbeat(self, grouping: Mapping[str, str], when: float, *,
                      uid: str | None = None) -> int | None:
        """Record a heartbeat of the group; return the new seq. With ``uid`` (the run's
        ``$JOBREPORT_RUN_ID``) the heartbeat is dropped (None) unless that run is open: a
        late heartbeat of a finished run must never move the group's state."""
        key = group_key(grouping)
        with self._write() as tx:
            if uid is not None and not tx.rows(_OPEN_RUN, {"u": uid, "k": key}):
                return None
            seq = self._bump(tx, key, grouping["job"])
            tx.run(_HEARTBEAT, {"t": when, "k": key})
            return seq

    def mark_delivered(self, key: str, seq: int) -> int:
        """The push that carried state ``seq`` of group ``key`` was accepted. Returns the
        group's current seq: larger means it changed during the push."""
        with self._write() as tx:
            tx.run(_DELIVERED, {"k": key, "s": seq, "now": time.time()})
            rows = tx.rows(_SEQ, {"k": key})
            return int(rows[0]["seq"]) if rows else 0

    def mark_failed(self, key: str, error: str) -> None:
        with self._write() as tx:
            tx.run(_FAILED_PUSH, {"e": error[:2000], "now": time.time(), "k": key})

    # --- reading ------------------------------------------------------------------------

    def seq(self, key: str) -> int:
        with self._read() as tx:
            rows = tx.rows(_SEQ, {"k": key})
            return int(rows[0]["seq"]) if rows else 0

    def group_state(self, key: str) -> tuple[GroupState, int]:
        """The whole known state of group ``key`` and the ``seq`` it reflects."""
        with self._read() as tx:
            return self._state(tx, key)

    @staticmethod
    def _state(tx: Tx, key: str) -> tuple[GroupState, int]:
        grouping = grouping_from_key(key)
        state = GroupState(job=grouping["job"], grouping=grouping, runs_total={})
        found = tx.rows(_GROUP, {"k": key})
        if not found:
            return state, 0
        g = found[0]
        state.last_heartbeat = g["last_heartbeat"]
        state.last_success, state.last_failure = g["last_success"], g["last_failure"]
        state.last_size, state.last_items = g["last_size"], g["last_items"]
        state.running = int(g["running"] or 0)
        state.runs_total = {str(r["outcome"]): int(r["n"]) for r in tx.rows(_COUNTS, {"k": key})}
        newest = tx.rows(_NEWEST_START, {"k": key})
        if newest:
            state.last_start = newest[0]["started"]
            state.expected_interval = newest[0]["expected_interval"]
            state.max_runtime = newest[0]["max_runtime"]
        last = tx.rows(_LAST_END, {"k": key})
        if last:
            run = last[0]
            state.last_end = run["ended"]
            state.last_duration = run["duration"]
            state.last_exit_code = run["exit_code"]
            state.last_outcome = run["outcome"]
            state.last_cpu_seconds = run["cpu_seconds"]
            state.last_max_rss_bytes = run["max_rss_bytes"]
            state.custom = load_custom(run["custom"])
        return state, int(g["seq"])

    def pending(self) -> list[PendingGroup]:
        """Every group whose newest state has not reached the gateway."""
        with self._read() as tx:
            out = []
            for g in tx.rows(_PENDING):
                n = tx.rows(_PENDING_RUNS, {"k": g["group_key"], "d": g["delivered_seq"]})
                out.append(PendingGroup(g["group_key"], g["job"],
                                        grouping_from_key(g["group_key"]), int(n[0]["n"])))
            return out

    def group_keys(self, job: str | None = None) -> list[str]:
        sql = "SELECT group_key FROM jobreport_groups"
        if job is not None:
            sql += " WHERE job = :job"
        with self._read() as tx:
            return [str(r["group_key"]) for r in tx.rows(sql + " ORDER BY group_key",
                                                         {"job": job})]

    def forget_group(self, key: str) -> None:
        """Mark a deleted group as delivered, so ``flush`` does not bring it back."""
        with self._write() as tx:
            tx.run(_FORGET, {"k": key})

    def history(
        self,
        job: str | None = None,
        *,
        limit: int | None = 20,
        since: float | None = None,
        outcomes: Sequence[str] = (),
    ) -> list[RunRecord]:
        """Runs, newest first."""
        where: list[str] = []
        params: dict[str, Any] = {}
        if job is not None:
            where.append("job = :job")
            params["job"] = job
        if since is not None:
            where.append("started >= :since")
            params["since"] = since
        if outcomes:
            names = [f"o{i}" for i in range(len(outcomes))]
            where.append(f"outcome IN ({', '.join(':' + n for n in names)})")
            params.update(zip(names, outcomes, strict=True))
        sql = "SELECT * FROM jobreport_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started DESC, id DESC"
        if limit is not None:
            sql += " LIMIT :limit"
            params["limit"] = int(limit)
        with self._read() as tx:
            return [_record(row) for row in tx.rows(sql, params)]

    def get_run(self, run_id: int | str) -> RunRecord | None:
        """One run, by its store id or by the ``$JOBREPORT_RUN_ID`` its process was given."""
        params: dict[str, Any]
        if isinstance(run_id, str) and not run_id.isdigit():
            sql, params = "SELECT * FROM jobreport_runs WHERE uid = :u", {"u": run_id}
        else:
            sql, params = "SELECT * FROM jobreport_runs WHERE id = :id", {"id": int(run_id)}
        with self._read() as tx:
            rows = tx.rows(sql, params)
            return _record(rows[0]) if rows else None

    def close(self) -> None:
        self._db.close()


def _record(row: Mapping[str, Any]) -> RunRecord:
    return RunRecord(
        id=row["id"], job=row["job"], grouping=grouping_from_key(row["group_key"]),
        host=row["host"], pid=row["pid"], started=row["started"], ended=row["ended"],
        duration=row["duration"], outcome=row["outcome"], exit_code=row["exit_code"],
        size=row["size"], items=row["items"], cpu_seconds=row["cpu_seconds"],
        max_rss_bytes=row["max_rss_bytes"], command=row["command"], tail=row["tail"],
        custom=load_custom(row["custom"]), uid=row["uid"],
    )
