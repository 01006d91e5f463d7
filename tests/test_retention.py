"""A bounded store: each group keeps its newest keep_runs runs and those of the last
keep_days days, output tails of its newest 100; a run trims its own group, the rest is swept
at most hourly by one process; never the newest runs, an open one or an undelivered one;
trimming never changes what a push carries; nothing of it reaches the job."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from jobreport import job_metrics, load_config
from jobreport.errors import ConfigError, StoreError
from jobreport.exposition import text
from jobreport.result import RunResult
from jobreport.spec import JobSpec
from jobreport.state import group_key
from jobreport.store import retention as retention_module
from jobreport.store.retention import Retention
from jobreport.store.store import RunStart, Store
from tests.conftest import Gateway

DAY = 86400.0
SINK = "pushgateway"


def far() -> float:
    """A deadline no test reaches."""
    return time.monotonic() + 60


def record(store: Store, job: str, outcome: str = "success", *, started: float | None = None,
           size: float | None = None, tail: str | None = "out") -> int:
    started = time.time() - 1 if started is None else started
    run_id, _, _ = store.record_run(
        RunStart(job, {"job": job}, started, "h", spec=JobSpec(job, min_size=10.0)),
        RunResult(ended=started + 1, duration=1.0, outcome=outcome,
                  exit_code=0 if outcome == "success" else 1, size=size, tail=tail))
    return run_id


def delivered(store: Store, job: str, sink: str = SINK) -> None:
    key = group_key({"job": job})
    store.mark_delivered(key, store.group_state(key)[1], sink=sink)


def ids(store: Store, job: str) -> list[int]:
    return sorted(r.id for r in store.history(job, limit=None))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'store.db'}")


def test_a_group_keeps_its_newest_runs_and_a_push_stays_the_same(store: Store) -> None:
    """Beyond keep_runs the oldest runs go; the push body (counters, last success and
    failure, failure streak, typical size and duration, thresholds) is the same byte for
    byte before and after, also when the last success itself is trimmed."""
    for i in range(12):
        record(store, "b", size=100.0 + i)
    for _ in range(8):
        record(store, "b", "failure", size=1.0)
    delivered(store, "b")
    key = group_key({"job": "b"})
    before = text(store.group_state(key)[0])
    assert b"jobreport_consecutive_failures 8.0" in before
    assert b"jobreport_typical_size_bytes 106.5" in before
    newest = ids(store, "b")[-5:]
    assert store.trim(key, Retention(keep_days=0, keep_runs=5), sinks=[SINK],
                      deadline=far())
    assert ids(store, "b") == newest
    assert text(store.group_state(key)[0]) == before
    assert b'jobreport_runs_total{outcome="success"} 12.0' in before


def test_old_runs_go_after_keep_days(store: Store) -> None:
    """Runs that started more than keep_days ago go, the newest run stays however old."""
    now = time.time()
    old = [record(store, "a", started=now - 500 * DAY + i) for i in range(3)]
    young = record(store, "a", started=now - 10 * DAY)
    delivered(store, "a")
    store.trim(group_key({"job": "a"}), Retention(keep_days=400, keep_runs=0), sinks=[SINK],
               deadline=far())
    assert ids(store, "a") == [young]
    lone = [record(store, "lone", started=now - 900 * DAY)]
    store.trim(group_key({"job": "lone"}), Retention(keep_days=1, keep_runs=1), sinks=[],
               deadline=far())
    assert ids(store, "lone") == lone and old


def test_open_undelivered_and_newest_runs_are_kept(store: Store) -> None:
    """An open run, a run whose end a configured sink has not been given, the newest run
    and the newest that ended are never removed; a sink no longer configured holds nothing
    back; without any sink nothing waits for a delivery."""
    key = group_key({"job": "p"})
    open_id = store.open_run(RunStart("p", {"job": "p"}, time.time() - 5, "other-host"))
    first = [record(store, "p") for _ in range(4)]
    delivered(store, "p", "pushgateway")
    later = [record(store, "p") for _ in range(3)]  # not delivered to the gateway
    delivered(store, "p", "textfile")
    keep_one = Retention(keep_days=0, keep_runs=1)
    store.trim(key, keep_one, sinks=["pushgateway", "textfile"], deadline=far())
    assert ids(store, "p") == [open_id, *later]
    store.trim(key, keep_one, sinks=["textfile"], deadline=far())  # the gateway is gone
    assert ids(store, "p") == [open_id, later[-1]]
    assert first
    skipped = record(store, "p", "skipped")
    store.trim(key, keep_one, sinks=[], deadline=far())
    # the newest run (skipped) and the newest one that the push is made of stay
    assert ids(store, "p") == [open_id, later[-1], skipped]


def test_output_tails_of_the_newest_hundred_only(store: Store) -> None:
    """The tail of runs beyond the newest 100 of a group is emptied; the runs stay."""
    for i in range(130):
        record(store, "t", tail=f"line {i}")
    store.trim(group_key({"job": "t"}), Retention(keep_days=0, keep_runs=0), sinks=[],
               deadline=far())
    runs = store.history("t", limit=None)
    assert len(runs) == 130
    kept = [r for r in runs if r.result is not None and r.result.tail]
    assert len(kept) == 100 and kept[-1].result is not None
    assert kept[-1].result.tail == "line 30"


def test_batches_and_the_deadline_bound_the_work(store: Store,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Each transaction removes one batch; a deadline already past does nothing; a later
    trim goes on where the last one stopped."""
    for _ in range(25):
        record(store, "big")
    key = group_key({"job": "big"})
    monkeypatch.setattr(retention_module, "BATCH", 4)
    assert not store.trim(key, Retention(0, 5), deadline=time.monotonic() - 1)
    assert len(ids(store, "big")) == 25
    statements: list[str] = []
    original = retention_module.trim_batch

    def counted(*args: object, **kwargs: object) -> int:
        statements.append("batch")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(retention_module, "trim_batch", counted)
    assert store.trim(key, Retention(0, 5), deadline=far())
    assert len(ids(store, "big")) == 5
    assert len(statements) == 6  # 20 runs in batches of 4 (and the tails), then one empty


def test_the_sweep_runs_once_an_hour_in_one_process(tmp_path: Path) -> None:
    """The sweep trims every group; a second one within the hour, by this or another
    process's store, does nothing; one cut short by its deadline is due again at once and
    goes on from where it stopped."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    one, two = Store(url), Store(url)
    for job in ("a", "b", "c"):
        for _ in range(6):
            record(one, job)
    keep = Retention(keep_days=0, keep_runs=2)
    assert one.sweep(keep, deadline=time.monotonic()) is False  # claimed, cut at once
    assert len(ids(one, "a")) == 6
    assert two.sweep(keep, deadline=far()) is True  # due again: goes on
    assert [len(ids(one, j)) for j in "abc"] == [2, 2, 2]
    for _ in range(4):
        record(one, "a")
    assert one.sweep(keep, deadline=far()) is None
    assert two.sweep(keep, deadline=far()) is None
    assert len(ids(one, "a")) == 6


def test_concurrent_sweeps_claim_once(tmp_path: Path) -> None:
    """Of several processes (stores) asking at once, one sweeps."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    record(Store(url), "x")
    results: list[bool | None] = []
    barrier = threading.Barrier(4)

    def ask() -> None:
        store = Store(url)
        barrier.wait(10)
        results.append(store.sweep(Retention(), deadline=far()))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results, key=str) == [None, None, None, True]


def test_a_busy_store_costs_the_trim_at_most_its_deadline(store: Store) -> None:
    """Another process holding the write lock: the trim gives up at its deadline."""
    for _ in range(3):
        record(store, "busy")
    holder = sqlite3.connect(store.url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        began = time.monotonic()
        with pytest.raises(StoreError):
            store.trim(group_key({"job": "busy"}), Retention(0, 1), deadline=began + 0.3)
        assert time.monotonic() - began < 2.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.trim(group_key({"job": "busy"}), Retention(0, 1), deadline=far())
    assert len(ids(store, "busy")) == 1


def test_each_run_trims_its_own_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With JOBREPORT_KEEP_RUNS, job_metrics' runs keep their group at that size (no sink:
    nothing waits for a delivery)."""
    monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("JOBREPORT_KEEP_RUNS", "3")
    for i in range(10):
        with job_metrics("kept") as job:
            job.set_size(i)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    assert len(store.history("kept", limit=None)) == 3
    state, _ = store.group_state(group_key({"job": "kept", "instance": load_config().instance
                                            or ""}))
    assert state.runs_total is not None and state.runs_total["success"] == 10


def test_retention_settings_and_their_ranges(tmp_path: Path) -> None:
    """keep_days and keep_runs from the environment or the config file, 0 for no limit; a
    value out of range is an error naming the range (a warning for `run`)."""
    config = load_config(env={"JOBREPORT_KEEP_DAYS": "30", "JOBREPORT_KEEP_RUNS": "0"})
    assert (config.keep_days, config.keep_runs) == (30, 0)
    assert (load_config(env={}).keep_days, load_config(env={}).keep_runs) == (400, 10000)
    path = tmp_path / "jobreport.toml"
    path.write_text("keep_runs = 1000\nkeep_days = 90\n")
    config = load_config(env={}, config_file=str(path))
    assert (config.keep_days, config.keep_runs) == (90, 1000)
    for env, said in (({"JOBREPORT_KEEP_DAYS": "36501"}, "0 to 36500"),
                      ({"JOBREPORT_KEEP_RUNS": "-1"}, "not a whole number"),
                      ({"JOBREPORT_KEEP_RUNS": "1e4"}, "not a whole number")):
        with pytest.raises(ConfigError, match=said):
            load_config(env=env)
        assert load_config(env=env, strict=False).keep_runs in (0, 10000)


def test_check_shows_the_size_and_the_retention(tmp_path: Path) -> None:
    """`jobreport check` shows the store's size (SQLite: with its WAL) and the limits in
    effect with their sources."""
    from jobreport.commands.check import run_checks

    url = f"sqlite:///{tmp_path / 'store.db'}"
    record(Store(url), "x")
    config = load_config(env={"JOBREPORT_DB": url, "JOBREPORT_KEEP_RUNS": "50"})
    report = {c.name: c.detail for c in run_checks(config).checks if c.section == "store"}
    on_disk = sum(p.stat().st_size for p in tmp_path.glob("store.db*"))
    assert f"({on_disk} bytes)" in report["size"]
    assert "its newest 50 runs [env JOBREPORT_KEEP_RUNS]" in report["retention"]
    assert "runs of the last 400 days [default]" in report["retention"]


def test_on_postgresql(postgres_url: str) -> None:  # noqa: F811
    """The same trim, sweep and size on a real PostgreSQL store (its partial index of the
    runs with a tail, its lock timeout for a write that must not wait)."""
    store = Store(postgres_url)
    job = f"pg-retention-{time.time_ns()}"
    for i in range(30):
        record(store, job, size=float(i), tail=f"line {i}")
    delivered(store, job)
    key = group_key({"job": job})
    before = text(store.group_state(key)[0])
    newest = ids(store, job)[-7:]
    assert store.trim(key, Retention(keep_days=0, keep_runs=7, keep_tails=3), sinks=[SINK],
                      deadline=far())
    assert ids(store, job) == newest
    assert text(store.group_state(key)[0]) == before
    assert sum(1 for r in store.history(job, limit=None) if r.result and r.result.tail) == 3
    assert store.sweep(Retention(), deadline=far()) in (True, None)
    size = store.size()
    assert size is not None and size > 100_000


def test_a_store_filled_past_its_retention(tmp_path: Path, gateway: Gateway) -> None:
    """A store holding 11,000 runs of a job (500 of them older than 400 days) and 1,000
    old runs of a job that no longer runs: one `jobreport run` of the first job trims its
    group to its newest 10,000 and sweeps the other down to its newest run; the counters it
    pushes still count every run; `jobreport check` shows the limits."""
    db = tmp_path / "full.db"
    now = time.time()
    fill(db, "busy", [now - 600 * DAY + i for i in range(500)]
         + [now - 3000 * 60 + i * 0.1 for i in range(10_500)])
    fill(db, "gone", [now - 900 * DAY + i for i in range(1000)])
    env = {**os.environ, "JOBREPORT_DB": f"sqlite:///{db}", "JOBREPORT_GATEWAY": gateway.url,
           "JOBREPORT_INSTANCE": "h"}
    out = subprocess.run([sys.executable, "-m", "jobreport", "run", "--job", "busy", "--",
                          "true"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    store = Store(f"sqlite:///{db}")
    busy = store.history("busy", limit=None)
    assert len(busy) == 10_000 and min(r.started for r in busy) > now - 400 * DAY
    assert len(store.history("gone", limit=None)) == 1
    s = gateway.samples("busy")
    assert s['jobreport_runs_total{outcome="success"}'] == 11_001
    check = subprocess.run([sys.executable, "-m", "jobreport", "check"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert "its newest 10000 runs [default]" in check.stdout, check.stdout


def fill(db: Path, job: str, starts: list[float]) -> None:
    """Successful runs of ``job`` (group job + instance h) started at ``starts``, counted
    and delivered as the store would have them, bulk-inserted."""
    Store(f"sqlite:///{db}").ensure_schema()
    key = group_key({"job": job, "instance": "h"})
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO jobreport_runs (group_key, job, host, started, ended, duration, outcome,"
        " exit_code, closed_seq, tail) VALUES (?, ?, 'h', ?, ?, 1.0, 'success', 0, ?, 'out')",
        [(key, job, t, t + 1, i + 1) for i, t in enumerate(starts)])
    conn.execute("INSERT INTO jobreport_groups (group_key, job, seq, last_success, "
                 "failure_streak) VALUES (?, ?, ?, ?, 0)", (key, job, len(starts),
                                                            max(starts) + 1))
    conn.execute("INSERT INTO jobreport_counts VALUES (?, 'success', ?)", (key, len(starts)))
    conn.execute("INSERT INTO jobreport_deliveries (group_key, sink, delivered_seq) "
                 "VALUES (?, 'pushgateway', ?)", (key, len(starts)))
    conn.execute("COMMIT")
    conn.close()


def test_a_run_counts_its_group_against_keep_runs_every_thousandth_of_it(
        tmp_path: Path) -> None:
    """After a run, a group of 5,003 runs under keep_runs 5000 is counted on every 5th run
    it recorded (5,003 is not one: nothing goes); the sweep's trim is exact."""
    db = tmp_path / "store.db"
    now = time.time()
    fill(db, "many", [now - 60 * i for i in range(5003)][::-1])
    store = Store(f"sqlite:///{db}")
    key = group_key({"job": "many", "instance": "h"})
    keep = Retention(keep_days=0, keep_runs=5000)
    assert store.trim(key, keep, deadline=far(), exact=False)
    assert len(ids(store, "many")) == 5003
    for _ in range(2):  # 5,005 recorded: due
        store.record_run(RunStart("many", {"job": "many", "instance": "h"}, now, "h"),
                         RunResult(ended=now + 1, duration=1.0, outcome="success",
                                   exit_code=0))
    assert store.trim(key, keep, deadline=far(), exact=False)
    assert len(store.history("many", limit=None)) == 5000
    store.record_run(RunStart("many", {"job": "many", "instance": "h"}, now, "h"),
                     RunResult(ended=now + 1, duration=1.0, outcome="success", exit_code=0))
    assert store.trim(key, keep, deadline=far())  # exact
    assert len(store.history("many", limit=None)) == 5000
