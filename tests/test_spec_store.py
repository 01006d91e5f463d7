"""What a run is held to (its ``JobSpec``) is one record: made once at the start, kept in the
store as a column per stored field, and given to the group's state by one method
(``GroupState.held_to``), so that the state with a store and the state of a run alone (no
store) agree on every threshold and deadline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobreport.result import RunResult
from jobreport.runs.recorder import Run, _state_without_store
from jobreport.spec import STORED, JobSpec
from jobreport.state import GroupState
from jobreport.store import schema
from jobreport.store.store import RunStart, Store

SPECS = [
    JobSpec("p"),
    JobSpec("p", expect_every=90.0, grace=9.0, max_runtime=30.0, min_runtime=2.0,
            alert_after_failures=3),
    JobSpec("p", max_runtime=600.0, schedule="0 3 * * 1-5", timezone="Europe/Berlin",
            grace=120.0, min_runtime=5.0, alert_after_failures=1),
]


def _thresholds(state: GroupState) -> dict[str, object]:
    assert state.spec is not None
    return {"gauges": list(state.spec.gauges()), "start_deadline": state.start_deadline,
            "success_deadline": state.success_deadline}


def test_every_stored_field_has_a_store_column_of_its_name() -> None:
    """The store's per-run columns are the spec's stored fields, each of its type."""
    columns = {c.name: c for c in schema.runs.columns}
    for f in STORED:
        assert f.name in columns, f
        kind = type(columns[f.name].type).__name__
        assert kind == {"real": "Double", "int": "Integer", "cron": "String",
                        "zone": "String"}[f.column or ""], f


@pytest.mark.parametrize("spec", SPECS, ids=repr)
@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_the_store_keeps_the_spec_and_both_states_agree(spec: JobSpec, outcome: str,
                                                        tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.ensure_schema()
    grouping = {"job": "p", "instance": "h1"}
    now = time.time()
    result = RunResult(ended=now, duration=3.0, outcome=outcome,
                       exit_code=0 if outcome == "success" else 1)
    _run_id, with_store, _seq = store.record_run(
        RunStart("p", grouping, now - 3.0, "h1", spec=spec), result)
    run = Run(job="p", grouping=grouping, started=now - 3.0, monotonic_start=0.0, spec=spec)
    alone = _state_without_store(run, result)
    expected = _thresholds(with_store)
    if spec.schedule and outcome != "success":
        # alone, a failed run cannot know the last success its success deadline counts from
        assert alone.success_deadline is None
        expected["success_deadline"] = None
    assert _thresholds(alone) == expected
    assert with_store.spec == spec  # every stored field back as it went in
    if spec.schedule:
        assert with_store.start_deadline is not None and with_store.start_deadline > now
    [row] = store.history("p")
    assert row.spec == spec


# A store as jobreport wrote it before the spec (schema 4): a run held to an interval kept
# its sum (expected_interval), and jobreport_groups a NOT NULL delivered_seq.
_V4 = [
    "CREATE TABLE jobreport_counts ( group_key VARCHAR(2048) NOT NULL, outcome VARCHAR(32) "
    "NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (group_key, outcome) )",
    "CREATE TABLE jobreport_deliveries ( group_key VARCHAR(2048) NOT NULL, sink VARCHAR(255) "
    "NOT NULL, delivered_seq INTEGER NOT NULL, last_error TEXT, last_attempt DOUBLE, left_out "
    "TEXT, PRIMARY KEY (group_key, sink) )",
    "CREATE TABLE jobreport_groups ( group_key VARCHAR(2048) NOT NULL, job VARCHAR(1024) NOT "
    "NULL, seq INTEGER NOT NULL, delivered_seq INTEGER NOT NULL, last_heartbeat DOUBLE, "
    "last_success DOUBLE, last_failure DOUBLE, last_size DOUBLE, last_size_at DOUBLE, "
    "last_items DOUBLE, last_items_at DOUBLE, last_error TEXT, last_attempt DOUBLE, retired "
    "DOUBLE, pushed TEXT, PRIMARY KEY (group_key) )",
    'CREATE TABLE jobreport_meta ( "key" VARCHAR(64) NOT NULL, value TEXT, PRIMARY KEY ("key") )',
    "CREATE TABLE jobreport_runs ( id INTEGER NOT NULL, group_key VARCHAR(2048) NOT NULL, job "
    "VARCHAR(1024) NOT NULL, host VARCHAR(255) NOT NULL, pid INTEGER, pid_start DOUBLE, "
    "started DOUBLE NOT NULL, expected_interval DOUBLE, max_runtime DOUBLE, schedule "
    "VARCHAR(256), timezone VARCHAR(64), grace DOUBLE, min_runtime DOUBLE, "
    "alert_after_failures INTEGER, command TEXT, ended DOUBLE, duration DOUBLE, outcome TEXT, "
    "exit_code INTEGER, size DOUBLE, items DOUBLE, cpu_seconds DOUBLE, max_rss_bytes DOUBLE, "
    "tail TEXT, custom TEXT, closed_seq INTEGER, uid VARCHAR(32), pid_ns VARCHAR(64), "
    "child_pid INTEGER, child_pid_start DOUBLE, PRIMARY KEY (id) )",
    "INSERT INTO jobreport_meta VALUES ('schema_version', '4'), ('adopts', '1')",
    "INSERT INTO jobreport_groups (group_key, job, seq, delivered_seq, last_success) "
    """VALUES ('{"instance":"h1","job":"b"}', 'b', 1, 0, 100.0)""",
    "INSERT INTO jobreport_counts VALUES ('{\"instance\":\"h1\",\"job\":\"b\"}', 'success', 1)",
    "INSERT INTO jobreport_runs (group_key, job, host, started, expected_interval, "
    "max_runtime, min_runtime, alert_after_failures, ended, duration, outcome, exit_code, "
    """closed_seq) VALUES ('{"instance":"h1","job":"b"}', 'b', 'h1', 99.0, 3960.0, 600.0, """
    "5.0, 2, 100.0, 1.0, 'success', 0, 1)",
]


def test_a_schema_4_store_keeps_what_its_runs_were_held_to(tmp_path: Path) -> None:
    """Migrated, a run held to an interval pushes the same interval (its sum reads back as
    expect_every with no grace) and the same thresholds; the store keeps working, also for
    a group it has never seen (its groups table has the old NOT NULL column)."""
    import sqlite3

    from jobreport.exposition import families
    from jobreport.state import group_key
    from jobreport.store.migrations import SCHEMA_VERSION

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for statement in _V4:
            conn.execute(statement)
    store = Store(f"sqlite:///{path}")
    assert store.schema_version() == SCHEMA_VERSION
    state, _ = store.group_state(group_key({"job": "b", "instance": "h1"}))
    assert state.spec == JobSpec("b", expect_every=3960.0, grace=0.0, max_runtime=600.0,
                                 min_runtime=5.0, alert_after_failures=2)
    gauges = {f.name: f.samples[0][2] for f in families(state)}
    assert gauges["jobreport_expected_interval_seconds"] == 3960.0
    assert gauges["jobreport_alert_after_failures"] == 2.0
    now = time.time()
    _, fresh, _ = store.record_run(
        RunStart("new", {"job": "new", "instance": "h1"}, now - 1, "h1",
                 spec=JobSpec("new", expect_every=60.0)),
        RunResult(ended=now, duration=1.0, outcome="success", exit_code=0))
    assert fresh.spec is not None and fresh.spec.expected_interval == 66.0
    with sqlite3.connect(path) as conn:
        [(delivered,)] = conn.execute("SELECT delivered_seq FROM jobreport_groups "
                                      "WHERE job = 'new'").fetchall()
    assert delivered == 0


def test_a_new_store_has_no_unused_group_columns(tmp_path: Path) -> None:
    """delivered_seq, last_error and last_attempt of jobreport_groups went per sink (into
    jobreport_deliveries) in schema 2: a new store does not create them."""
    import sqlite3

    path = tmp_path / "new.db"
    Store(f"sqlite:///{path}").ensure_schema()
    with sqlite3.connect(path) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(jobreport_groups)")}
    assert not columns & {"delivered_seq", "last_error", "last_attempt"}
    assert {"group_key", "job", "seq"} <= columns
