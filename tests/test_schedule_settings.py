"""Schedules as settings: `jobreport run --schedule ...`, the environment, the config file's
job sections and `job_metrics(...)` push the deadlines of their own calendar, the thresholds
and the count of failures in a row; a bad expression runs nothing; cronsim loads only after
the command has started."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobreport import job_metrics, load_config
from jobreport.errors import ConfigError
from tests.conftest import Gateway
from tests.fast_calendar import launcher

JOBREPORT = [sys.executable, "-m", "jobreport"]
REPO = Path(__file__).resolve().parent.parent
BERLIN = ZoneInfo("Europe/Berlin")


def run(*argv: str, env: dict[str, str],
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JOBREPORT, "run", *argv], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture
def env(gateway: Gateway, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "JOBREPORT_GATEWAY": gateway.url, "JOBREPORT_INSTANCE": "h1",
            "JOBREPORT_DB": f"sqlite:///{tmp_path / 'store.db'}"}


def next_weekday_at(after: float, hour: int, minute: int, zone: ZoneInfo) -> float:
    """The first Monday-to-Friday hour:minute in ``zone`` after ``after``, by the calendar
    (not by jobreport's code)."""
    day = datetime.fromtimestamp(after, zone).date()
    for _ in range(10):
        fire = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
        if fire.weekday() < 5 and fire.timestamp() > after:
            return fire.timestamp()
        day += timedelta(days=1)
    raise AssertionError("no weekday in ten days")


def test_weekday_schedule_pushes_its_calendar_deadlines(gateway: Gateway,
                                                         env: dict[str, str]) -> None:
    """A Mon-Fri 03:00 Berlin job pushes: start deadline = the next weekday 03:00 + 10% of a
    day; success deadline = that + --max-runtime; no interval; the thresholds."""
    result = run("--job", "weekday", "--schedule", "0 3 * * 1-5", "--timezone",
                 "Europe/Berlin", "--max-runtime", "1h", "--min-runtime", "5s",
                 "--alert-after-failures", "2", "--", "true", env=env)
    assert result.returncode == 0, result.stderr
    s = gateway.samples("weekday")
    fire = next_weekday_at(s["jobreport_last_end_timestamp_seconds"], 3, 0, BERLIN)
    grace = 0.1 * 86400
    assert s["jobreport_start_deadline_timestamp_seconds"] == pytest.approx(fire + grace)
    assert s["jobreport_success_deadline_timestamp_seconds"] == pytest.approx(
        fire + 3600 + grace)
    assert "jobreport_expected_interval_seconds" not in s
    assert s["jobreport_min_runtime_seconds"] == 5
    assert s["jobreport_alert_after_failures"] == 2
    assert s["jobreport_consecutive_failures"] == 0


def test_consecutive_failures_count_from_the_store(gateway: Gateway,
                                                   env: dict[str, str]) -> None:
    """Failures in a row are counted across runs; a skipped run (--lock) neither counts nor
    resets; a success resets to 0."""
    args = ("--job", "flaky", "--schedule", "@daily", "--alert-after-failures", "3")
    for expected in (1, 2):
        assert run(*args, "--", "false", env=env).returncode == 1
        assert gateway.samples("flaky")["jobreport_consecutive_failures"] == expected
    holder = subprocess.Popen([*JOBREPORT, "run", *args, "--lock", "--", "sh", "-c",
                               "echo started; sleep 30"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "started\n"
        skipped = run(*args, "--lock", "--", "true", env=env)
        assert skipped.returncode == 75, skipped.stderr
        assert gateway.samples("flaky")["jobreport_consecutive_failures"] == 2
    finally:
        holder.terminate()
        holder.communicate(timeout=60)
    # the holder ended by a signal: a third unsuccessful run
    assert gateway.samples("flaky")["jobreport_consecutive_failures"] == 3
    assert run(*args, "--", "true", env=env).returncode == 0
    assert gateway.samples("flaky")["jobreport_consecutive_failures"] == 0


@pytest.mark.parametrize(("argv", "message"), [
    (["--schedule", "0 3 * * 8"], "0 3 * * 8: day of week must be 0-7"),
    (["--schedule", "0 3 * *"], "a schedule has five fields"),
    (["--schedule", "@daily", "--timezone", "Mars/Olympus"], "unknown time zone"),
    (["--schedule", "@daily", "--expect-every", "1d"], "exclude each other"),
    (["--schedule", "@daily", "--alert-after-failures", "0"], "out of range: 1 to 10000"),
    (["--schedule", "@daily", "--timezone", "leapseconds"], "not a time zone"),
])
def test_a_bad_schedule_is_a_usage_error_that_runs_nothing(
        env: dict[str, str], tmp_path: Path, argv: list[str], message: str) -> None:
    """Exit 2 with one clear line, and the command never ran."""
    marker = tmp_path / "ran"
    result = run("--job", "bad", *argv, "--", "touch", str(marker), env=env)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_environment_and_config_file_set_the_schedule(gateway: Gateway, env: dict[str, str],
                                                      tmp_path: Path) -> None:
    """JOBREPORT_SCHEDULE/JOBREPORT_TIMEZONE work like the flags; a job section's schedule
    is used by `jobreport run --job NAME`, and a --expect-every flag replaces it."""
    config = tmp_path / "jobreport.toml"
    config.write_text('[jobs.nightly]\nschedule = "30 2 * * *"\ntimezone = "UTC"\n'
                      'min_runtime = "1m"\nalert_after_failures = 4\n')
    env_file = {**env, "JOBREPORT_CONFIG": str(config)}
    assert run("--job", "nightly", "--", "true", env=env_file).returncode == 0
    s = gateway.samples("nightly")
    assert s["jobreport_min_runtime_seconds"] == 60
    assert s["jobreport_alert_after_failures"] == 4
    ended = datetime.fromtimestamp(s["jobreport_last_end_timestamp_seconds"], ZoneInfo("UTC"))
    fire = ended.replace(hour=2, minute=30, second=0, microsecond=0)
    if fire <= ended:
        fire += timedelta(days=1)
    assert s["jobreport_start_deadline_timestamp_seconds"] == pytest.approx(
        fire.timestamp() + 8640)
    assert run("--job", "nightly", "--expect-every", "1h", "--", "true",
               env=env_file).returncode == 0
    s = gateway.samples("nightly")
    assert "jobreport_start_deadline_timestamp_seconds" not in s  # the PUT replaced them
    assert s["jobreport_expected_interval_seconds"] == 3960
    by_env = {**env, "JOBREPORT_SCHEDULE": "@hourly", "JOBREPORT_TIMEZONE": "UTC"}
    assert run("--job", "hourly", "--", "true", env=by_env).returncode == 0
    s = gateway.samples("hourly")
    start = s["jobreport_start_deadline_timestamp_seconds"]
    assert start % 3600 == pytest.approx(360) and 0 < start - s[
        "jobreport_last_end_timestamp_seconds"] <= 3600 + 360


def test_config_file_checks_the_schedule_keys(tmp_path: Path) -> None:
    """A bad schedule, zone or count in a job section, or both expect_every and schedule,
    is a ConfigError naming the key."""
    cases = {
        'schedule = "0 3 * * 8"': ("jobs.j.schedule", "day of week must be 0-7"),
        'schedule = "@daily"\ntimezone = "Nowhere/Land"': ("jobs.j.timezone",
                                                            "unknown time zone"),
        "alert_after_failures = 0": ("jobs.j.alert_after_failures", "out of range: 1 to 10000"),
        'schedule = "@daily"\nexpect_every = "1d"': ("jobs.j.schedule", "exclude each other"),
    }
    for body, (setting, problem) in cases.items():
        path = tmp_path / "jobreport.toml"
        path.write_text(f"[jobs.j]\n{body}\n")
        with pytest.raises(ConfigError) as caught:
            load_config(env={}, config_file=str(path))
        assert caught.value.setting == setting
        assert problem in caught.value.problem
    path.write_text('[jobs.j]\nschedule = "0 3 * * 1-5"\ntimezone = "Europe/Berlin"\n'
                    'min_runtime = "10s"\nalert_after_failures = 3\n')
    job = load_config(env={}, config_file=str(path)).job("j")
    assert (job.schedule, job.timezone, job.min_runtime, job.alert_after_failures) == (
        "0 3 * * 1-5", "Europe/Berlin", 10.0, 3)


def test_job_metrics_takes_the_same_keywords(gateway: Gateway, env: dict[str, str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """job_metrics(schedule=..., timezone=..., min_runtime=..., alert_after_failures=...)
    pushes the same metrics; bad values raise ConfigError before the body runs."""
    for key in ("JOBREPORT_GATEWAY", "JOBREPORT_DB", "JOBREPORT_INSTANCE"):
        monkeypatch.setenv(key, env[key])
    with pytest.raises(ConfigError, match="day of week must be 0-7"):
        job_metrics("lib", schedule="0 3 * * 8")
    with pytest.raises(ConfigError, match="exclude each other"):
        job_metrics("lib", schedule="@daily", expect_every="1d")
    with pytest.raises(ConfigError, match="unknown time zone"):
        job_metrics("lib", schedule="@daily", timezone="Nowhere/Land")
    with job_metrics("lib", schedule="0 3 * * 1-5", timezone="Europe/Berlin",
                     min_runtime="1m", alert_after_failures=2):
        pass
    s = gateway.samples("lib")
    fire = next_weekday_at(s["jobreport_last_end_timestamp_seconds"], 3, 0, BERLIN)
    assert s["jobreport_start_deadline_timestamp_seconds"] == pytest.approx(fire + 8640)
    assert s["jobreport_success_deadline_timestamp_seconds"] == pytest.approx(fire + 8640)
    assert s["jobreport_min_runtime_seconds"] == 60
    assert s["jobreport_alert_after_failures"] == 2
    assert s["jobreport_consecutive_failures"] == 0


def test_history_marks_runs_shorter_than_their_minimum(env: dict[str, str]) -> None:
    """A success under --min-runtime is marked in `history` (table and JSON)."""
    assert run("--job", "quick", "--min-runtime", "1h", "--", "true", env=env).returncode == 0
    table = subprocess.run([*JOBREPORT, "history", "quick"], env=env, capture_output=True,
                           text=True, timeout=60, check=True).stdout
    assert "success (too short: < 1h)" in table
    data = subprocess.run([*JOBREPORT, "history", "quick", "--json"], env=env,
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert '"too_short": true' in data and '"min_runtime": 3600' in data


def test_status_shows_the_next_deadline_and_whether_it_passed(env: dict[str, str]) -> None:
    """`jobreport status` shows a scheduled job's next deadline, and "passed" with the
    problems once it is behind (a calendar 1000 times as fast as the clock, put in the run's
    process by tests/fast_calendar.py: due within a second)."""
    assert run("--job", "later", "--schedule", "@daily", "--", "true", env=env).returncode == 0
    now = time.time()
    soon = subprocess.run([*launcher(now, now, 1000.0), "run", "--job", "soon", "--schedule",
                           "* * * * *", "--", "true"], env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120, check=False)
    assert soon.returncode == 0, soon.stderr
    out = ""
    for _ in range(50):  # bounded: the deadline is at most 0.07 s after the run
        out = subprocess.run([*JOBREPORT, "status"], env=env, capture_output=True, text=True,
                             timeout=60, check=True).stdout
        if "passed" in out:
            break
    [later] = [line for line in out.splitlines() if line.startswith("later ")]
    [soon] = [line for line in out.splitlines() if line.startswith("soon ")]
    assert "(in " in later and "ok" in later
    assert "(passed " in soon and "missed start" in soon and "overdue" in soon


def test_cronsim_loads_only_after_the_command_started(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    """With -X importtime, cronsim's import is reported after the command's first line:
    the schedule costs the command's start nothing."""
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "jobreport", "run", "--job", "lazy",
             "--schedule", "@daily", "--tail", "0", "--", "sh", "-c",
             "echo COMMAND-STARTED >&2; sleep 0.5"],
            env=env, stdout=subprocess.DEVNULL, stderr=err, timeout=120, check=False)
    assert proc.returncode == 0
    lines = log.read_text().splitlines()
    started = lines.index("COMMAND-STARTED")
    # the name's indent is the import depth, which CPython counts across threads: another
    # thread's import in progress (the reporter's) indents it, so only the name is compared
    loaded = [i for i, line in enumerate(lines)
              if line.startswith("import time:") and line.split("|")[-1].strip() == "cronsim"]
    assert loaded, "cronsim was never loaded: no deadlines?"
    assert loaded[0] > started
