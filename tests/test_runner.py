"""jobreport.wrapper.wrapper: the wrapper core with a fake reporter injected (real child processes)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from jobreport import load_config, outcomes
from jobreport.cli.entry import command_job
from jobreport.result import RunResult
from jobreport.spec import JobSpec
from jobreport.wrapper.lock import JobLock, LockBusy, lock_path
from jobreport.wrapper.size import path_size
from jobreport.wrapper.wrapper import EXIT_SKIPPED, run_job


class FakeRun:
    def __init__(self, spec: JobSpec, kwargs: dict[str, Any]) -> None:
        self.job = spec.job
        self.spec = spec
        self.kwargs = kwargs


class FakeReporter:
    """Records what the runner asks of a reporter; can be told to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.started: list[FakeRun] = []
        self.finished: list[dict[str, Any]] = []
        self.skipped: list[tuple[str, dict[str, Any]]] = []
        self.heartbeats = 0
        self.lock = threading.Lock()

    def start(self, spec: JobSpec, **kwargs: Any) -> FakeRun:
        if self.fail:
            raise RuntimeError("store on fire")
        run = FakeRun(spec, kwargs)
        self.started.append(run)
        return run

    def heartbeat(self, run: FakeRun) -> None:
        with self.lock:
            self.heartbeats += 1

    def finish(self, run: FakeRun, result: RunResult) -> bool:
        if self.fail:
            raise RuntimeError("gateway on fire")
        self.finished.append(result._asdict())
        return True

    def record_skipped(self, spec: JobSpec, **kwargs: Any) -> None:
        self.skipped.append((spec.job, {"labels": spec.labels, **kwargs}))


def run(argv: tuple[str, ...], spec: JobSpec | None = None,
        reporter: FakeReporter | None = None) -> tuple[int, FakeReporter]:
    reporter = reporter or FakeReporter()
    code = run_job(argv, spec or JobSpec(command_job(argv)), load_config(), reporter)
    return code, reporter


def test_exit_code_and_what_is_reported(tmp_path: Path) -> None:
    """The runner returns the child's code and finishes the run with outcome, exit code,
    duration, resources and the output tail."""
    spec = JobSpec("backup", {"db": "main"}, expect_every=3600.0, max_runtime=60.0)
    code, reporter = run(("sh", "-c", "echo out; exit 3"), spec)
    assert code == 3
    (started,) = reporter.started
    assert started.job == "backup"
    assert started.spec is spec  # carried whole, as the command line made it
    assert started.spec.labels == {"db": "main"}
    assert started.spec.expect_every == 3600.0 and started.spec.max_runtime == 60.0
    assert started.kwargs["command"] == "sh -c 'echo out; exit 3'"
    (end,) = reporter.finished
    assert (end["outcome"], end["exit_code"]) == (outcomes.FAILURE, 3)
    assert end["duration"] >= 0 and end["ended"] > 0
    assert end["cpu_seconds"] is not None and end["max_rss_bytes"] > 0
    assert end["tail"] == "out"
    assert end["size"] is None and end["items"] is None and end["custom"] == ()


def test_not_found_is_started_and_finished() -> None:
    """A command that cannot start is still one run: opened and closed as not_found."""
    code, reporter = run(("jobreport-missing-xyz",))
    assert code == 127
    assert reporter.started[0].job == "jobreport-missing-xyz"
    assert reporter.finished[0]["outcome"] == outcomes.NOT_FOUND


def test_reporting_failures_never_change_the_exit_code() -> None:
    """A reporter that raises on start and finish leaves the child's exit code intact."""
    code, _ = run(("sh", "-c", "exit 7"), JobSpec("x"), FakeReporter(fail=True))
    assert code == 7


def test_metrics_file_and_handed_over_size_and_items() -> None:
    """Metrics written to the file join the finish; jobreport_last_size_bytes and
    jobreport_last_items (what job_metrics hands over) become size and items."""
    script = ('printf "tables 4\\njobreport_last_size_bytes 2048\\njobreport_last_items 9\\n"'
              ' >> "$JOBREPORT_METRICS_FILE"')
    code, reporter = run(("sh", "-c", script), JobSpec("j"))
    assert code == 0
    end = reporter.finished[0]
    assert (end["size"], end["items"]) == (2048.0, 9.0)
    assert [f.name for f in end["custom"]] == ["tables"]


def test_size_path_wins_over_the_metrics_file(tmp_path: Path) -> None:
    """--size-path, when given, is the size reported."""
    target = tmp_path / "out.bin"
    script = (f'head -c 100 /dev/zero > {target}; '
              'echo "jobreport_last_size_bytes 5" >> "$JOBREPORT_METRICS_FILE"')
    _, reporter = run(("sh", "-c", script), JobSpec("j", size_paths=(str(target),)))
    assert reporter.finished[0]["size"] == 100.0


def test_heartbeats_while_running(tmp_path: Path) -> None:
    """--heartbeat calls the reporter's heartbeat periodically, and stops (joined) before
    run_job returns: no heartbeat comes after it."""
    flag = tmp_path / "beaten"

    class Beating(FakeReporter):
        def heartbeat(self, run: FakeRun) -> None:
            super().heartbeat(run)
            if self.heartbeats >= 3:
                flag.touch()

    # the command runs until three heartbeats came (or 60 s: a generous deadline)
    script = f"i=0; while [ ! -e {flag} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done"
    code, reporter = run(("sh", "-c", script), JobSpec("hb", heartbeat=0.02), Beating())
    assert code == 0
    beats = reporter.heartbeats
    assert beats >= 3
    assert not [t for t in threading.enumerate() if t.name == "jobreport-heartbeat"]
    assert reporter.heartbeats == beats


def test_lock_busy_records_skipped_and_returns_75(tmp_path: Path) -> None:
    """With the group's lock held elsewhere the command does not run: skipped, 75."""
    marker = tmp_path / "ran"
    config = load_config()
    holder = JobLock(lock_path(config.grouping("locked")))
    holder.acquire()
    try:
        code, reporter = run(("touch", str(marker)), JobSpec("locked", lock=True))
    finally:
        holder.release()
    assert code == EXIT_SKIPPED == 75
    assert not marker.exists()
    assert reporter.skipped == [("locked", {"labels": {}, "command": f"touch {marker}"})]
    assert reporter.started == [] and reporter.finished == []
    code, reporter = run(("touch", str(marker)), JobSpec("locked", lock=True))
    assert code == 0 and marker.exists()


def test_lock_names_its_holder(tmp_path: Path) -> None:
    """A busy lock says which process holds it; closing releases it."""
    path = tmp_path / "locks" / "x.lock"
    first = JobLock(path)
    first.acquire()
    with pytest.raises(LockBusy) as busy:
        JobLock(path).acquire()
    assert busy.value.holder == os.getpid()
    assert str(os.getpid()) in str(busy.value)
    first.release()
    with JobLock(path):
        pass
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"


def test_lock_paths_differ_per_group() -> None:
    """Each group has its own lock file, named after its job."""
    a = lock_path({"job": "backup", "instance": "h"})
    b = lock_path({"job": "backup", "instance": "h", "db": "x"})
    c = lock_path({"job": "../../etc/passwd"})
    assert a != b and a.name.startswith("backup-")
    assert "/" not in c.name and c.parent == a.parent


def test_path_size(tmp_path: Path) -> None:
    """Files and trees are summed; symlinks are not followed; a missing path holds 0 bytes
    (the run produced nothing there); one that cannot be read is left out."""
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "a").write_bytes(b"x" * 10)
    (tmp_path / "d" / "e" / "b").write_bytes(b"x" * 5)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 1000)
    (tmp_path / "d" / "link").symlink_to(big)
    (tmp_path / "d" / "dirlink").symlink_to(tmp_path)
    link_size = os.lstat(tmp_path / "d" / "link").st_size
    assert path_size([str(tmp_path / "d")]) == 15 + link_size  # the link, not its target
    assert path_size([str(big), str(tmp_path / "missing")]) == 1000
    assert path_size([str(tmp_path / "missing")]) == 0
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked"
        locked.mkdir()
        (locked / "f").write_bytes(b"x")
        locked.chmod(0)
        try:
            assert path_size([str(locked / "f")]) is None
        finally:
            locked.chmod(0o700)


def test_job_name_defaults_to_the_base_name() -> None:
    """The job is the command's base name unless given."""
    assert command_job(("/usr/bin/pg_dump", "db")) == "pg_dump"
    assert command_job(("./backup.sh",)) == "backup.sh"
    from jobreport.cli.entry import parse_run

    parsed = parse_run(["--job", "nightly", "x"], {})
    assert parsed is not None and parsed.spec.job == "nightly"


def test_metrics_file_is_private_and_removed() -> None:
    """The metrics file exists (mode 0600) while the child runs and is removed after."""
    script = 'stat -c %a "$JOBREPORT_METRICS_FILE"; echo "$JOBREPORT_METRICS_FILE"'
    code, reporter = run(("sh", "-c", script), JobSpec("m"))
    assert code == 0
    mode, path = reporter.finished[0]["tail"].split("\n")
    assert mode == "600"
    assert path.startswith("/") and not os.path.exists(path)


def test_settings_that_fail_to_load_after_the_start_cost_the_job_nothing(
        isolated_env: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The settings load once the command runs: if loading them raises, the command's exit
    code is still the run's, the run is recorded with the defaults, and one line says so."""
    def broken() -> Any:
        raise RuntimeError("disk on fire")

    reporter = FakeReporter()
    code = run_job(("sh", "-c", "exit 4"), JobSpec("cfg"), broken, reporter)
    assert code == 4
    assert [r["exit_code"] for r in reporter.finished] == [4]
    assert "the settings could not be loaded (disk on fire); using the defaults" in (
        caplog.text)
