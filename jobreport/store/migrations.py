"""Bring a store to the current schema: create a new one, or migrate an older one in place.

Every table is defined once (``jobreport.store.schema``); a migration creates the tables an
older store lacks and adds the columns its tables lack (all of them nullable), then runs the
data steps of each version it passes. An up-to-date store is only read (no write lock), so
that a hundred jobs starting at once do not queue behind each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobreport.errors import StoreError
from jobreport.store import sql
from jobreport.store.backends import Backend, Tx, one_at_a_time

__all__ = ["SCHEMA_VERSION", "ensure_schema"]

#: Bump with every change to the tables (jobreport.store.schema) and add its data step to
#: ``_STEPS``; a store newer than this jobreport is refused.
SCHEMA_VERSION = 8


def _to_v2(tx: Tx) -> None:
    # delivered marks became per sink; the Pushgateway was the only one
    insert, conflict = tx.insert_missing
    for row in tx.rows("SELECT group_key, delivered_seq, last_error, last_attempt "
                       "FROM jobreport_groups"):
        params = {"k": row["group_key"], "sink": "pushgateway", "base": 0}
        tx.run(sql.NEW_DELIVERY.format(insert=insert, conflict=conflict), params)
        tx.run("UPDATE jobreport_deliveries SET delivered_seq = :s, last_error = :e, "
               "last_attempt = :a WHERE group_key = :k AND sink = :sink",
               {**params, "s": row["delivered_seq"], "e": row["last_error"],
                "a": row["last_attempt"]})


def _to_v3(tx: Tx) -> None:
    # the schedule columns of jobreport_runs (added above, all nullable): nothing to fill in
    pass


def _to_v4(tx: Tx) -> None:
    # runs.pid_ns, child_pid and child_pid_start (added as missing columns): older runs keep
    # NULL there, and are judged by their wrapper's pid alone, as before
    pass


def _to_v5(tx: Tx) -> None:
    # a run keeps its spec as one column per stored field (jobreport.spec): expect_every and
    # grace as given, where expected_interval held their sum. The sum reads back as
    # expect_every with no grace, which pushes the same jobreport_expected_interval_seconds
    tx.run("UPDATE jobreport_runs SET expect_every = expected_interval, grace = 0 "
           "WHERE expected_interval IS NOT NULL AND schedule IS NULL")
    # new stores have no jobreport_groups.delivered_seq (unused since 2); this one has it,
    # NOT NULL without a default: its new groups fill it (sql.NEW_GROUP_V4)
    tx.run("INSERT INTO jobreport_meta (key, value) VALUES ('groups_delivered_seq', '1')")


def _to_v6(tx: Tx) -> None:
    # a group keeps its failure streak and the sizes and durations of its last successful
    # runs (what a push carries no longer depends on the runs the retention leaves): fill
    # them in from the history, once
    import json

    from jobreport.store.groups import TYPICAL_RUNS

    for g in tx.rows("SELECT group_key FROM jobreport_groups"):
        key = {"k": g["group_key"], "n": TYPICAL_RUNS}
        streak = tx.rows(sql.CONSECUTIVE_FAILURES, key)[0]["n"]
        durations = [r["duration"] for r in tx.rows(sql.RECENT_SUCCESSES, key)
                     if r["duration"] is not None][::-1]
        sizes = [r["size"] for r in tx.rows(sql.RECENT_SIZES, key)][::-1]
        tx.run("UPDATE jobreport_groups SET failure_streak = :f, recent_sizes = :s, "
               "recent_durations = :d WHERE group_key = :k",
               {"k": g["group_key"], "f": int(streak or 0),
                "s": json.dumps(sizes) if sizes else None,
                "d": json.dumps(durations) if durations else None})


def _to_v7(tx: Tx) -> None:
    # runs.error (added as a missing column): the error that failed a Python block; older
    # runs have none recorded
    pass


def _to_v8(tx: Tx) -> None:
    # the indexes of the runs by outcome (schema.py), made with the other missing ones by
    # create_tables before the steps run: nothing to fill in
    pass


#: The data step that brings a store of version N-1 to version N.
_STEPS: dict[int, Callable[[Tx], None]] = {2: _to_v2, 3: _to_v3, 4: _to_v4, 5: _to_v5,
                                           6: _to_v6, 7: _to_v7, 8: _to_v8}


def ensure_schema(db: Backend) -> tuple[bool, dict[str, str]]:
    """Create the tables of a new store, or migrate an older one; refuse a newer one.
    Returns whether this call created the store, and the store's own keys (``sql.META``)."""
    meta = _meta(db)
    version = int(meta["schema_version"]) if meta is not None else None
    if version == SCHEMA_VERSION:
        return False, meta or {}
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"the store {db.display_url} has schema {version}, newer than this "
            f"jobreport ({SCHEMA_VERSION}); upgrade jobreport"
        )
    db.create_tables()  # only the missing ones
    with db.write() as tx:
        # one process at a time (a new shared store: its first row is not there to lock)
        one_at_a_time(tx)
        # lock the version row first: of two processes migrating at once, one does it
        tx.run("UPDATE jobreport_meta SET value = value WHERE key = 'schema_version'")
        rows = tx.rows(sql.VERSION)
        if not rows:
            tx.run("INSERT INTO jobreport_meta (key, value) VALUES ('schema_version', :v)",
                   {"v": str(SCHEMA_VERSION)})
            # every process using this new store (not only this one) adopts what a sink
            # holds for a group before its first push of the group (Store.adopt)
            tx.run("INSERT INTO jobreport_meta (key, value) VALUES ('adopts', '1')")
            created = True
        else:
            current = int(rows[0]["value"])
            if current < SCHEMA_VERSION:
                _add_missing_columns(tx, db.is_sqlite)
                for step in range(current + 1, SCHEMA_VERSION + 1):
                    _STEPS[step](tx)
                tx.run("UPDATE jobreport_meta SET value = :v WHERE key = 'schema_version'",
                       {"v": str(SCHEMA_VERSION)})
            created = False
        found = {str(r["key"]): str(r["value"]) for r in tx.rows(sql.META)}
    return created, found


def _meta(db: Backend) -> dict[str, str] | None:
    """The store's own keys, None when it has none yet (a new store)."""
    try:
        with db.read() as tx:
            rows = tx.rows(sql.META)
    except StoreError as e:
        if "no such table" in str(e) or "does not exist" in str(e) or (
                "doesn't exist" in str(e)):
            return None
        raise
    found = {str(r["key"]): str(r["value"]) for r in rows}
    return found if "schema_version" in found else None


def _add_missing_columns(tx: Tx, is_sqlite: bool) -> None:
    from jobreport.store.schema import metadata

    for table in metadata.sorted_tables:
        if is_sqlite:
            have = {str(r["name"]) for r in tx.rows(f"PRAGMA table_info({table.name})")}
        else:
            have = {str(r["column_name"]) for r in tx.rows(
                "SELECT column_name FROM information_schema.columns WHERE table_name = :t",
                {"t": table.name})}
        for column in table.columns:
            if column.name not in have:
                tx.run(f"ALTER TABLE {table.name} ADD COLUMN {column.name} "
                       f"{_ddl_type(column.type)}")


def _ddl_type(kind: Any) -> str:
    """A column type both SQLite and PostgreSQL (and MySQL) accept."""
    name = type(kind).__name__
    if name == "String":
        return f"VARCHAR({kind.length})"
    return {"Double": "DOUBLE PRECISION", "Integer": "INTEGER"}.get(name, "TEXT")
