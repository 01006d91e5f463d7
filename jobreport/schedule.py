"""Cron schedules: check an expression, iterate its fire times in a time zone, and turn them
into the deadlines a scheduled job pushes.

Five-field cron (``minute hour day-of-month month day-of-week``) and the aliases ``@hourly``,
``@daily``, ``@weekly``, ``@monthly`` and ``@yearly``. The fire times come from cronsim (the
library healthchecks.io uses), which follows Debian cron across DST changes: a fire time
that does not exist (spring forward) fires once, right after the change, and one that happens
twice (fall back) fires once, the first time. So a deadline is neither missed nor doubled.

``check_expression`` and ``check_timezone`` are cheap (no cronsim, usually no zoneinfo): they
run before the command starts, so that a mistyped schedule is a usage error that runs nothing.
cronsim and zoneinfo load only when fire times are needed, which is at the end of a run or in
the background while the command runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# typing and logging stay unloaded: the checks run before `jobreport run` starts its command
TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import tzinfo

    from jobreport.records import GroupState

__all__ = [
    "ALIASES",
    "Deadlines",
    "Schedule",
    "apply_deadlines",
    "check_expression",
    "check_timezone",
    "deadlines",
    "local_zone_name",
    "scheduled_deadlines",
]

#: The ``@`` forms, as Debian cron expands them.
ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

#: Grace, when none is given: this share of the gap between the next two fire times.
DEFAULT_GRACE_SHARE = 0.1

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# field name, lowest, highest, names (index + offset = value)
_Spec = tuple[str, int, int, tuple[list[str], int] | None]
_FIELDS: tuple[_Spec, ...] = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, (_MONTHS, 1)),
    ("day of week", 0, 7, (_DAYS, 0)),
)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_TERM = re.compile(r"(?P<base>\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?")
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
_TZPATH = ("/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo",
           "/etc/zoneinfo")


def check_expression(text: str) -> str:
    """Return the expression, whitespace normalised; raise ``ValueError`` saying what is wrong
    (e.g. ``0 3 * * 8: day of week must be 0-7``) when cron would not take it."""
    expression = " ".join(str(text).split())
    if expression.lower() in ALIASES:
        return expression.lower()
    if expression.startswith("@"):
        raise ValueError(f"{expression}: unknown alias; use one of {', '.join(ALIASES)}")
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(
            f"{expression or text!r}: a schedule has five fields (minute hour day-of-month "
            f"month day-of-week), e.g. \"0 3 * * 1-5\", or is one of @hourly, @daily, "
            f"@weekly, @monthly, @yearly")
    values = [_field(expression, part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    days, months = values[2], values[3]
    day_and = parts[2].startswith("*") or parts[4].startswith("*")
    if day_and and min(days) > max(_DAYS_IN_MONTH[m - 1] for m in months):
        raise ValueError(f"{expression}: day of month {min(days)} never happens in the "
                         f"months given, so the job would never run")
    return expression


def _field(expression: str, text: str, spec: _Spec) -> set[int]:
    name, low, high, names = spec
    allowed = f"{name} must be {low}-{high}"
    if names is not None:
        allowed += f" (or {names[0][0]}-{names[0][-1]})"
    values: set[int] = set()
    for term in text.split(","):
        match = _TERM.fullmatch(term)
        if match is None:
            raise ValueError(f"{expression}: {term!r} is not a cron term ({allowed}; write "
                             f"*, N, N-M, */S, N-M/S or a list of them)")
        base, step = match["base"], match["step"]
        if step is not None and int(step) == 0:
            raise ValueError(f"{expression}: {term!r}: a step must be 1 or more")
        if base == "*":
            first, last = low, high
        else:
            start, _, end = base.partition("-")
            first = _value(expression, start, spec, allowed)
            last = _value(expression, end, spec, allowed) if end else first
            if end and last < first:
                raise ValueError(f"{expression}: {name} range {base} runs backwards "
                                 f"(write {end}-{start}, or two ranges)")
            if step is not None and not end:
                last = high
        values.update(range(first, last + 1, int(step or 1)))
    return values


def _value(expression: str, text: str, spec: _Spec, allowed: str) -> int:
    _, low, high, names = spec
    if text.isdigit():
        number = int(text)
    elif names is not None and text.upper() in names[0]:
        number = names[0].index(text.upper()) + names[1]
    else:
        number = -1
    if not low <= number <= high:
        raise ValueError(f"{expression}: {allowed}" + ("" if text.isdigit() else
                                                       f", not {text!r}"))
    return number


def check_timezone(name: str) -> str:
    """Return the IANA zone name; raise ``ValueError`` when there is no such zone.

    Looks for the zone's file where zoneinfo would, and imports zoneinfo only when it is
    not there (zoneinfo may still find it in the ``tzdata`` package)."""
    text = str(name).strip()
    if not text or not _ZONE_NAME.fullmatch(text) or ".." in text:
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin, UTC)")
    env_path = os.environ.get("PYTHONTZPATH")
    for directory in (env_path.split(os.pathsep) if env_path else _TZPATH):
        if os.path.isfile(os.path.join(directory, text)):
            return text
    try:
        _zone(text)
    except ValueError:
        raise ValueError(f"{text}: unknown time zone; use an IANA name such as "
                         f"Europe/Berlin, America/New_York or UTC") from None
    return text


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


@dataclass(frozen=True)
class Schedule:
    """A checked cron expression in a time zone (``None``: the host's zone)."""

    expression: str
    timezone: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "expression", check_expression(self.expression))

    @property
    def zone_name(self) -> str:
        return self.timezone or local_zone_name()

    def zone(self) -> tzinfo:
        """The time zone's rules (zoneinfo caches them)."""
        return _zone(self.zone_name)

    def fires(self, after: float, count: int = 1) -> list[float]:
        """The next ``count`` fire times strictly after Unix time ``after``."""
        scale = _test_time_scale()
        if scale is not None:
            real, virtual, factor = scale
            fires = self._fires(virtual + (after - real) * factor, count)
            return [real + (f - virtual) / factor for f in fires]
        return self._fires(after, count)

    def _fires(self, after: float, count: int) -> list[float]:
        from datetime import datetime

        from cronsim import CronSim, CronSimError

        zone = self.zone()
        start = datetime.fromtimestamp(after, tz=zone)
        try:
            times = CronSim(ALIASES.get(self.expression, self.expression), start)
        except CronSimError as e:  # check_expression lets through only what cronsim takes
            raise ValueError(f"{self.expression}: {e}") from None
        out: list[float] = []
        # cronsim walks local wall time for fixed-time jobs: right after a fall-back change a
        # wall time can come round again that is earlier than ``after``; skip it, so that
        # a fire time is never counted twice
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
            raise ValueError(f"{self.expression}: no fire time after {start.isoformat()}")
        return out

    def next_fire(self, after: float) -> float:
        """The first fire time strictly after Unix time ``after``."""
        return self.fires(after)[0]

    def default_grace(self, fire: float) -> float:
        """10% of the gap between fire time ``fire`` and the one after it."""
        return DEFAULT_GRACE_SHARE * (self.next_fire(fire) - fire)


def _test_time_scale() -> tuple[float, float, float] | None:
    """For end-to-end tests only (cron has minute resolution, a test cannot wait for hours):
    ``JOBREPORT_TEST_TIME_SCALE=REAL:VIRTUAL:FACTOR`` lets the calendar run FACTOR times
    faster than the clock, Unix time REAL being VIRTUAL on the calendar. Fire times are
    still cronsim's; only the time line they are read on is compressed. Unset (always, in
    use) it costs one environment lookup."""
    text = os.environ.get("JOBREPORT_TEST_TIME_SCALE")
    if not text:
        return None
    try:
        real, virtual, factor = (float(part) for part in text.split(":"))
    except ValueError:
        return None
    return (real, virtual, factor) if factor > 0 else None


@dataclass(frozen=True)
class Deadlines:
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


def apply_deadlines(state: GroupState, expression: str, timezone: str | None, *,
                    grace: float | None, known: bool = True) -> None:
    """Set ``state``'s deadlines from its last success, start and end. ``known=False``: the
    state is one run's alone (no store), whose success deadline only that run can give
    when it succeeded: the last success otherwise is the history's."""
    due = scheduled_deadlines(
        expression, timezone, last_success=state.last_success, last_start=state.last_start,
        last_end=state.last.ended if state.last is not None else None,
        max_runtime=state.max_runtime, grace=grace)
    if due is not None:
        state.start_deadline = due.start
        if known or state.last_success is not None:
            state.success_deadline = due.success
