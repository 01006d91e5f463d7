"""The local store: concurrency, history, abandoned runs, and degrading when it is broken."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from jobreport import job_metrics
from jobreport.errors import StoreError
from jobreport.result import RunResult
from jobreport.state import group_key
from jobreport.store.store import RunStart, Store
from tests.conftest import Gateway

WRITER = textwrap.dedent(
    """
    import sys
    from jobreport import job_metrics
    job, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        with job_metrics(job) as j:
            j.add_items(i)
    """
)


@pytest.mark.integration  # long child processes
def test_twenty_processes_write_one_sqlite_file(tmp_path: Path) -> None:
    """20 processes recording runs at once: nothing lost, never 'database is locked'."""
    db = tmp_path / "store.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBREPORT_")}
    env.update(JOBREPORT_DB=f"sqlite:///{db}", JOBREPORT_INSTANCE="h")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, f"job{i % 4}", "5"],
            env=env, stderr=subprocess.PIPE, text=True,
        )
        for i in range(20)
    ]
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        errors.append(err)
    assert not any("locked" in e for e in errors), errors
    assert not any("store unavailable" in e for e in errors), errors
    store = Store(f"sqlite:///{db}")
    runs = store.history(limit=None)
    assert len(runs) == 100
    assert all(r.outcome == "success" for r in runs)
    for i in range(4):
        state, _ = store.group_state(group_key({"job": f"job{i}", "instance": "h"}))
        assert state.runs_total == {"success": 25}
        assert state.running == 0


OPENER = textwrap.dedent(
    """
    import sys, time
    from jobreport.result import RunResult
    from jobreport.spec import JobSpec
    from jobreport.store.store import RunStart, Store
    url, at, job = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    while time.time() < at:  # every process opens the new store at the same moment
        pass
    store = Store(url)
    store.ensure_schema()
    store.record_run(RunStart(job=job, grouping={"job": job}, started=time.time(), host="h",
                              pid=None, spec=JobSpec(job)),
                     RunResult(ended=time.time(), duration=0.0, outcome="success",
                               exit_code=0))
    """
)


@pytest.mark.integration  # child processes
def test_processes_that_open_a_new_sqlite_store_at_once_all_record(tmp_path: Path) -> None:
    """The first runs of a new store started together (a crontab's jobs at 03:00, a
    `--lock` run and the one it skips): SQLite answers "database is locked" at once, not
    after its busy timeout, to a connection that turns the file to WAL while another does.
    Each process must open the store and record its run all the same (a lost skipped run
    was how it showed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBREPORT_")}
    for trial in range(6):  # the race is won or lost in microseconds: several tries
        url = f"sqlite:///{tmp_path / f'new{trial}.db'}"
        at = time.time() + 1.0
        procs = [subprocess.Popen([sys.executable, "-c", OPENER, url, str(at), f"j{i}"],
                                  env=env, stderr=subprocess.PIPE, text=True)
                 for i in range(6)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        assert len(Store(url).history(limit=None)) == 6


def test_store_is_owner_only(tmp_path: Path) -> None:
    """The default store's directory and file are created owner-only."""
    store = Store(f"sqlite:///{tmp_path / 'state' / 'jobreport' / 'jobreport.db'}")
    store.ensure_schema()
    assert stat.S_IMODE((tmp_path / "state" / "jobreport").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "state" / "jobreport" / "jobreport.db").stat().st_mode) \
        == 0o600


def test_default_store_under_xdg_state_home(isolated_env: Path, gateway: Gateway,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing configured the store is $XDG_STATE_HOME/jobreport/jobreport.db."""
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    with job_metrics("defaults"):
        pass
    db = isolated_env / "jobreport" / "jobreport.db"
    assert db.is_file()
    assert Store(f"sqlite:///{db}").history("defaults")[0].outcome == "success"


def test_abandoned_run_closed_at_next_run(tmp_path: Path) -> None:
    """A run left open by a process that is gone is closed as abandoned at the next run."""
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    grouping = {"job": "j", "instance": "h"}
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.open_run(RunStart("j", grouping, time.time() - 50, "h", pid=dead.pid,
                            pid_start=time.time() - 50))
    alive_checked = []

    def alive(pid: int, started: float | None) -> bool:
        alive_checked.append(pid)
        return False

    run_id = store.open_run(RunStart("j", grouping, time.time(), "h", pid=os.getpid()),
                            alive=alive)
    store.close_run(run_id, RunResult(time.time(), 0.1, "success", 0))
    state, _ = store.group_state(group_key(grouping))
    assert alive_checked == [dead.pid]
    assert state.runs_total == {"abandoned": 1, "success": 1}
    assert state.running == 0


def test_reused_pid_is_not_the_same_process(tmp_path: Path, gateway: Gateway,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose pid now belongs to another process (other start time) is abandoned."""
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 's.db'}")
    monkeypatch.setenv("JOBREPORT_INSTANCE", "h")
    import socket

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    # our own pid, but recorded with a start time long before this process began
    store.open_run(RunStart("re", {"job": "re", "instance": "h"}, time.time() - 3600,
                            socket.gethostname(), pid=os.getpid(), pid_start=1000.0))
    with job_metrics("re"):
        pass
    s = gateway.samples("re")
    assert s['jobreport_runs_total{outcome="abandoned"}'] == 1
    assert s['jobreport_runs_total{outcome="success"}'] == 1
    assert s["jobreport_running"] == 0


def test_corrupt_store_degrades_to_push_without_history(
    tmp_path: Path, gateway: Gateway, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A corrupt store file: the run is still pushed, with a one-line warning."""
    db = tmp_path / "corrupt.db"
    db.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{db}")
    with job_metrics("resilient") as job:
        job.set_size(5)
    assert job.outcome == "success"
    s = gateway.samples("resilient")
    assert s["jobreport_last_run_success"] == 1
    assert s["jobreport_last_size_bytes"] == 5
    assert "jobreport_runs_total" not in str(s)  # no history: the counter is left alone
    assert any("store unavailable" in r.getMessage() for r in caplog.records)


def test_store_failure_keeps_last_success_in_gateway(
    tmp_path: Path, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without history a failed run does not erase the gateway's last success (POST)."""
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 'good.db'}")
    with job_metrics("keep"):
        pass
    success = gateway.samples("keep")["jobreport_last_success_timestamp_seconds"]
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 100)
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{bad}")
    with pytest.raises(ValueError), job_metrics("keep"):
        raise ValueError
    s = gateway.samples("keep")
    assert s["jobreport_last_success_timestamp_seconds"] == success
    assert s["jobreport_last_run_success"] == 0


def test_unwritable_store_directory(tmp_path: Path, gateway: Gateway,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A store path that cannot be created degrades the same way."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{blocker / 'sub' / 's.db'}")
    with job_metrics("nostore") as job:
        pass
    assert job.outcome == "success"
    assert gateway.samples("nostore")["jobreport_last_run_success"] == 1


def test_bad_url_is_a_store_error() -> None:
    """A URL SQLAlchemy cannot parse raises StoreError with a hint."""
    with pytest.raises(StoreError, match="SQLAlchemy URL"):
        Store("not a url://")


def test_history_filters(tmp_path: Path) -> None:
    """history() returns newest first, filtered by job, time and outcome."""
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    now = time.time()
    for i, outcome in enumerate(["success", "failure", "success", "timeout"]):
        store.record_run(
            RunStart("h", {"job": "h"}, now - 100 + i, "host"),
            RunResult(now - 99 + i, 1.0, outcome, 0 if outcome == "success" else 1,
                   tail="line\n" * 3),
        )
    store.record_run(RunStart("other", {"job": "other"}, now, "host"),
                     RunResult(now, 1.0, "success", 0))
    runs = store.history("h")
    assert [r.outcome for r in runs] == ["timeout", "success", "failure", "success"]
    assert [r.outcome for r in store.history("h", outcomes=["success"])] == ["success"] * 2
    assert len(store.history("h", since=now - 98.5)) == 2
    assert len(store.history(limit=2)) == 2
    assert store.get_run(runs[0].id) == runs[0]
    assert store.get_run(10**9) is None
    assert runs[0].to_json()["tail"] == "line\n" * 3


def test_tail_is_bounded(tmp_path: Path) -> None:
    """Output tails kept in the store are bounded in size."""
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    rid, _, _ = store.record_run(RunStart("t", {"job": "t"}, time.time(), "h"),
                           RunResult(time.time(), 1, "success", 0, tail="x" * 1_000_000))
    run = store.get_run(rid)
    assert run is not None and run.result is not None and run.result.tail is not None
    assert len(run.result.tail.encode()) <= 64 * 1024


def test_existing_sqlite_store_needs_no_sqlalchemy(tmp_path: Path) -> None:
    """Recording into an existing SQLite store does not load SQLAlchemy (a cron job pays
    for every import, every run); creating the store does."""
    db = tmp_path / "s.db"
    Store(f"sqlite:///{db}").ensure_schema()
    code = textwrap.dedent(
        f"""
        import sys, time
        from jobreport.store.store import Store, RunStart
        from jobreport.result import RunResult
        s = Store("sqlite:///{db}")
        s.record_run(RunStart("j", {{"job": "j"}}, time.time(), "h"),
                     RunResult(time.time(), 1.0, "success", 0))
        assert len(s.history("j")) == 1
        print("sqlalchemy" in sys.modules)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_sqlalchemy_backend_for_other_sqlite_drivers(tmp_path: Path) -> None:
    """A URL that names a driver goes through SQLAlchemy and behaves the same."""
    store = Store(f"sqlite+pysqlite:///{tmp_path / 'a.db'}?timeout=20")
    rid, state, seq = store.record_run(RunStart("j", {"job": "j"}, time.time(), "h"),
                                       RunResult(time.time(), 1.0, "failure", 3, size=9))
    assert state.runs_total == {"failure": 1} and state.last is not None and state.last.size == 9 and seq == 1
    assert store.get_run(rid) is not None
    assert type(store._db).__name__ == "SQLAlchemyBackend"


def test_forked_children_open_their_own_connection(tmp_path: Path, gateway: Gateway,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """job_metrics in processes forked after the parent used the store (multiprocessing):
    every run is recorded, none is lost to a connection shared across the fork."""
    import multiprocessing

    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 'fork.db'}")
    monkeypatch.setenv("JOBREPORT_INSTANCE", "h")
    with job_metrics("forked"):
        pass
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_one_run, args=("forked",)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with job_metrics("forked"):
        pass
    assert gateway.samples("forked")['jobreport_runs_total{outcome="success"}'] == 6


def _one_run(job: str) -> None:
    with job_metrics(job):
        pass


def test_a_child_forked_while_a_parent_thread_holds_the_shared_lock_still_reports(
        tmp_path: Path, gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork while another thread of the parent holds the process's shared lock (opening a
    store or sinks for its own run): the child's lock is a new one, so its run is
    recorded instead of waiting for a thread that does not exist in it."""
    import multiprocessing
    import threading

    from jobreport.runs import SHARED

    monkeypatch.setenv("JOBREPORT_GATEWAY", gateway.url)
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 'fork.db'}")
    monkeypatch.setenv("JOBREPORT_INSTANCE", "h")
    with job_metrics("held"):
        pass
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with SHARED._lock:
            holding.set()
            release.wait(60)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert holding.wait(30)
    try:
        child = multiprocessing.get_context("fork").Process(target=_one_run, args=("held",))
        child.start()
        child.join(30)
        alive = child.is_alive()
        if alive:
            child.kill()
            child.join(10)
    finally:
        release.set()
        holder.join(30)
    assert not alive, "the child waited for a lock no thread of it holds"
    assert child.exitcode == 0
    assert gateway.samples("held")['jobreport_runs_total{outcome="success"}'] == 2


def test_a_forked_child_does_not_use_the_parents_sqlite_connection(tmp_path: Path) -> None:
    """SQLite connections must not cross a fork: the child opens its own."""
    import multiprocessing

    store = Store(f"sqlite:///{tmp_path / 'f.db'}")
    store.history()
    parent_conn = store._db._conn  # type: ignore[attr-defined]
    assert parent_conn is not None
    ctx = multiprocessing.get_context("fork")
    shared = ctx.Queue()
    child = ctx.Process(target=_child_uses_store, args=(store, parent_conn, shared))
    child.start()
    child.join(60)
    assert shared.get(timeout=10) == (True, 0)
    assert store.history() == []  # the parent's connection still works


def _child_uses_store(store: Store, parent_conn: object, shared: object) -> None:
    runs = store.history()
    shared.put((store._db._conn is not parent_conn, len(runs)))  # type: ignore[attr-defined]
