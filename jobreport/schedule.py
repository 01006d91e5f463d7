"""Cron schedules: iterate an expression's fire times in a time zone, and turn them into
the deadlines a scheduled job pushes (``jobreport.cron`` checks expressions and zones).

The fire times come from cronsim (the library healthchecks.io uses), which follows Debian
cron across DST changes: a fire time that does not exist (spring forward) fires once, right
after the change, and one that happens twice (fall back) fires once, the first time. So a
deadline is neither missed nor doubled. cronsim and zoneinfo load only when fire times are
needed, which is at the end of a run or in the background while the command runs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from jobreport.cron import ALIASES, check_expression, check_timezone

if TYPE_CHECKING:
    from datetime import tzinfo

__all__ = [
    "Deadlines",
    "Schedule",
    "cron_fires",
    "deadlines",
    "fire_times",
    "local_zone_name",
    "scheduled_deadlines",
    "shortest_gap",
]

#: Grace, when none is given: this share of the gap between the next two fire times.
DEFAULT_GRACE_SHARE = 0.1


def _zone(name: str) -> tzinfo:
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as e:
        raise ValueError(f"{name}: unknown time zone") from e


def local_zone_name() -> str:
    """The host's time zone name: ``$TZ`` when it names an IANA zone, else the zone
    ``/etc/localtime`` points to, else ``UTC``."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            return check_timezone(tz)
        except ValueError:
            pass  # a POSIX TZ string (CET-1CEST,...) or a path: what /etc/localtime says
    try:
        target = os.path.realpath("/etc/localtime")
    except OSError:  # pragma: no cover - realpath rarely fails
        return "UTC"
    marker = "/zoneinfo/"
    if marker in target:
        return target.split(marker, 1)[1]
    return "UTC"


# NamedTuples, not frozen dataclasses: a scheduled run makes them at its end, and
# ``dataclasses`` (with the ``inspect`` it imports) cost a run about 6 ms.
class _ScheduleFields(NamedTuple):
    expression: str
    timezone: str | None


class Schedule(_ScheduleFields):
    """A checked cron expression in a time zone (``None``: the host's zone)."""

    __slots__ = ()

    def __new__(cls, expression: str, timezone: str | None = None) -> Schedule:
        return super().__new__(cls, check_expression(expression), timezone)

    @property
    def zone_name(self) -> str:
        return self.timezone or local_zone_name()

    def zone(self) -> tzinfo:
        """The time zone's rules (zoneinfo caches them)."""
        return _zone(self.zone_name)

    def fires(self, after: float, count: int = 1) -> list[float]:
        """The next ``count`` fire times strictly after Unix time ``after``."""
        return fire_times(self, after, count)

    def next_fire(self, after: float) -> float:
        """The first fire time strictly after Unix time ``after``."""
        return self.fires(after)[0]


def cron_fires(schedule: Schedule, after: float, count: int) -> list[float]:
    """The next ``count`` fire times of ``schedule`` strictly after Unix time ``after``, by
    cronsim on the real calendar."""
    from datetime import datetime

    from cronsim import CronSim, CronSimError

    expression = schedule.expression
    start = datetime.fromtimestamp(after, tz=schedule.zone())
    try:
        times = CronSim(ALIASES.get(expression, expression), start)
    except CronSimError as e:  # check_expression lets through only what cronsim takes
        raise ValueError(f"{expression}: {e}") from None
    out: list[float] = []
    # cronsim walks local wall time for fixed-time jobs: right after a fall-back change a
    # wall time can come round again that is earlier than ``after``; skip it, so that a
    # fire time is never counted twice
    for _ in range(count + 4):
        try:
            when = next(times).timestamp()
        except StopIteration:
            break
        if when > after:
            out.append(when)
            if len(out) == count:
                break
    if len(out) < count:
        raise ValueError(f"{expression}: no fire time after {start.isoformat()}")
    return out


@functools.lru_cache(maxsize=64)
def shortest_gap(expression: str) -> float:
    """The shortest time between two fire times of ``expression``, in seconds of wall-clock
    time (a DST change aside), over five years of its calendar (a 29 February job's gap is
    four years)."""
    from datetime import datetime, timezone

    from cronsim import CronSim

    expression = check_expression(expression)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)  # (a leap year: 29 February is in)
    times = CronSim(ALIASES.get(expression, expression), start)
    previous, shortest = None, float("inf")
    for _ in range(2000):
        when = next(times, None)
        if when is None or (when - start).days > 5 * 366:
            break
        if previous is not None:
            shortest = min(shortest, (when - previous).total_seconds())
        previous = when
    return shortest


#: Where every fire time comes from: ``cron_fires``, the real calendar. The one seam for
#: time in the schedules: a test puts a function of the same shape here (a calendar that
#: runs faster than the clock, say) instead of waiting for cron's minutes.
fire_times: Callable[[Schedule, float, int], list[float]] = cron_fires


class Deadlines(NamedTuple):
    """What a scheduled job pushes (Unix times)."""

    #: The next success is due by then (None before any success or start is known).
    success: float | None
    #: The next run must have started by then (None when no start is known).
    start: float | None


def deadlines(schedule: Schedule, *, last_success: float | None, last_start: float | None,
              last_end: float | None = None, max_runtime: float | None = None,
              grace: float | None = None) -> Deadlines:
    """The deadlines of a scheduled job.

    Success deadline: the first fire time after the last success + ``max_runtime`` (when set)
    + grace; it moves only with a success. A job that has never succeeded counts from its
    last run instead, so that it still has a deadline.

    Start deadline: the first fire time after the last run's start + grace. When that run
    ended after further fire times had passed (it ran longer than the gap), the count starts
    at its end: the fire times it overlapped were not missed starts (cron ran them beside
    it or ``--lock`` skipped them; systemd does not start a unit that is still active).

    Grace defaults to 10% of the gap between that fire time and the one after it, so a
    weekday job's Friday-to-Monday gap does not widen it.
    """
    def due(after: float | None, extra: float) -> float | None:
        if after is None:
            return None
        fire, following = schedule.fires(after, 2)
        slack = grace if grace is not None else DEFAULT_GRACE_SHARE * (following - fire)
        return fire + extra + slack

    last_run = last_start
    if last_start is not None and last_end is not None:
        last_run = max(last_start, last_end)
    base = last_success if last_success is not None and last_success > 0 else last_run
    return Deadlines(success=due(base, max_runtime or 0.0), start=due(last_run, 0.0))


def scheduled_deadlines(expression: str, timezone: str | None, *,
                        last_success: float | None, last_start: float | None,
                        last_end: float | None, max_runtime: float | None = None,
                        grace: float | None = None) -> Deadlines | None:
    """``deadlines`` for a stored expression and zone; None (and a debug line) when they no
    longer make sense here (a zone this host does not know): reporting never fails on it."""
    try:
        return deadlines(Schedule(expression, timezone), last_success=last_success,
                         last_start=last_start, last_end=last_end, max_runtime=max_runtime,
                         grace=grace)
    except ValueError as e:
        import logging

        logging.getLogger("jobreport").debug("jobreport: no deadlines: %s", e)
        return None
