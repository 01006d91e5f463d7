"""Prometheus-style durations: ``90s``, ``26h``, ``1h30m``, ``1.5`` (seconds)."""

from __future__ import annotations

import math
import re

__all__ = ["MAX_SECONDS", "SETTING_RANGES", "duration_seconds", "format_duration",
           "parse_duration", "setting_range", "setting_seconds"]

#: The longest duration accepted: 100 years. Longer ones are surely a typo, and would
#: overflow the timers that wait for them (threading's limit is about 292 years).
MAX_SECONDS = 100 * 31536000.0

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}
# compiled on first use (re's cache), not at import: most runs parse no duration
_PART = r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)"
_NUMBER = r"\d+(?:\.\d+)?"


def parse_duration(value: str | float | int) -> float:
    """Return ``value`` in seconds; raise ``ValueError`` with a hint when it is not a duration.

    Accepts a number of seconds (``30``, ``2.5``) or units in descending order as Prometheus
    writes them (``90s``, ``26h``, ``1h30m``, ``500ms``, ``2d``), from 0 up to
    ``MAX_SECONDS``. (A job's settings have their own ranges: ``jobreport.spec``.)
    """
    seconds = duration_seconds(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration: it must be finite and not negative")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{value!r} is too long for a duration (at most 100y)")
    return seconds


def duration_seconds(value: str | float | int) -> float:
    """``value`` in seconds, whatever its size (``parse_duration`` holds it to a range);
    ``ValueError`` when it is not written as a duration."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    return float(text) if re.fullmatch(_NUMBER, text) else _parse_units(text)


def _parse_units(text: str) -> float:
    hint = f"{text!r} is not a duration (use e.g. 90s, 26h, 1h30m or a number of seconds)"
    pos = 0
    total = 0.0
    last_rank = -1
    order = list(_UNITS)[::-1]  # y, w, d, h, m, s, ms: each unit at most once, largest first
    if not text:
        raise ValueError(hint)
    while pos < len(text):
        match = re.compile(_PART).match(text, pos)
        if match is None:
            raise ValueError(hint)
        number, unit = match.groups()
        rank = order.index(unit)
        if rank <= last_rank:
            raise ValueError(hint)
        last_rank = rank
        total += float(number) * _UNITS[unit]
        pos = match.end()
    return total


def format_duration(seconds: float) -> str:
    """Format seconds the way Prometheus would write them, e.g. ``1h30m`` or ``2.5s``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms" if seconds else "0s"
    parts = []
    rest = seconds
    for unit in ("d", "h", "m"):
        n, rest = divmod(rest, _UNITS[unit])
        if n:
            parts.append(f"{int(n)}{unit}")
    if rest:
        parts.append(f"{rest:g}s")
    return "".join(parts)


#: The documented range of each duration setting (docs/configuration.md), as (low, high,
#: above: more than low): a per-request timeout or a delivery's budget beyond an hour would
#: hold a cron job for nothing, and the start push must never hold a job back long.
SETTING_RANGES: dict[str, tuple[float, float, bool]] = {
    "timeout": (0.0, 3600.0, True),
    "budget": (0.0, 3600.0, False),
    "start_budget": (0.0, 60.0, False),
}


def setting_range(name: str) -> str:
    """The range of setting ``name`` as the docs and every message write it."""
    low, high, above = SETTING_RANGES[name]
    if above:
        return f"more than {format_duration(low)}, at most {format_duration(high)}"
    return f"{format_duration(low)} to {format_duration(high)}"


def setting_seconds(name: str, value: str | float | int) -> float:
    """Setting ``name`` (``timeout``, ``budget``, ``start_budget``) in seconds, held to its
    range; ``ValueError`` names the range."""
    seconds = parse_duration(value)
    low, high, above = SETTING_RANGES[name]
    if (seconds <= low if above else seconds < low) or seconds > high:
        raise ValueError(f"{value!r} is out of range: {setting_range(name)}")
    return seconds
