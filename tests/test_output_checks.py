"""Outputs that are wrong: a success's size and items held to --min-size, --min-items and
--max-shrink (against the typical size the store keeps), and whether a --size-path was
written at all; each threshold through every door (flag, variable, config section,
keyword, metrics file), and what a push carries."""

from __future__ import annotations

import json
import re
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobreport import job_metrics, load_config
from jobreport.errors import ConfigError
from jobreport.exposition import families
from jobreport.result import RunResult
from jobreport.spec import JobSpec
from jobreport.state import group_key
from jobreport.store.store import RunStart, Store
from jobreport.wrapper.metricsfile import parse_text
from jobreport.wrapper.size import MTIME_SLACK, measure
from jobreport.wrapper.wrapper import run_job
from tests.conftest import Gateway
from tests.test_runner import FakeReporter

JOBREPORT = [sys.executable, "-m", "jobreport"]
DAY = 86400.0


def jobreport(*argv: str, env: dict[str, str],
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JOBREPORT, *argv], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture
def env(gateway: Gateway, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "JOBREPORT_GATEWAY": gateway.url, "JOBREPORT_INSTANCE": "h1",
            "JOBREPORT_DB": f"sqlite:///{tmp_path / 'store.db'}"}


def pushed(state_families: object) -> dict[str, float]:
    return {f.name: f.samples[0][2] for f in state_families  # type: ignore[attr-defined]
            if len(f.samples) == 1}


# --- was the output written? -------------------------------------------------------------


def test_measure_reads_sizes_and_the_newest_file(tmp_path: Path) -> None:
    """The size of files and trees, and the newest mtime of a file in them: a directory's
    own mtime (a file removed from it) is not writing; a missing path is 0 bytes."""
    old = time.time() - DAY
    tree = tmp_path / "backups"
    tree.mkdir()
    dump = tree / "db.dump"
    dump.write_bytes(b"x" * 100)
    os.utime(dump, (old, old))
    (tree / "gone.dump").write_bytes(b"y")
    (tree / "gone.dump").unlink()  # the rotation ran: the directory changed, no file did
    found = measure([str(tree)])
    assert found.size == 100 and found.newest == pytest.approx(old)
    started = time.time()
    assert not found.written_since(started)
    missing = measure([str(tmp_path / "nothing-here")])
    assert missing.size == 0 and missing.newest is None
    assert not missing.written_since(started)
    (tree / "new.dump").write_bytes(b"z" * 10)
    fresh = measure([str(tree), str(tmp_path / "nothing-here")])
    assert fresh.size == 110 and fresh.written_since(started)


def test_the_slack_absorbs_coarse_file_times() -> None:
    """A file stamped up to MTIME_SLACK before the start (a 2 s FAT granularity, the
    kernel's coarse clock) counts as written by the run; one stamped earlier does not."""
    from jobreport.wrapper.size import Measured

    started = 1_000_000.0
    assert Measured(1, started - MTIME_SLACK).written_since(started)
    assert Measured(1, started - 0.001).written_since(started)
    assert not Measured(1, started - MTIME_SLACK - 0.01).written_since(started)


def _end(argv: tuple[str, ...], spec: JobSpec) -> dict[str, object]:
    reporter = FakeReporter()
    run_job(argv, spec, load_config(), reporter)
    [end] = reporter.finished
    return end


def test_a_success_that_wrote_nothing_is_not_updated(tmp_path: Path) -> None:
    """jobreport_last_output_updated: 0 for a success that left yesterday's dump in place
    (or wrote to a path that does not exist), 1 for one that wrote it, also in well under a
    second, and 1 for a run that failed (the failure is what alerts then)."""
    dump = tmp_path / "db.dump"
    dump.write_bytes(b"x" * 50)
    old = time.time() - DAY
    os.utime(dump, (old, old))
    spec = JobSpec("backup", size_paths=(str(dump),))
    stale = _end(("true",), spec)
    assert (stale["output_updated"], stale["size"]) == (0, 50.0)
    wrote = _end(("sh", "-c", f"printf abc > {dump}"), spec)
    assert (wrote["output_updated"], wrote["size"]) == (1, 3.0)
    failed = _end(("sh", "-c", "exit 1"), JobSpec("backup", size_paths=(str(dump),)))
    assert failed["output_updated"] == 1
    nowhere = _end(("true",), JobSpec("backup", size_paths=(str(tmp_path / "none"),)))
    assert (nowhere["output_updated"], nowhere["size"]) == (0, 0.0)
    assert _end(("true",), JobSpec("backup"))["output_updated"] is None


# --- the store keeps what the judgement needs --------------------------------------------


def _record(store: Store, job: str, outcome: str, *, size: float | None = None,
            duration: float = 1.0, spec: JobSpec | None = None) -> None:
    now = time.time()
    store.record_run(RunStart(job, {"job": job}, now - duration, "h", spec=spec),
                     RunResult(ended=now, duration=duration, outcome=outcome,
                               exit_code=0 if outcome == "success" else 1, size=size))


def test_typical_size_and_duration_are_the_medians_of_the_last_ten_successes(
        tmp_path: Path) -> None:
    """Only successes count (the size only of those that reported one), and only the last
    ten; the failure streak counts unsuccessful runs since the last success."""
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    key = group_key({"job": "b"})
    for size in (100, 100, 100, 100, 100, 100, 100, 100, 100, 100):
        _record(store, "b", "success", size=size, duration=10.0)
    state, _ = store.group_state(key)
    assert (state.typical_size, state.typical_duration) == (100.0, 10.0)
    _record(store, "b", "success", size=10, duration=2.0)  # a tenth: the median holds
    _record(store, "b", "failure", size=0, duration=1.0)  # failures do not count
    _record(store, "b", "success", duration=3.0)  # no size: the sizes stay
    state, _ = store.group_state(key)
    assert state.typical_size == 100.0 and state.typical_duration == 10.0
    for _ in range(6):
        _record(store, "b", "success", size=10, duration=2.0)
    state, _ = store.group_state(key)
    # the last ten sizes: 100 x3, 10 x7 -> median 10; durations 10 x2, 2, 3, 2 x6 -> 2
    assert state.typical_size == 10.0 and state.typical_duration == 2.0
    assert state.consecutive_failures == 0
    _record(store, "b", "failure")
    _record(store, "b", "skipped")
    _record(store, "b", "abandoned")
    state, _ = store.group_state(key)
    assert state.consecutive_failures == 2


def test_a_push_carries_the_thresholds_and_the_typical_values(tmp_path: Path) -> None:
    """The spec's thresholds, the typical size and duration, and the last run's output
    check are gauges of the push."""
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    spec = JobSpec.checked("b", {"min_size": "10MB", "min_items": 5, "max_shrink": "50%"})
    now = time.time()
    _, state, _ = store.record_run(
        RunStart("b", {"job": "b"}, now - 4, "h", spec=spec),
        RunResult(ended=now, duration=4.0, outcome="success", exit_code=0, size=2e7,
                  items=7.0, output_updated=1))
    values = pushed(families(state))
    assert values["jobreport_min_size_bytes"] == 1e7
    assert values["jobreport_min_items"] == 5
    assert values["jobreport_max_shrink_ratio"] == 0.5
    assert values["jobreport_typical_size_bytes"] == 2e7
    assert values["jobreport_typical_duration_seconds"] == 4.0
    assert values["jobreport_last_output_updated"] == 1
    [row] = store.history("b")
    assert not row.too_small
    assert row.to_json()["min_size"] == 1e7 and row.to_json()["max_shrink"] == 0.5


def test_a_schema_5_store_gets_its_streak_and_typical_values(tmp_path: Path) -> None:
    """Migrated, a group's failure streak and typical values come from its history."""
    path = tmp_path / "old.db"
    store = Store(f"sqlite:///{path}")
    for size in (100, 200, 300):
        _record(store, "b", "success", size=size, duration=size / 100)
    _record(store, "b", "failure")
    _record(store, "b", "timeout")
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE jobreport_groups SET failure_streak = NULL, recent_sizes = NULL, "
                     "recent_durations = NULL")
        conn.execute("UPDATE jobreport_meta SET value = '5' WHERE key = 'schema_version'")
    state, _ = Store(f"sqlite:///{path}").group_state(group_key({"job": "b"}))
    assert state.consecutive_failures == 2
    assert (state.typical_size, state.typical_duration) == (200.0, 2.0)


# --- the metrics file is a door too -------------------------------------------------------


def test_the_metrics_file_holds_the_output_to_thresholds() -> None:
    """jobreport_min_size_bytes, jobreport_min_items and jobreport_max_shrink_ratio lines
    set the run's thresholds, held to their ranges (a bad one is a skipped line naming the
    range); other jobreport_ names are still refused."""
    parsed = parse_text("jobreport_min_size_bytes 1e6\njobreport_min_items 12\n"
                        "jobreport_max_shrink_ratio 0.5\n# TYPE jobreport_min_items gauge\n")
    assert parsed.spec == {"min_size": 1e6, "min_items": 12, "max_shrink": 0.5}
    assert parsed.problems == [] and parsed.families == []
    bad = parse_text("jobreport_max_shrink_ratio 50\njobreport_min_items 2.5\n"
                     "jobreport_min_size_bytes 0\njobreport_expected_interval_seconds 5\n")
    assert bad.spec == {}
    assert [p.split(":")[0] for p in bad.problems] == ["line 1", "line 2", "line 3", "line 4"]
    assert "more than 0%, less than 100%" in bad.problems[0]
    assert "1B to 1EB" in bad.problems[2]


def test_thresholds_through_every_door_reach_the_gateway(gateway: Gateway, env: dict[str, str],
                                                         tmp_path: Path) -> None:
    """A flag, a variable, a config section and a metrics-file line each push their
    threshold; a flag wins over the metrics file, which wins over the config section."""
    config = tmp_path / "jobreport.toml"
    config.write_text('[jobs.cfg]\nmin_size = "1GiB"\nmin_items = 3\nmax_shrink = 0.25\n'
                      '[jobs.file]\nmin_size = "1GiB"\n')
    env = {**env, "JOBREPORT_CONFIG": str(config)}
    assert jobreport("run", "--job", "flag", "--min-size", "10MB", "--min-items", "5",
                     "--max-shrink", "40%", "--", "true", env=env).returncode == 0
    by_env = {**env, "JOBREPORT_MIN_SIZE": "2kB", "JOBREPORT_MAX_SHRINK": "0.9"}
    assert jobreport("run", "--job", "env", "--", "true", env=by_env).returncode == 0
    assert jobreport("run", "--job", "cfg", "--", "true", env=env).returncode == 0
    script = ('printf "jobreport_min_size_bytes 5000\\njobreport_min_items 7\\n'
              'jobreport_max_shrink_ratio 0.5\\n" >> "$JOBREPORT_METRICS_FILE"')
    out = jobreport("run", "--job", "file", "--min-items", "9", "--", "sh", "-c", script,
                    env=env)
    assert out.returncode == 0, out.stderr
    expect = {"flag": (1e7, 5, 0.4), "env": (2000, None, 0.9), "cfg": (2**30, 3, 0.25),
              "file": (5000, 9, 0.5)}
    for job, (size, items, shrink) in expect.items():
        s = gateway.samples(job)
        assert s["jobreport_min_size_bytes"] == size, job
        assert s.get("jobreport_min_items") == items, job
        assert s["jobreport_max_shrink_ratio"] == shrink, job
    history = jobreport("history", "file", "--json", env=env)
    [row] = json.loads(history.stdout)
    assert (row["min_size"], row["min_items"], row["max_shrink"]) == (5000, 9, 0.5)


def test_job_metrics_inside_jobreport_run_hands_its_thresholds_over(
        gateway: Gateway, env: dict[str, str], tmp_path: Path) -> None:
    """A Python script that says min_size=... and is wrapped by `jobreport run` for the
    same job keeps its threshold (one run, not two)."""
    script = tmp_path / "dump.py"
    script.write_text(
        "from jobreport import job_metrics\n"
        "with job_metrics('pydump', min_size='1MB', max_shrink='30%') as job:\n"
        "    job.set_size(10)\n")
    env = {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = jobreport("run", "--job", "pydump", "--", sys.executable, str(script), env=env)
    assert out.returncode == 0, out.stderr
    s = gateway.samples("pydump")
    assert s["jobreport_min_size_bytes"] == 1e6 and s["jobreport_max_shrink_ratio"] == 0.3
    assert s["jobreport_last_size_bytes"] == 10
    assert s['jobreport_runs_total{outcome="success"}'] == 1


def test_bad_values_run_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    """A bad --min-size, --min-items or --max-shrink (typed or from its variable) is a
    usage error naming the range; the command does not run."""
    marker = tmp_path / "ran"
    for argv, range_ in ((["--min-size", "10M"], "10MiB"), (["--min-size", "0"], "1B to 1EB"),
                         (["--min-items", "0"], "1 to 1000000000000"),
                         (["--max-shrink", "100%"], "less than 100%"),
                         (["--max-shrink", "50"], "write 50% or 0.5")):
        out = jobreport("run", "--job", "bad", *argv, "--", "touch", str(marker), env=env)
        assert out.returncode == 2 and range_ in out.stderr, (argv, out.stderr)
    out = jobreport("run", "--job", "bad", "--", "touch", str(marker),
                    env={**env, "JOBREPORT_MAX_SHRINK": "0%"})
    assert out.returncode == 2 and "JOBREPORT_MAX_SHRINK" in out.stderr
    assert not marker.exists()
    with pytest.raises(ConfigError, match="1B to 1EB"):
        job_metrics("bad", min_size=0)


def test_history_marks_a_success_that_is_too_small_or_not_updated(
        env: dict[str, str], tmp_path: Path) -> None:
    """`jobreport history` marks a success below --min-size, and one that left its
    --size-path as it was."""
    dump = tmp_path / "d.dump"
    dump.write_bytes(b"")
    old = time.time() - DAY
    os.utime(dump, (old, old))
    out = jobreport("run", "--job", "small", "--min-size", "1kB", "--size-path", str(dump),
                    "--", "true", env=env)
    assert out.returncode == 0, out.stderr
    table = jobreport("history", "small", env=env).stdout
    assert "success (too small; output not updated)" in table


def test_a_new_store_judges_its_first_run_against_the_gateway(gateway: Gateway,
                                                              tmp_path: Path) -> None:
    """A run from a new, empty store (a container) reads the typical size back from the
    gateway and counts it as one run more: a tenth of the usual size is still below the
    shrink limit; a hostile typical value is not adopted."""
    def run(store: str, size: float) -> dict[str, float]:
        config = load_config(env={}, gateway=gateway.url, instance="pod",
                             db=f"sqlite:///{tmp_path / store}")
        with job_metrics("podjob", max_shrink="50%", config=config) as job:
            job.set_size(size)
        return gateway.samples("podjob")

    for _ in range(3):
        first = run("one.db", 1000.0)
    assert first["jobreport_typical_size_bytes"] == 1000.0
    second = run("two.db", 100.0)  # a new pod: a new store
    assert second["jobreport_typical_size_bytes"] == 550.0  # median of 1000 (read back), 100
    assert second["jobreport_last_size_bytes"] < 0.5 * second["jobreport_typical_size_bytes"]
    assert second['jobreport_runs_total{outcome="success"}'] == 4
    assert second["jobreport_typical_duration_seconds"] >= 0


def test_status_names_outputs_that_are_wrong() -> None:
    """`jobreport status` judges what the rules judge: too small (min size, min items, the
    shrink limit against the typical size) and output not updated, for a success only."""
    from jobreport.commands.status import gateway_status
    from tests.gateway_text import FakeGateway, family

    def success(job: str, **gauges: float) -> dict[str, object]:
        # (every end push carries its end: JobreportJobOutputNotUpdated reads it)
        return {"labels": {"job": job, "instance": "a"},
                "jobreport_last_outcome": {"metrics": [
                    {"labels": {"outcome": "success"}, "value": "1"}]},
                "jobreport_last_end_timestamp_seconds": family(1.0),
                **{f"jobreport_{k}": family(v) for k, v in gauges.items()}}

    groups = [
        success("empty", last_size_bytes=0, min_size_bytes=1000),
        success("shrunk", last_size_bytes=10, typical_size_bytes=100, max_shrink_ratio=0.5),
        success("few", last_items=3, min_items=5),
        success("stale", last_output_updated=0),
        success("fine", last_size_bytes=90, typical_size_bytes=100, max_shrink_ratio=0.5,
                min_size_bytes=50, last_output_updated=1),
    ]
    result = gateway_status(load_config(),
                            sinks=[FakeGateway(groups)]).groups  # type: ignore[list-item]
    assert {g.job: g.problems for g in result} == {
        "empty": ("too small",), "shrunk": ("too small",), "few": ("too small",),
        "stale": ("output not updated",), "fine": ()}


@pytest.mark.parametrize(("text", "size"), [
    ("500000", 5e5), ("1e6", 1e6), ("10MB", 1e7), ("10 mb", 1e7), ("1GiB", 2**30),
    ("1.5GB", 1.5e9), (".5KiB", 512), ("1kB", 1000), ("1KB", 1000), ("2TiB", 2 * 2**40),
    ("1EB", 1e18), (2048, 2048), (1.6, 2)])
def test_sizes_are_bytes_or_a_unit(text: object, size: float) -> None:
    """Decimal units count in 1000s, binary ones in 1024s, whole bytes."""
    assert JobSpec.checked("j", {"min_size": text}).min_size == size


@pytest.mark.parametrize(("text", "said"), [
    ("10M", "write 10MB (powers of 1000) or 10MiB"), ("1Gi", "write 1GiB"),
    ("ten", "is not a size"), ("0", "1B to 1EB"), ("-5", "1B to 1EB"),
    ("1e400", "1B to 1EB"), ("2EB", "1B to 1EB"), (float("nan"), "1B to 1EB"),
    (True, "is not a size"), ("1iB", "is not a size")])
def test_a_size_that_is_not_one(text: object, said: str) -> None:
    from jobreport.spec import SpecError

    with pytest.raises(SpecError, match=re.escape(said)):
        JobSpec.checked("j", {"min_size": text})


@pytest.mark.parametrize(("text", "share"), [
    ("50%", 0.5), ("0.5", 0.5), (0.25, 0.25), (" 12.5 % ", 0.125), ("99.9%", 0.999)])
def test_shares_are_percentages_or_fractions(text: object, share: float) -> None:
    assert JobSpec.checked("j", {"max_shrink": text}).max_shrink == pytest.approx(share)


@pytest.mark.parametrize("text", ["0", "0%", "100%", "1", "50", "-5%", "nan", "inf%", "x", True])
def test_a_share_out_of_range_is_refused(text: object) -> None:
    from jobreport.spec import SpecError

    with pytest.raises(SpecError):
        JobSpec.checked("j", {"max_shrink": text})


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=12))
def test_the_typical_value_is_the_median(values: list[float]) -> None:
    """The group's typical size and duration are the median of what it kept (nothing kept:
    none)."""
    from jobreport.store.groups import typical

    kept = json.dumps(values)
    assert typical(kept) == (statistics.median(values) if values else None)
