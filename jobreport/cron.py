"""Cron expressions and IANA time zones, checked cheaply: neither cronsim nor zoneinfo is
loaded, so that a mistyped ``--schedule`` or ``--timezone`` is a usage error before
``jobreport run`` starts its command (the fire times are ``jobreport.schedule``'s).

Five-field cron (``minute hour day-of-month month day-of-week``) and the aliases
``@hourly``, ``@daily``, ``@weekly``, ``@monthly`` and ``@yearly``, as Debian cron takes
them.
"""

from __future__ import annotations

import os
import re

__all__ = ["ALIASES", "check_expression", "check_timezone"]

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

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
# field name, lowest, highest, names (index + offset = value)
_FIELDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, (_MONTHS, 1)),
    ("day of week", 0, 7, (_DAYS, 0)),
)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_TERM = re.compile(r"(?P<base>\*|[0-9A-Za-z]+(?:-[0-9A-Za-z]+)?)(?:/(?P<step>[0-9]+))?")
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")
#: Where zoneinfo looks for zone files unless PYTHONTZPATH says otherwise.
TZPATH = ("/usr/share/zoneinfo", "/usr/lib/zoneinfo", "/usr/share/lib/zoneinfo",
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


def _field(expression: str, text: str,
           spec: tuple[str, int, int, tuple[list[str], int] | None]) -> set[int]:
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


def _value(expression: str, text: str,
           spec: tuple[str, int, int, tuple[list[str], int] | None], allowed: str) -> int:
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
    """Return the IANA zone name; raise ``ValueError`` unless zoneinfo can convert with it.

    Looks for the zone's file where zoneinfo would, and reads its first four bytes (zone
    data starts with ``TZif``: ``leapseconds`` or ``zone.tab`` sit beside the zones but are
    none); zoneinfo is imported only when there is no such file (it may still find the zone
    in the ``tzdata`` package)."""
    text = str(name).strip()
    if not text or not _ZONE_NAME.fullmatch(text) or ".." in text:
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Europe/Berlin, UTC)")
    env_path = os.environ.get("PYTHONTZPATH")
    for directory in (env_path.split(os.pathsep) if env_path else TZPATH):
        path = os.path.join(directory, text)
        if os.path.isfile(path):  # the file zoneinfo would load, whatever it holds
            if _zone_data(path):
                return text
            raise ValueError(f"{text}: not a time zone ({path} holds no zone data); use an "
                             f"IANA name such as Europe/Berlin, America/New_York or UTC")
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{text}: unknown time zone; use an IANA name such as "
                         f"Europe/Berlin, America/New_York or UTC") from None
    return text


def _zone_data(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"TZif"
    except OSError:
        return False
