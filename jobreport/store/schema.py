"""The store's tables, defined once with SQLAlchemy (used to create them on any database).

Loaded only when a store is created or opened through SQLAlchemy: reading and writing an
existing SQLite store goes through ``sqlite3`` with the same SQL (see ``jobreport.store.backends``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Double, Index, Integer, MetaData, String, Table, Text

from jobreport.result import RESULT_FIELDS
from jobreport.spec import STORED

__all__ = ["counts", "deliveries", "groups", "meta", "metadata", "runs"]

# Any change to these tables goes with a new jobreport.store.SCHEMA_VERSION.

metadata = MetaData()

#: Store column types of RunResult's fields (``result.Figure.column``).
_RESULT_TYPES: dict[str, Any] = {"real": Double, "int": Integer, "text": Text, "tail": Text,
                                 "families": Text}
#: Store column types of a spec's stored fields (spec.Field.column).
_SPEC_TYPES: dict[str, Any] = {"real": Double, "int": Integer, "cron": String(256),
                               "zone": String(64)}

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
    # what the run is held to: one column per stored field of its JobSpec (jobreport.spec;
    # the schedule columns came with schema 3, expect_every with 5, when it replaced
    # expected_interval; the deadlines derive from them and the group's history)
    *(Column(f.name, _SPEC_TYPES[f.column]) for f in STORED if f.column is not None),
    Column("command", Text),
    # what the run reported at its end: one column per field of RunResult
    *(Column(f.name, _RESULT_TYPES[f.column]) for f in RESULT_FIELDS),
    # the group's seq when the run ended: the newest run is the one closed last
    Column("closed_seq", Integer),
    # the run's id as its process knows it from the start ($JOBREPORT_RUN_ID), before the
    # store has given it a row id
    Column("uid", String(32)),
    # schema 4 (wrapper): the run lives while its wrapper (pid) or its command (child_pid)
    # does, and only a jobreport of the same PID namespace may judge that
    Column("pid_ns", String(64)),
    Column("child_pid", Integer),
    Column("child_pid_start", Double),
)
Index("ix_jobreport_runs_uid", runs.c.uid)
Index("ix_jobreport_runs_group_started", runs.c.group_key, runs.c.started)
Index("ix_jobreport_runs_group_ended", runs.c.group_key, runs.c.ended)
Index("ix_jobreport_runs_group_closed", runs.c.group_key, runs.c.closed_seq)
Index("ix_jobreport_runs_job_started", runs.c.job, runs.c.started)
Index("ix_jobreport_runs_started", runs.c.started)
# schema 6: a group's newest runs, and those beyond what it keeps (jobreport.store.retention);
# and the runs that still hold an output tail (partial where the database has them)
Index("ix_jobreport_runs_group_id", runs.c.group_key, runs.c.id)
Index("ix_jobreport_runs_group_tail", runs.c.group_key, runs.c.id,
      sqlite_where=runs.c.tail.isnot(None), postgresql_where=runs.c.tail.isnot(None))
# schema 8: `history --outcome timeout` reads the runs of that outcome (of that job), newest
# first, from these indexes (the row id orders the entries of each key), not the whole table
Index("ix_jobreport_runs_outcome", runs.c.outcome)
Index("ix_jobreport_runs_job_outcome", runs.c.job, runs.c.outcome)

groups = Table(
    "jobreport_groups",
    metadata,
    Column("group_key", String(2048), primary_key=True),
    Column("job", String(1024), nullable=False),
    Column("seq", Integer, nullable=False, default=0),
    # (stores made before schema 5 also have delivered_seq, last_error and last_attempt
    # here: per sink since schema 2, in jobreport_deliveries)
    Column("last_heartbeat", Double),
    # kept up to date in the transaction that closes a run, so that reading a group's state
    # never scans its history: each only ever moves forward
    Column("last_success", Double),
    Column("last_failure", Double),
    Column("last_size", Double),
    Column("last_size_at", Double),
    Column("last_items", Double),
    Column("last_items_at", Double),
    # schema 6: unsuccessful runs since the last success, and the sizes and durations of
    # the last successful runs (JSON lists, oldest first, at most TYPICAL_RUNS): kept with
    # the group, so that neither a push nor the retention that trims old runs depends on
    # how much history the runs table still holds
    Column("failure_streak", Integer),
    Column("recent_sizes", Text),
    Column("recent_durations", Text),
    # set by `jobreport delete`: no flush brings the group back; a new run clears it
    Column("retired", Double),
    # families `jobreport push` gave the group, kept as JSON until it is deleted
    Column("pushed", Text),
)
Index("ix_jobreport_groups_job", groups.c.job)

deliveries = Table(
    "jobreport_deliveries",
    metadata,
    Column("group_key", String(2048), primary_key=True),
    # Sink.name: each sink has its own delivered-up-to mark
    Column("sink", String(255), primary_key=True),
    Column("delivered_seq", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("last_attempt", Double),
    # custom families the sink refused in its last delivery (JSON list of names)
    Column("left_out", Text),
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
