"""The store on a real PostgreSQL server (a throwaway cluster started by the test)."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from jobreport import flush, job_metrics, load_config
from jobreport.state import group_key
from jobreport.store.store import Store
from tests.conftest import Gateway


def test_job_metrics_with_a_postgresql_store(
    postgres_url: str, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs, counters, history and flush work the same on PostgreSQL."""
    monkeypatch.setenv("JOBREPORT_DB", postgres_url)
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    monkeypatch.setenv("JOBREPORT_INSTANCE", "pg-host")
    with job_metrics("pgjob", labels={"path": "/srv/a b"}) as job:
        job.set_size(10)
    with pytest.raises(RuntimeError), job_metrics("pgjob", labels={"path": "/srv/a b"}):
        raise RuntimeError
    s = gateway.samples("pgjob", path="/srv/a b")
    assert s['jobreport_runs_total{outcome="success"}'] == 1
    assert s['jobreport_runs_total{outcome="failure"}'] == 1
    assert s["jobreport_last_size_bytes"] == 10
    assert s["jobreport_last_success_timestamp_seconds"] < s[
        "jobreport_last_failure_timestamp_seconds"]
    store = Store(postgres_url)
    assert [r.outcome for r in store.history("pgjob")] == ["failure", "success"]
    assert store.pending() == []
    assert flush(load_config()).groups == 0


def test_concurrent_writers_on_postgresql(postgres_url: str) -> None:
    """Several processes closing runs of one group at once lose no count."""
    import sys

    code = (
        "from jobreport import job_metrics\n"
        "for _ in range(5):\n"
        "    with job_metrics('pgpar'): pass\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBREPORT_")}
    env.update(JOBREPORT_DB=postgres_url, JOBREPORT_INSTANCE="h")
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE,
                              text=True) for _ in range(8)]
    deadline = time.monotonic() + 120
    for p in procs:
        _, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
        assert p.returncode == 0, err
        assert "store unavailable" not in err, err
    state, _ = Store(postgres_url).group_state(group_key({"job": "pgpar", "instance": "h"}))
    assert state.runs_total == {"success": 40}
    assert state.running == 0


def test_a_schema_1_postgresql_store_is_migrated(postgres_url: str) -> None:
    """A PostgreSQL store written by the previous jobreport is migrated in place (columns
    found through information_schema, added with ALTER TABLE): history and pending kept."""
    from sqlalchemy import create_engine, text

    from tests.test_delivery import _V1

    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE jobreport_v1"))
    admin.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/jobreport_v1"
    old = create_engine(url)
    with old.begin() as conn:
        for statement in _V1:  # the SQLite DDL of schema 1, in PostgreSQL's words
            statement = re.sub(r"\bDOUBLE\b", "DOUBLE PRECISION", statement)
            conn.execute(text(statement.replace("id INTEGER NOT NULL", "id SERIAL NOT NULL")))
    old.dispose()
    store = Store(url)
    assert store.schema_version() >= 2
    assert [p.job for p in store.pending()] == ["b"]
    [run] = store.history("b")
    assert run.outcome == "success" and run.ended == 100.0
    store.mark_delivered(group_key({"job": "b", "instance": "h1"}), 2)
    assert store.pending() == []
    from jobreport.result import RunResult
    from jobreport.store.store import RunStart

    _, state, _ = store.record_run(RunStart("b", {"job": "b", "instance": "h1"}, 200.0, "h1"),
                                   RunResult(ended=201.0, duration=1.0, outcome="failure",
                                             exit_code=1, cpu_seconds=0.5,
                                             error="ValueError: é" + "x" * 297))
    assert state.runs_total == {"success": 1, "failure": 1}
    assert state.last is not None and state.last.cpu_seconds == 0.5
    # the error column (schema 6) came with the migration, and holds a whole bounded error
    assert store.history("b")[0].result.error == "ValueError: é" + "x" * 297  # type: ignore[union-attr]
