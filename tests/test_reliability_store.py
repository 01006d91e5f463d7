"""The store under stress and in trouble, with the library: many processes writing one
SQLite file at once; a store that is corrupt, read-only, on a full disk, or on a path that
cannot exist. The job's outcome always stands and the gateway always gets the run.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobreport import job_metrics, load_config
from jobreport.store.store import Store
from tests.conftest import Gateway
from tests.faults import assert_no_traceback

MOUNT = shutil.which("mount") or "/bin/mount"
UMOUNT = shutil.which("umount") or "/bin/umount"
N_SAME = 50
N_DIFFERENT = 50


def _concurrent_child(go: Any, results: Any, url: str, db: str, job: str) -> None:
    warnings: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            warnings.append(record.getMessage())

    logging.getLogger("jobreport").addHandler(Keep(logging.WARNING))
    config = load_config(env={}, gateway=url, db=db, instance="h1", budget="30s",
                         timeout="10s")
    go.wait(60)
    try:
        with job_metrics(job, config=config) as handle:
            handle.add_items(1)
        results.put((job, handle.outcome, warnings))
    except BaseException as e:  # pragma: no cover - reported by the assertion below
        results.put((job, repr(e), warnings))


def test_100_processes_at_once_on_one_sqlite_store(gateway: Gateway, tmp_path: Path) -> None:
    """50 runs of one job and 50 of different jobs, each its own process, released at once:
    no run lost, no store warning, and the gateway ends with every group's newest state."""
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    Store(db).ensure_schema()
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    results = ctx.Queue()
    jobs = ["same"] * N_SAME + [f"other{i:02d}" for i in range(N_DIFFERENT)]
    procs = [ctx.Process(target=_concurrent_child, args=(go, results, gateway.url, db, job))
             for job in jobs]
    for p in procs:
        p.start()
    go.set()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    assert sorted(job for job, _, _ in got) == sorted(jobs)
    assert {outcome for _, outcome, _ in got} == {"success"}
    assert [w for _, _, ws in got for w in ws] == []  # no "database is locked", no degrade

    store = Store(db)
    history = store.history(limit=None)
    assert len(history) == N_SAME + N_DIFFERENT
    assert all(r.outcome == "success" and r.ended is not None for r in history)
    assert store.pending() == []
    same = gateway.samples("same", instance="h1")
    assert same['jobreport_runs_total{outcome="success"}'] == N_SAME
    assert same["jobreport_running"] == 0
    assert len(gateway.groups()) == 1 + N_DIFFERENT
    for i in range(N_DIFFERENT):
        s = gateway.samples(f"other{i:02d}", instance="h1")
        assert s['jobreport_runs_total{outcome="success"}'] == 1
        assert s["jobreport_running"] == 0


def _env(gateway: Gateway, db: str) -> dict[str, str]:
    return {"JOBREPORT_GATEWAY": gateway.url, "JOBREPORT_DB": db,
            "JOBREPORT_INSTANCE": "h1", "JOBREPORT_BUDGET": "10s"}


def test_corrupt_store_degrades_to_push_without_history(
        gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A store file that is not a database: one warning, the job runs, the gateway gets the
    run, and the file is left as it was (nothing overwritten)."""
    path = tmp_path / "corrupt.db"
    garbage = b"this is not an SQLite database\n" * 200
    path.write_bytes(garbage)
    config = load_config(env=_env(gateway, f"sqlite:///{path}"))
    ran = []
    with caplog.at_level(logging.WARNING, logger="jobreport"):
        with job_metrics("backup", config=config) as job:
            ran.append(True)
            job.set_size(99)
        with pytest.raises(KeyError), job_metrics("backup", config=config):
            raise KeyError("x")
    assert ran == [True]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("store" in w and "pushing without history" in w for w in warnings), warnings
    assert_no_traceback(caplog.text)
    assert path.read_bytes() == garbage
    s = gateway.samples("backup", instance="h1")
    assert s["jobreport_last_run_success"] == 0
    assert s["jobreport_last_exit_code"] == 1
    assert s["jobreport_last_size_bytes"] == 99  # from the first run: POST keeps it
    assert s["jobreport_last_success_timestamp_seconds"] <= s[
        "jobreport_last_failure_timestamp_seconds"]


def test_store_under_a_regular_file(
        gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A store path that cannot exist (its parent is a file): the job runs and is pushed."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    config = load_config(env=_env(gateway, f"sqlite:///{blocker / 'sub' / 'store.db'}"))
    with caplog.at_level(logging.WARNING, logger="jobreport"), \
            job_metrics("backup", config=config) as job:
        pass
    assert job.outcome == "success"
    assert "pushing without history" in caplog.text
    assert_no_traceback(caplog.text)
    assert gateway.samples("backup")["jobreport_last_run_success"] == 1


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[bool]:
    """Mount a tiny tmpfs at ``path`` when we may (root); yields whether it is mounted."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([MOUNT, "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(path)], capture_output=True, timeout=30, check=False)
    try:
        yield proc.returncode == 0
    finally:
        if proc.returncode == 0:
            subprocess.run([UMOUNT, "-l", str(path)], capture_output=True, timeout=30,
                           check=False)


# A run in its own process, so that whatever the store's trouble does (even a crash) is
# seen from outside, as cron would see it.
_RUN = textwrap.dedent("""
    import logging, sys
    logging.basicConfig(format="%(message)s")
    from jobreport import job_metrics
    with job_metrics("backup") as job:
        print("body ran", flush=True)
        job.set_size(int(sys.argv[1]))
    sys.exit(0 if job.outcome == "success" else 9)
""")


def run_job(env: dict[str, str], size: int, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", _RUN, str(size)], env=full, check=False,
                          capture_output=True, text=True, timeout=120, **kwargs)


def test_read_only_store(gateway: Gateway, tmp_path: Path) -> None:
    """A store that became read-only (a read-only file system, or SQLite's read-only mode
    where mounting is not allowed): the job runs and reaches the gateway; history resumes
    when the store is writable again."""
    mnt = tmp_path / "ro"
    with tmpfs(mnt, "8m") as mounted:
        db_path = mnt / "store.db"
        db = f"sqlite:///{db_path}"
        first = run_job(_env(gateway, db), 1)
        assert first.returncode == 0, first.stderr
        if mounted:
            remount = subprocess.run([MOUNT, "-o", "remount,ro", str(mnt)], check=False,
                                     capture_output=True, text=True, timeout=30)
            assert remount.returncode == 0, remount.stderr
            ro_db = db
        else:
            ro_db = f"sqlite:///file:{db_path}?mode=ro&uri=true"
        second = run_job(_env(gateway, ro_db), 2)
        assert second.returncode == 0, second.stderr
        assert "body ran" in second.stdout
        assert "pushing without history" in second.stderr
        assert_no_traceback(second.stderr)
        s = gateway.samples("backup", instance="h1")
        assert s["jobreport_last_size_bytes"] == 2
        assert s["jobreport_last_run_success"] == 1
        assert s['jobreport_runs_total{outcome="success"}'] == 1  # the counter it had
        if mounted:
            subprocess.run([MOUNT, "-o", "remount,rw", str(mnt)], check=True, timeout=30)
        third = run_job(_env(gateway, db), 3)
        assert third.returncode == 0, third.stderr
        assert "pushing without history" not in third.stderr
        assert [r.result and r.result.size for r in Store(db).history("backup")] == [3, 1]


def test_store_on_a_full_disk(gateway: Gateway, tmp_path: Path) -> None:
    """The store's file system is full (a tiny tmpfs filled up; where mounting is not
    allowed, a file-size limit makes writes fail the same way): the job runs and is pushed;
    once there is room again the store records runs as before."""
    mnt = tmp_path / "full"
    with tmpfs(mnt, "1m") as mounted:
        db = f"sqlite:///{mnt / 'store.db'}"
        env = _env(gateway, db)
        assert run_job(env, 1).returncode == 0
        limit: dict[str, Any] = {}
        filler = mnt / "filler"
        if mounted:
            with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as f:
                for _ in range(4096):
                    f.write(b"\0" * 4096)
            assert os.statvfs(mnt).f_bavail == 0
        else:
            def limit_file_size() -> None:
                import resource
                import signal

                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file may grow

            limit["preexec_fn"] = limit_file_size
        full = run_job(env, 2, **limit)
        assert full.returncode == 0, full.stderr
        assert "body ran" in full.stdout
        assert "pushing without history" in full.stderr  # the store really failed
        assert_no_traceback(full.stderr)
        s = gateway.samples("backup", instance="h1")
        assert s["jobreport_last_size_bytes"] == 2
        assert s["jobreport_last_run_success"] == 1
        if mounted:
            filler.unlink()
        again = run_job(env, 3)
        assert again.returncode == 0, again.stderr
        assert "pushing without history" not in again.stderr
        sizes = [r.result and r.result.size for r in Store(db).history("backup")]
        assert sizes[0] == 3 and sizes[-1] == 1
