"""The local store (SQLAlchemy): every run, and per group whether its newest state reached
the gateway.

SQLite by default, under the XDG state directory with owner-only permissions, in WAL mode
with a busy timeout and short ``BEGIN IMMEDIATE`` transactions, so that many cron jobs can
write one file at once. Any SQLAlchemy URL works (PostgreSQL for a fleet-wide history).

Every change to a group (a run opened, closed or abandoned; a heartbeat) bumps the group's
``seq``; a push records the ``seq`` it carried as ``delivered_seq``. A group is pending while
``seq > delivered_seq``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Double,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateIndex, CreateTable

from jobreport.errors import StoreError
from jobreport.outcomes import ABANDONED, SKIPPED, SUCCESS
from jobreport.state import (
    CustomFamily,
    GroupState,
    RunRecord,
    dump_custom,
    group_key,
    grouping_from_key,
    load_custom,
)

__all__ = ["PendingGroup", "RunEnd", "RunStart", "Store"]

SCHEMA_VERSION = 1
TAIL_MAX_BYTES = 64 * 1024
BUSY_TIMEOUT = 15.0

metadata = MetaData()

runs = Table(
    "jobreport_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("group_key", String(2048), nullable=False),
    Column("job", String(1024), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer),
    Column("pid_start", Double),
    Column("started", Double, nullable=False),
    Column("ended", Double),
    Column("duration", Double),
    Column("outcome", String(32)),
    Column("exit_code", Integer),
    Column("size", Double),
    Column("items", Double),
    Column("cpu_seconds", Double),
    Column("max_rss_bytes", Double),
    Column("expected_interval", Double),
    Column("max_runtime", Double),
    Column("command", Text),
    Column("tail", Text),
    Column("custom", Text),
    Column("closed_seq", Integer),
)
Index("ix_jobreport_runs_group_started", runs.c.group_key, runs.c.started)
Index("ix_jobreport_runs_group_outcome_ended", runs.c.group_key, runs.c.outcome, runs.c.ended)
Index("ix_jobreport_runs_group_ended", runs.c.group_key, runs.c.ended)
Index("ix_jobreport_runs_job_started", runs.c.job, runs.c.started)
Index("ix_jobreport_runs_started", runs.c.started)

groups = Table(
    "jobreport_groups",
    metadata,
    Column("group_key", String(2048), primary_key=True),
    Column("job", String(1024), nullable=False),
    Column("seq", Integer, nullable=False, default=0),
    Column("delivered_seq", Integer, nullable=False, default=0),
    Column("last_heartbeat", Double),
    # kept up to date in the transaction that closes a run, so that reading a group's state
    # never scans its history: each only ever moves forward
    Column("last_success", Double),
    Column("last_failure", Double),
    Column("last_size", Double),
    Column("last_size_at", Double),
    Column("last_items", Double),
    Column("last_items_at", Double),
    Column("last_error", Text),
    Column("last_attempt", Double),
)

counts = Table(
    "jobreport_counts",
    metadata,
    Column("group_key", String(2048), primary_key=True),
    Column("outcome", String(32), primary_key=True),
    Column("n", Integer, nullable=False),
)

meta = Table(
    "jobreport_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text),
)


# Statements built once: a warm process (job_metrics in a loop) pays only for executing them.
_K: Any = bindparam("k")
_NOT_SKIPPED = runs.c.outcome.is_(None) | (runs.c.outcome != SKIPPED)
_BUMP = update(groups).where(groups.c.group_key == _K).values(seq=groups.c.seq + 1)
_BUMP_RETURNING = _BUMP.returning(groups.c.seq)
_SEQ = select(groups.c.seq).where(groups.c.group_key == _K)
_COUNT = (update(counts).where(counts.c.group_key == _K, counts.c.outcome == bindparam("o"))
          .values(n=counts.c.n + 1))
_COUNTS = select(counts.c.outcome, counts.c.n).where(counts.c.group_key == _K)
_SUMMARY = select(groups.c.last_success, groups.c.last_failure, groups.c.last_size_at,
                  groups.c.last_items_at).where(groups.c.group_key == _K)
_RUNNING = (select(func.count()).where(runs.c.group_key == _K, runs.c.ended.is_(None))
            .scalar_subquery())
_GROUP = select(groups, _RUNNING.label("running")).where(groups.c.group_key == _K)
_NEWEST_START = (select(runs.c.started, runs.c.outcome, runs.c.expected_interval,
                        runs.c.max_runtime)
                 .where(runs.c.group_key == _K, _NOT_SKIPPED)
                 .order_by(runs.c.started.desc(), runs.c.id.desc()).limit(1))
_LAST_END = (select(runs).where(runs.c.group_key == _K, _NOT_SKIPPED, runs.c.ended.is_not(None))
             .order_by(runs.c.ended.desc(), runs.c.id.desc()).limit(1))
_RUN_GROUP = select(runs.c.group_key, runs.c.job, runs.c.ended).where(
    runs.c.id == bindparam("id"))
_OPEN_ON_HOST = select(runs.c.id, runs.c.pid, runs.c.pid_start, runs.c.started).where(
    runs.c.group_key == _K, runs.c.ended.is_(None), runs.c.host == bindparam("host"))
_DELIVERED = update(groups).where(
    groups.c.group_key == _K, groups.c.delivered_seq < bindparam("s"),
).values(delivered_seq=bindparam("s"), last_error=None, last_attempt=bindparam("now"))


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
    """The run history and delivery state, behind one SQLAlchemy engine."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StoreError(
                f"{url!r} is not an SQLAlchemy URL (e.g. sqlite:////var/lib/jobreport.db)"
            ) from None
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self._schema_ready = False
        try:
            if self.is_sqlite:
                self.engine = self._sqlite_engine(parsed.database)
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError) as e:
            raise StoreError(f"cannot open the store {self.display_url}: {_reason(e)}") from None

    @property
    def display_url(self) -> str:
        """The URL with any password masked."""
        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except ArgumentError:
            return "<invalid URL>"

    def _sqlite_engine(self, database: str | None) -> Engine:
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database)
            _private_dir(path.parent)
            if not path.exists():
                fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
        engine = create_engine(
            self.url,
            connect_args={"timeout": BUSY_TIMEOUT, "isolation_level": None},
            poolclass=NullPool if database in (None, "", ":memory:") else None,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("jobreport_begin", "IMMEDIATE")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine

    # --- transactions -------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self.ensure_schema()
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise StoreError(f"cannot write the store {self.display_url}: {_reason(e)}") from None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self.ensure_schema()
        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(jobreport_begin="DEFERRED")
                with conn.begin():
                    yield conn
        except SQLAlchemyError as e:
            raise StoreError(f"cannot read the store {self.display_url}: {_reason(e)}") from None

    def ensure_schema(self) -> None:
        """Create the tables on first use (safe when many processes do it at once)."""
        if self._schema_ready:
            return
        try:
            with self.engine.begin() as conn:
                for table in metadata.sorted_tables:
                    conn.execute(CreateTable(table, if_not_exists=True))
                    for index in table.indexes:
                        conn.execute(CreateIndex(index, if_not_exists=True))
                version = conn.execute(
                    select(meta.c.value).where(meta.c.key == "schema_version")
                ).scalar()
                if version is None:
                    conn.execute(meta.insert().values(key="schema_version",
                                                      value=str(SCHEMA_VERSION)))
                elif int(version) > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store {self.display_url} has schema {version}, newer than this "
                        f"jobreport ({SCHEMA_VERSION}); upgrade jobreport"
                    )
        except SQLAlchemyError as e:
            raise StoreError(f"cannot open the store {self.display_url}: {_reason(e)}") from None
        self._schema_ready = True

    def schema_version(self) -> int:
        with self._read() as conn:
            return int(conn.execute(
                select(meta.c.value).where(meta.c.key == "schema_version")).scalar() or 0)

    # --- writing ------------------------------------------------------------------------

    @staticmethod
    def _bump(conn: Connection, key: str, job: str) -> int:
        """Increment the group's seq (creating the group) and return the new value.

        The UPDATE comes first so that, on PostgreSQL, the group's row stays locked until
        the transaction ends: changes to one group are serialized."""
        if conn.dialect.update_returning:
            seq = conn.execute(_BUMP_RETURNING, {"k": key}).scalar()
            if seq is not None:
                return int(seq)
        elif conn.execute(_BUMP, {"k": key}).rowcount:
            return int(conn.execute(_SEQ, {"k": key}).scalar_one())
        conn.execute(groups.insert().values(group_key=key, job=job, seq=1, delivered_seq=0))
        return 1

    @staticmethod
    def _count_end(conn: Connection, key: str, end: Mapping[str, Any]) -> None:
        """Fold a closed run into its group's counters and forward-only summaries."""
        outcome = end["outcome"]
        if conn.execute(_COUNT, {"k": key, "o": outcome}).rowcount == 0:
            conn.execute(counts.insert().values(group_key=key, outcome=outcome, n=1))
        if outcome == SKIPPED:
            return
        ended = end["ended"]
        values: dict[str, Any] = {}
        row = conn.execute(_SUMMARY, {"k": key}).one()
        column = "last_success" if outcome == SUCCESS else "last_failure"
        if row._mapping[column] is None or row._mapping[column] < ended:
            values[column] = ended
        for name in ("size", "items"):
            at = row._mapping[f"last_{name}_at"]
            if end.get(name) is not None and (at is None or at <= ended):
                values[f"last_{name}"] = end[name]
                values[f"last_{name}_at"] = ended
        if values:
            conn.execute(update(groups).where(groups.c.group_key == key).values(**values))

    def open_run(self, start: RunStart, *, alive: Any = None) -> int:
        """Record a run as started; close runs of its group that were left open on this host
        by processes that are gone (``abandoned``). ``alive(pid, pid_start) -> bool`` decides
        whether a process still runs. Returns the run's id."""
        key = group_key(start.grouping)
        with self._write() as conn:
            self._close_abandoned(conn, key, start, alive)
            self._bump(conn, key, start.job)
            return _new_id(conn.execute(runs.insert().values(
                group_key=key, **self._start_values(start))))

    def _close_abandoned(self, conn: Connection, key: str, start: RunStart, alive: Any) -> None:
        if alive is None:
            return
        rows = conn.execute(_OPEN_ON_HOST, {"k": key, "host": start.host}).all()
        now = time.time()
        for run_id, pid, pid_start, started in rows:
            if pid is not None and alive(pid, pid_start):
                continue
            seq = self._bump(conn, key, start.job)
            end = {"ended": now, "duration": max(0.0, now - started), "outcome": ABANDONED}
            conn.execute(update(runs).where(runs.c.id == run_id).values(closed_seq=seq, **end))
            self._count_end(conn, key, end)

    def close_run(self, run_id: int, end: RunEnd) -> tuple[GroupState, int]:
        """Record how a run that ``open_run`` started ended; return its group's new state
        and the ``seq`` that state reflects (read in the same transaction)."""
        with self._write() as conn:
            row = conn.execute(_RUN_GROUP, {"id": run_id}).first()
            if row is None:
                raise StoreError(f"run {run_id} is not in the store {self.display_url}")
            key, job, already = row
            values = self._end_values(end)
            if already is None:  # not closed meanwhile (as abandoned, by another process)
                seq = self._bump(conn, key, job)
                conn.execute(update(runs).where(runs.c.id == run_id)
                             .values(closed_seq=seq, **values))
                self._count_end(conn, key, values)
            return self._state(conn, key)

    def record_run(self, start: RunStart, end: RunEnd, *,
                   alive: Any = None) -> tuple[int, GroupState, int]:
        """Record a whole run at once (a skipped run, or one too short to be opened first),
        closing abandoned runs as ``open_run`` does; return its id, its group's new state and
        the ``seq`` of that state."""
        key = group_key(start.grouping)
        values = self._end_values(end)
        with self._write() as conn:
            self._close_abandoned(conn, key, start, alive)
            seq = self._bump(conn, key, start.job)
            run_id = _new_id(conn.execute(runs.insert().values(
                group_key=key, closed_seq=seq, **self._start_values(start), **values)))
            self._count_end(conn, key, values)
            state, seq = self._state(conn, key)
            return run_id, state, seq

    @staticmethod
    def _start_values(start: RunStart) -> dict[str, Any]:
        return {
            "job": start.job, "host": start.host, "pid": start.pid,
            "pid_start": start.pid_start, "started": start.started,
            "expected_interval": start.expected_interval, "max_runtime": start.max_runtime,
            "command": start.command,
        }

    @staticmethod
    def _end_values(end: RunEnd) -> dict[str, Any]:
        return {
            "ended": end.ended, "duration": end.duration, "outcome": end.outcome,
            "exit_code": end.exit_code, "size": end.size, "items": end.items,
            "cpu_seconds": end.cpu_seconds, "max_rss_bytes": end.max_rss_bytes,
            "tail": _bound_tail(end.tail), "custom": dump_custom(end.custom),
        }

    def set_heartbeat(self, grouping: Mapping[str, str], when: float) -> int:
        key = group_key(grouping)
        with self._write() as conn:
            seq = self._bump(conn, key, grouping["job"])
            conn.execute(update(groups).where(groups.c.group_key == key)
                         .values(last_heartbeat=when))
            return seq

    def mark_delivered(self, key: str, seq: int) -> int:
        """The push that carried state ``seq`` of group ``key`` was accepted. Returns the
        group's current seq: larger means it changed during the push."""
        with self._write() as conn:
            conn.execute(_DELIVERED, {"k": key, "s": seq, "now": time.time()})
            return int(conn.execute(_SEQ, {"k": key}).scalar() or 0)

    def mark_failed(self, key: str, error: str) -> None:
        with self._write() as conn:
            conn.execute(update(groups).where(groups.c.group_key == key)
                         .values(last_error=error[:2000], last_attempt=time.time()))

    # --- reading ------------------------------------------------------------------------

    def seq(self, key: str) -> int:
        with self._read() as conn:
            return int(conn.execute(_SEQ, {"k": key}).scalar() or 0)

    def group_state(self, key: str) -> tuple[GroupState, int]:
        """The whole known state of group ``key`` and the ``seq`` it reflects."""
        with self._read() as conn:
            return self._state(conn, key)

    @staticmethod
    def _state(conn: Connection, key: str) -> tuple[GroupState, int]:
        grouping = grouping_from_key(key)
        state = GroupState(job=grouping["job"], grouping=grouping, runs_total={})
        g = conn.execute(_GROUP, {"k": key}).first()
        if g is None:
            return state, 0
        state.last_heartbeat = g.last_heartbeat
        state.last_success, state.last_failure = g.last_success, g.last_failure
        state.last_size, state.last_items = g.last_size, g.last_items
        state.running = int(g.running or 0)
        state.runs_total = {str(o): int(n) for o, n in conn.execute(_COUNTS, {"k": key})}
        newest = conn.execute(_NEWEST_START, {"k": key}).first()
        if newest is not None:
            if newest.outcome != SKIPPED:
                state.last_start = newest.started
            state.expected_interval, state.max_runtime = newest[2], newest[3]
        last = conn.execute(_LAST_END, {"k": key}).first()
        if last is not None:
            state.last_end = last.ended
            state.last_duration = last.duration
            state.last_exit_code = last.exit_code
            state.last_outcome = last.outcome
            state.last_cpu_seconds = last.cpu_seconds
            state.last_max_rss_bytes = last.max_rss_bytes
            state.custom = load_custom(last.custom)
        return state, int(g.seq)

    def pending(self) -> list[PendingGroup]:
        """Every group whose newest state has not reached the gateway."""
        with self._read() as conn:
            rows = conn.execute(
                select(groups.c.group_key, groups.c.job, groups.c.delivered_seq)
                .where(groups.c.seq > groups.c.delivered_seq).order_by(groups.c.group_key)
            ).all()
            out = []
            for key, job, delivered in rows:
                n = conn.execute(select(func.count()).where(
                    runs.c.group_key == key, runs.c.closed_seq > delivered)).scalar()
                out.append(PendingGroup(key, job, grouping_from_key(key), int(n or 0)))
            return out

    def group_keys(self, job: str | None = None) -> list[str]:
        with self._read() as conn:
            q = select(groups.c.group_key).order_by(groups.c.group_key)
            if job is not None:
                q = q.where(groups.c.job == job)
            return [str(k) for k in conn.execute(q).scalars()]

    def forget_group(self, key: str) -> None:
        """Mark a deleted group as delivered, so ``flush`` does not bring it back."""
        with self._write() as conn:
            conn.execute(update(groups).where(groups.c.group_key == key)
                         .values(delivered_seq=groups.c.seq))

    def history(
        self,
        job: str | None = None,
        *,
        limit: int | None = 20,
        since: float | None = None,
        outcomes: Sequence[str] = (),
    ) -> list[RunRecord]:
        """Runs, newest first."""
        q = select(runs).order_by(runs.c.started.desc(), runs.c.id.desc())
        if job is not None:
            q = q.where(runs.c.job == job)
        if since is not None:
            q = q.where(runs.c.started >= since)
        if outcomes:
            q = q.where(runs.c.outcome.in_(list(outcomes)))
        if limit is not None:
            q = q.limit(limit)
        with self._read() as conn:
            return [_record(row) for row in conn.execute(q)]

    def get_run(self, run_id: int) -> RunRecord | None:
        with self._read() as conn:
            row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
            return _record(row) if row is not None else None

    def close(self) -> None:
        self.engine.dispose()


def _new_id(result: Any) -> int:
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every supported database returns it
        raise StoreError("the database did not return the new run's id")
    return int(key[0])


def _record(row: Any) -> RunRecord:
    return RunRecord(
        id=row.id, job=row.job, grouping=grouping_from_key(row.group_key), host=row.host,
        pid=row.pid, started=row.started, ended=row.ended, duration=row.duration,
        outcome=row.outcome, exit_code=row.exit_code, size=row.size, items=row._mapping["items"],
        cpu_seconds=row.cpu_seconds, max_rss_bytes=row.max_rss_bytes, command=row.command,
        tail=row.tail, custom=load_custom(row.custom),
    )


def _private_dir(path: Path) -> None:
    """Create ``path`` (and parents) owner-only; tighten it if we just made it."""
    if path.is_dir():
        return
    try:
        path.mkdir(parents=True, mode=0o700)
    except FileExistsError:
        return
    except OSError as e:
        raise StoreError(f"cannot create the store directory {path}: {e.strerror}") from None
    os.chmod(path, 0o700)


def _reason(exc: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's boilerplate."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
