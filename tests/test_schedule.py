"""Cron schedules: checking expressions, fire times across weekends, DST changes and short
months, and the deadlines a scheduled job pushes."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from jobreport.cron import TZPATH, check_expression, check_timezone
from jobreport.schedule import Schedule, deadlines

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = 3600.0
DAY = 86400.0


def at(zone: ZoneInfo, *fields: int, fold: int = 0) -> float:
    return datetime(*fields, tzinfo=zone, fold=fold).timestamp()  # type: ignore[arg-type,misc]


def local(zone: ZoneInfo, when: float) -> str:
    return datetime.fromtimestamp(when, zone).strftime("%a %Y-%m-%d %H:%M %Z")


@pytest.mark.parametrize(("expression", "message"), [
    ("0 3 * * 8", "0 3 * * 8: day of week must be 0-7"),
    ("60 3 * * *", "60 3 * * *: minute must be 0-59"),
    ("0 24 * * *", "0 24 * * *: hour must be 0-23"),
    ("0 3 0 * *", "0 3 0 * *: day of month must be 1-31"),
    ("0 3 * 13 *", "0 3 * 13 *: month must be 1-12"),
    ("0 3 * * FUN", "day of week must be 0-7 (or SUN-SAT), not 'FUN'"),
    ("0 3 * *", "a schedule has five fields"),
    ("0 0 3 * * *", "a schedule has five fields"),
    ("0 3 * * 5-1", "day of week range 5-1 runs backwards"),
    ("*/0 * * * *", "a step must be 1 or more"),
    ("0 0 30 2 *", "day of month 30 never happens"),
    ("@sometimes", "unknown alias"),
    ("0 3 ? * *", "is not a cron term"),
])
def test_a_bad_expression_says_what_is_wrong(expression: str, message: str) -> None:
    """A mistyped schedule is refused with the field and its range."""
    with pytest.raises(ValueError, match=None) as caught:
        check_expression(expression)
    assert message in str(caught.value)


@pytest.mark.parametrize("expression", [
    "0 3 * * 1-5", "*/15 * * * *", "0 0 1 * *", "30 2 * * MON-FRI", "0 9-17/2 * JAN,JUL 0,7",
    "@hourly", "@daily", "@WEEKLY", "@monthly", "@yearly", "0 0 29 2 *", "5/10 * * * *",
])
def test_what_the_check_accepts_cronsim_iterates(expression: str) -> None:
    """Every expression the cheap check accepts is one cronsim can iterate."""
    schedule = Schedule(expression, "UTC")
    fires = schedule.fires(0.0, 3)
    assert fires == sorted(fires) and fires[0] > 0.0


def test_a_bad_time_zone_is_refused() -> None:
    """An unknown or malformed zone name is a clear error; a real one passes."""
    assert check_timezone("Europe/Berlin") == "Europe/Berlin"
    assert check_timezone("UTC") == "UTC"
    for name in ("Mars/Olympus", "Europe/Berlinn"):
        with pytest.raises(ValueError, match="unknown time zone"):
            check_timezone(name)
    for name in ("../../etc/passwd", "", "Europe Berlin"):
        with pytest.raises(ValueError, match="not an IANA time zone name"):
            check_timezone(name)
    # files beside the zones that are no zone data: zoneinfo cannot convert with them
    for name in ("leapseconds", "zone.tab", "tzdata.zi"):
        if any(os.path.isfile(os.path.join(d, name)) for d in TZPATH):
            with pytest.raises(ValueError, match="not a time zone|not an IANA time zone"):
                check_timezone(name)


def test_weekday_job_over_a_weekend() -> None:
    """A weekday job that ran on Friday is due on Monday, with 10% of a day's gap as grace:
    nothing is due on Saturday or Sunday."""
    job = Schedule("0 3 * * 1-5", "Europe/Berlin")
    friday_start = at(BERLIN, 2026, 11, 27, 3, 0, 1)
    friday_end = friday_start + 300
    due = deadlines(job, last_success=friday_end, last_start=friday_start, last_end=friday_end)
    monday = at(BERLIN, 2026, 11, 30, 3, 0)
    assert due.success == due.start == monday + 0.1 * DAY
    assert local(BERLIN, job.next_fire(friday_end)) == "Mon 2026-11-30 03:00 CET"
    # a max runtime moves only the success deadline
    slow = deadlines(job, last_success=friday_end, last_start=friday_start,
                     last_end=friday_end, max_runtime=2 * HOUR)
    assert slow.success == monday + 2 * HOUR + 0.1 * DAY
    assert slow.start == monday + 0.1 * DAY


def test_grace_flag_replaces_the_default() -> None:
    """--grace sets the grace of both deadlines."""
    job = Schedule("@daily", "UTC")
    due = deadlines(job, last_success=10.0, last_start=5.0, last_end=10.0, grace=60.0)
    assert due.success == due.start == DAY + 60.0


def test_success_deadline_moves_only_with_a_success() -> None:
    """A failed run moves the start deadline but not the success deadline."""
    job = Schedule("0 * * * *", "UTC")
    ok = deadlines(job, last_success=HOUR + 10, last_start=HOUR, last_end=HOUR + 10)
    failed = deadlines(job, last_success=HOUR + 10, last_start=2 * HOUR,
                       last_end=2 * HOUR + 10)
    assert ok.success == failed.success == 2 * HOUR + 360
    assert failed.start == 3 * HOUR + 360


def test_a_job_that_never_succeeded_counts_from_its_last_run() -> None:
    """Without a success, the success deadline follows the last run (NeverSucceeded)."""
    job = Schedule("0 * * * *", "UTC")
    due = deadlines(job, last_success=None, last_start=HOUR, last_end=None)
    assert due.success == due.start == 2 * HOUR + 360
    assert deadlines(job, last_success=None, last_start=None) == type(due)(None, None)


@pytest.mark.parametrize(("zone", "day", "fire", "expected"), [
    # spring forward: 02:30 does not exist that night; it fires once, at 03:00
    (BERLIN, (2026, 3, 28), "30 2 * * *",
     ["Sun 2026-03-29 03:00 CEST", "Mon 2026-03-30 02:30 CEST"]),
    (NEW_YORK, (2026, 3, 7), "30 2 * * *",
     ["Sun 2026-03-08 03:00 EDT", "Mon 2026-03-09 02:30 EDT"]),
    # fall back: 02:30 (Berlin) / 01:30 (New York) happens twice; it fires once, the first
    (BERLIN, (2026, 10, 24), "30 2 * * *",
     ["Sun 2026-10-25 02:30 CEST", "Mon 2026-10-26 02:30 CET"]),
    (NEW_YORK, (2026, 10, 31), "30 1 * * *",
     ["Sun 2026-11-01 01:30 EDT", "Mon 2026-11-02 01:30 EST"]),
])
def test_daily_job_across_dst_changes(zone: ZoneInfo, day: tuple[int, int, int], fire: str,
                                      expected: list[str]) -> None:
    """A daily job neither misses nor doubles a fire time when the clocks change."""
    job = Schedule(fire, str(zone))
    previous = job.next_fire(at(zone, *day, 0, 0))
    fires = job.fires(previous, 2)
    assert [local(zone, f) for f in fires] == expected
    # each deadline lies between its fire time and the next one, so every day has exactly
    # one deadline
    for start, next_fire in zip([previous, *fires], fires, strict=False):
        due = deadlines(job, last_success=start + 60, last_start=start, last_end=start + 60)
        assert due.start is not None and next_fire < due.start < next_fire + 0.11 * 25 * HOUR


def test_run_ending_in_the_repeated_hour_is_not_due_again_that_night() -> None:
    """A 02:30 run that ends in the second 02:xx of a fall-back night (02:10 CET, after
    02:30 CEST) is next due on Monday, not at the 02:30 that comes round again."""
    job = Schedule("30 2 * * *", "Europe/Berlin")
    started = at(BERLIN, 2026, 10, 25, 2, 30)  # CEST, the first pass
    ended = at(BERLIN, 2026, 10, 25, 2, 10, fold=1)  # CET, the second pass
    assert ended > started
    assert local(BERLIN, job.next_fire(ended)) == "Mon 2026-10-26 02:30 CET"


def test_hourly_job_runs_every_real_hour_across_dst() -> None:
    """An hourly job has 1 h gaps in real time whatever the wall clock does."""
    job = Schedule("@hourly", "America/New_York")
    fires = job.fires(at(NEW_YORK, 2026, 11, 1, 0, 0), 4)
    assert [b - a for a, b in itertools.pairwise(fires)] == [HOUR] * 3


def test_monthly_job_across_february() -> None:
    """@monthly runs on the 1st; the grace follows the length of the month after the fire."""
    job = Schedule("@monthly", "UTC")
    jan = at(ZoneInfo("UTC"), 2026, 1, 1, 0, 0)
    feb = at(ZoneInfo("UTC"), 2026, 2, 1, 0, 0)
    mar = at(ZoneInfo("UTC"), 2026, 3, 1, 0, 0)
    due = deadlines(job, last_success=jan + 60, last_start=jan, last_end=jan + 60)
    assert due.success == feb + 0.1 * (mar - feb)  # 2.8 days: February has 28
    due = deadlines(job, last_success=feb + 60, last_start=feb, last_end=feb + 60)
    assert due.success == mar + 0.1 * 31 * DAY


def test_run_longer_than_the_gap() -> None:
    """An hourly run from 01:00 to 02:30 is next due at 03:00 (+6 min): the 02:00 it overlapped
    is not a missed start, and its success is not overdue at once."""
    job = Schedule("0 * * * *", "UTC")
    due = deadlines(job, last_success=2.5 * HOUR, last_start=HOUR, last_end=2.5 * HOUR)
    assert due.success == due.start == 3 * HOUR + 360
    # while it runs, the start deadline is the one after its own start
    running = deadlines(job, last_success=10.0, last_start=HOUR, last_end=10.0)
    assert running.start == 2 * HOUR + 360


def test_host_zone_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --timezone the host's zone ($TZ here) decides."""
    monkeypatch.setenv("TZ", "America/New_York")
    job = Schedule("0 3 * * *")
    assert job.zone_name == "America/New_York"
    assert local(NEW_YORK, job.next_fire(at(NEW_YORK, 2026, 6, 1, 12, 0))) == \
        "Tue 2026-06-02 03:00 EDT"


def test_checking_loads_neither_cronsim_nor_zoneinfo() -> None:
    """What runs before the command starts stays cheap: cronsim loads only for fire times."""
    code = ("import sys; from jobreport.cron import check_expression, check_timezone; "
            "check_expression('0 3 * * 1-5'); check_timezone('Europe/Berlin'); "
            "print('cronsim' in sys.modules, 'zoneinfo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["False", "False"]


def test_a_posix_tz_string_falls_back_to_localtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """$TZ that is not an IANA name (a POSIX rule string) does not become a zone name:
    the host's /etc/localtime decides then, as it would for cron."""
    monkeypatch.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
    from jobreport.schedule import local_zone_name

    name = local_zone_name()
    assert name != "CET-1CEST,M3.5.0,M10.5.0/3"
    assert check_timezone(name) == name
    monkeypatch.setenv("TZ", ":Europe/Berlin")
    assert local_zone_name() == "Europe/Berlin"
