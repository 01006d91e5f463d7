"""The shipped rules against calendars: series a scheduled job would push (deadlines from
jobreport.schedule, as the store derives them after every start and end) go through
promtool, and the alerts fire, stay silent and resolve at the wall-clock times the calendar
says: a weekday job over a weekend, daily jobs across both DST changes in Europe/Berlin and
America/New_York, a run longer than the gap to the next fire, @monthly across February."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobreport.schedule import Deadlines, Schedule, deadlines
from tests.monitoring_helpers import PROMTOOL, RULES, write_yaml

pytestmark = pytest.mark.integration  # runs promtool's rule tests

MISSED, OVERDUE = "JobreportJobMissedStart", "JobreportJobOverdue"


@dataclass(frozen=True)
class Run:
    start: float
    end: float
    outcome: str = "success"


@dataclass
class Job:
    """One group: its schedule, its runs, and what the rules must say when."""

    name: str
    schedule: Schedule
    runs: list[Run]
    max_runtime: float | None = None
    checks: tuple[tuple[datetime, frozenset[str]], ...] = ()


def runs_at(schedule: Schedule, first: datetime, last: datetime, *,
            skip: tuple[datetime, ...] = (), took: float = 300.0) -> list[Run]:
    """A run at every fire time from ``first`` to ``last`` (starting 1 s late, as cron does),
    except the fire times in ``skip``."""
    skipped = {d.timestamp() for d in skip}
    out: list[Run] = []
    when = first.timestamp() - 1
    while True:
        fire = schedule.next_fire(when)
        if fire > last.timestamp():
            return out
        if fire not in skipped:
            out.append(Run(fire + 1, fire + 1 + took))
        when = fire


def series(job: Job, start: float, stop: float, step: float) -> list[dict[str, str]]:
    """The values the Pushgateway would hold for ``job`` at each sample time, relative to
    ``start`` (promtool's time 0)."""
    names = ("last_start_timestamp_seconds", "last_success_timestamp_seconds", "running",
             "success_deadline_timestamp_seconds", "start_deadline_timestamp_seconds",
             "last_run_success", "last_duration_seconds")
    values: dict[str, list[str]] = {n: [] for n in names}
    known: dict[tuple[float | None, ...], Deadlines] = {}  # the state moves only with runs
    t = start
    while t <= stop + 1e-6:
        started = [r for r in job.runs if r.start <= t]
        ended = [r for r in started if r.end <= t]
        row: dict[str, float | None] = dict.fromkeys(names)
        if started:
            last_end = max((r.end for r in ended), default=None)
            success = max((r.end for r in ended if r.outcome == "success"), default=None)
            last_start = max(r.start for r in started)
            due = known.get((success, last_start, last_end))
            if due is None:
                due = known[(success, last_start, last_end)] = deadlines(
                    job.schedule, last_success=success, last_start=last_start,
                    last_end=last_end, max_runtime=job.max_runtime)
            row["last_start_timestamp_seconds"] = max(r.start for r in started) - start
            row["running"] = sum(1 for r in started if r.end > t)
            row["start_deadline_timestamp_seconds"] = (
                None if due.start is None else due.start - start)
            if success is not None:
                row["last_success_timestamp_seconds"] = success - start
                assert due.success is not None
                row["success_deadline_timestamp_seconds"] = due.success - start
            if ended:
                last = max(ended, key=lambda r: r.end)
                row["last_run_success"] = 1.0 if last.outcome == "success" else 0.0
                row["last_duration_seconds"] = last.end - last.start
        for name in names:
            value = row[name]
            values[name].append("_" if value is None else f"{value:.3f}")
        t += step
    return [{"series": f'jobreport_{name}{{job="{job.name}",instance="h1"}}',
             "values": " ".join(vals)} for name, vals in values.items()]


def check_with_promtool(tmp_path: Path, jobs: list[Job], start: datetime, stop: datetime,
                        step: timedelta) -> None:
    t0, t1, dt = start.timestamp(), stop.timestamp(), step.total_seconds()
    tests = []
    for job in jobs:
        for when, alerts in job.checks:
            offset = when.timestamp() - t0
            assert 0 < offset <= t1 - t0 and offset % dt == 0, when
            tests.append({
                "expr": f'ALERTS{{alertstate="firing",job="{job.name}"}}',
                "eval_time": f"{int(offset)}s",
                "exp_samples": [
                    {"labels": f'ALERTS{{alertname="{name}",alertstate="firing",'
                               f'job="{job.name}",instance="h1",severity="'
                               f'{"critical" if name == OVERDUE else "warning"}"}}',
                     "value": 1}
                    for name in sorted(alerts)],
            })
    case = {
        "rule_files": [str(RULES / "jobreport-alerts.yml")],
        "evaluation_interval": f"{int(dt)}s",
        "tests": [{
            "interval": f"{int(dt)}s",
            "input_series": [s for job in jobs for s in series(job, t0, t1, dt)],
            "promql_expr_test": tests,
        }],
    }
    path = write_yaml(tmp_path / "calendar.test.yml", case)
    result = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True,
                            text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def every(first: datetime, last: datetime, step: timedelta) -> list[datetime]:
    out = []
    while first <= last:
        out.append(first)
        first += step
    return out


def around(deadline: datetime, step: timedelta, before: frozenset[str],
           after: frozenset[str]) -> tuple[tuple[datetime, frozenset[str]], ...]:
    """Checks at the last evaluation not after ``deadline`` and at the one after it."""
    seconds = step.total_seconds()
    last = datetime.fromtimestamp(deadline.timestamp() // seconds * seconds, deadline.tzinfo)
    return ((last, before), (last + step, after))


def silent(times: list[datetime]) -> tuple[tuple[datetime, frozenset[str]], ...]:
    return tuple((t, frozenset()) for t in times)


def utc_minute(zone: ZoneInfo, *fields: int) -> datetime:
    """A local wall time as an aware UTC datetime (unambiguous arithmetic across DST)."""
    local = datetime(*fields, tzinfo=zone)  # type: ignore[arg-type,misc]
    return local.astimezone(ZoneInfo("UTC"))


def test_weekday_job_over_a_weekend(tmp_path: Path) -> None:
    """A Mon-Fri 03:00 job is silent all weekend; a missed Monday run alerts MissedStart at
    05:24 (03:00 + 10% of a day) and Overdue an hour later (--max-runtime 1h); Tuesday's
    start resolves MissedStart and its success resolves Overdue."""
    berlin = ZoneInfo("Europe/Berlin")
    job = Schedule("0 3 * * 1-5", "Europe/Berlin")
    start, stop = utc_minute(berlin, 2026, 11, 26, 0, 0), utc_minute(berlin, 2026, 12, 1, 12, 0)
    first = utc_minute(berlin, 2026, 11, 25, 0, 0)
    monday = utc_minute(berlin, 2026, 11, 30, 3, 0)
    ok = Job("weekday", job, runs_at(job, first, stop),
             checks=silent(every(start + timedelta(hours=2), stop, timedelta(hours=2))))
    step = timedelta(minutes=5)
    tuesday = utc_minute(berlin, 2026, 12, 1, 3, 5)
    missed = Job(
        "weekday_missed", job, runs_at(job, first, stop, skip=(monday,)), max_runtime=3600.0,
        checks=silent(every(utc_minute(berlin, 2026, 11, 27, 6, 0),
                            utc_minute(berlin, 2026, 11, 30, 5, 0), timedelta(hours=2)))
        + around(utc_minute(berlin, 2026, 11, 30, 5, 24), step, frozenset(), frozenset({MISSED}))
        + around(utc_minute(berlin, 2026, 11, 30, 6, 24), step, frozenset({MISSED}),
                 frozenset({MISSED, OVERDUE}))
        # Tuesday's run started at 03:00:01 (MissedStart resolved) and is still running
        + ((tuesday, frozenset({OVERDUE})), (tuesday + step, frozenset())),
    )
    check_with_promtool(tmp_path, [ok, missed], start, stop, step)


@pytest.mark.parametrize(("zone_name", "expression", "days", "fire", "due", "after"), [
    # spring forward: 02:30 does not exist; the job runs at 03:00, once; grace 10% of 23.5 h
    ("Europe/Berlin", "30 2 * * *", (2026, 3, 28), (29, 3, 0), (29, 5, 21), (30, 2, 40)),
    ("America/New_York", "30 2 * * *", (2026, 3, 7), (8, 3, 0), (8, 5, 21), (9, 2, 40)),
    # fall back: the first 02:30 (01:30 in New York) counts, once; grace 10% of 25 h
    ("Europe/Berlin", "30 2 * * *", (2026, 10, 24), (25, 2, 30), (25, 4, 0), (26, 2, 40)),
    ("America/New_York", "30 1 * * *", (2026, 10, 31), (1, 1, 30), (1, 3, 0), (2, 1, 40)),
], ids=["berlin-spring", "new-york-spring", "berlin-fall", "new-york-fall"])
def test_daily_job_across_dst_changes(  # noqa: PLR0917
        tmp_path: Path, zone_name: str, expression: str,
        days: tuple[int, int, int], fire: tuple[int, int, int], due: tuple[int, int, int],
        after: tuple[int, int, int]) -> None:
    """A daily job that runs at every fire time raises nothing across the change (the
    missing 02:30 is not missed, the repeated one is not expected twice); one that misses
    the night of the change alerts once, at the deadline the calendar gives (wall times
    below), and the next day's run resolves it."""
    zone = ZoneInfo(zone_name)
    job = Schedule(expression, zone_name)
    year, month, day = days

    def wall(d: int, h: int, m: int) -> datetime:
        return utc_minute(zone, year, month if d > day else month + 1, d, h, m)

    start = utc_minute(zone, year, month, day, 0, 0)
    stop = start + timedelta(days=3)
    step = timedelta(minutes=5)
    deadline = wall(*due)
    ok = Job("daily", job, runs_at(job, start - timedelta(days=1), stop),
             checks=silent(every(start + timedelta(minutes=30), stop, timedelta(minutes=30))))
    missed = Job(
        "daily_missed", job,
        runs_at(job, start - timedelta(days=1), stop, skip=(wall(*fire),)),
        # resolved by the next day's run: started (MissedStart), succeeded (Overdue)
        checks=(*around(deadline, step, frozenset(), frozenset({MISSED, OVERDUE})),
                (wall(*after), frozenset())),
    )
    assert len(missed.runs) == len(ok.runs) - 1  # the fire time skipped is one of them
    check_with_promtool(tmp_path, [ok, missed], start, stop, step)


def test_run_longer_than_the_gap(tmp_path: Path) -> None:
    """An hourly job (--max-runtime 2h) whose 01:00 run takes until 02:30 raises nothing:
    not while it runs past the 02:00 fire time, not after it (the next start is due at
    03:06); when the 03:00 run then does not come, MissedStart fires at 03:06 and Overdue at
    05:06 (03:00 + 2h + 6 min)."""
    utc = ZoneInfo("UTC")
    job = Schedule("0 * * * *", "UTC")
    start, stop = datetime(2026, 6, 1, 0, 0, tzinfo=utc), datetime(2026, 6, 1, 6, 0, tzinfo=utc)
    step, hour = timedelta(minutes=5), 3600.0
    t0 = start.timestamp()
    runs = [Run(t0 - hour + 1, t0 - hour + 301), Run(t0 + 1, t0 + 301),
            Run(t0 + hour + 1, t0 + 2.5 * hour)]
    later = [Run(t0 + h * hour + 1, t0 + h * hour + 301) for h in (3, 4, 5)]
    ok = Job("long", job, runs + later, max_runtime=2 * hour,
             checks=silent(every(start + step, stop, step)))
    missed = Job("long_missed", job, runs, max_runtime=2 * hour,
                 checks=silent(every(start + step, start + timedelta(hours=3), step))
                 + around(start + timedelta(hours=3, minutes=6), step, frozenset(),
                          frozenset({MISSED}))
                 + around(start + timedelta(hours=5, minutes=6), step, frozenset({MISSED}),
                          frozenset({MISSED, OVERDUE})))
    check_with_promtool(tmp_path, [ok, missed], start, stop, step)


def test_monthly_job_across_february(tmp_path: Path) -> None:
    """@monthly: February's 28 days give a 2.8-day grace. A job that runs every month is
    silent; one whose February run is missed alerts after Feb 3 19:12, until March's run."""
    utc = ZoneInfo("UTC")
    job = Schedule("@monthly", "UTC")
    start = datetime(2026, 1, 1, 0, 0, tzinfo=utc)
    stop = datetime(2026, 3, 6, 0, 0, tzinfo=utc)
    first = datetime(2025, 12, 1, 0, 0, tzinfo=utc)
    feb = datetime(2026, 2, 1, 0, 0, tzinfo=utc)
    ok = Job("monthly", job, runs_at(job, first, stop, took=60.0),
             checks=silent(every(start + timedelta(days=1), stop, timedelta(days=1))))
    missed = Job(
        "monthly_missed", job, runs_at(job, first, stop, skip=(feb,), took=60.0),
        checks=silent(every(start + timedelta(days=1), datetime(2026, 2, 3, 19, tzinfo=utc),
                            timedelta(days=1)))
        + around(datetime(2026, 2, 3, 19, 12, tzinfo=utc), timedelta(hours=1), frozenset(),
                 frozenset({MISSED, OVERDUE}))
        + ((datetime(2026, 2, 28, 23, tzinfo=utc), frozenset({MISSED, OVERDUE})),
           (datetime(2026, 3, 1, 1, tzinfo=utc), frozenset())),
    )
    check_with_promtool(tmp_path, [ok, missed], start, stop, timedelta(hours=1))
