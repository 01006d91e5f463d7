"""The fields of a job's spec: what kinds of value they take and how a value is read.

``Field`` says for one setting its kind, its documented range, its flag and environment
variable, its help, the doors it comes through, its store column and its gauge, and reads
a value as that kind (``Field.convert``: ``ValueError`` naming the range). The list of the
fields itself, and ``JobSpec``, are in ``jobreport.spec``.

Standard library only, and little of it: ``jobreport run`` reads its options with these
before its command starts.
"""

from __future__ import annotations

from collections.abc import Mapping

from jobreport.durations import MAX_SECONDS, duration_seconds, format_duration
from jobreport.sizes import format_ratio, format_size, share, size_bytes

# not typing's: this module is on the path of `jobreport run` before its command starts
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "CLI", "CONFIG", "COUNT", "CRON", "DURATION", "EVERY_DOOR", "FLAG", "METRICS_FILE",
    "OUTPUT_DOORS", "PATHS", "PYTHON", "RATIO", "SIZE", "ZONE", "Field", "SpecError",
    "parse_flag", "parse_labels", "whole_number",
]

#: Kinds of value.
DURATION = "duration"
COUNT = "count"
CRON = "cron"
ZONE = "zone"
FLAG = "flag"
PATHS = "paths"
SIZE = "size"
RATIO = "ratio"

#: The doors a value comes through: ``jobreport run``'s option (and its environment
#: variable), a ``[jobs.NAME]`` key of the config file, a ``job_metrics(...)`` keyword; and
#: for what judges a run's output, a line of ``$JOBREPORT_METRICS_FILE`` named after its
#: gauge (``jobreport_min_size_bytes 1e6``), which ``job_metrics`` inside ``jobreport run``
#: writes too.
CLI = "cli"
CONFIG = "config"
PYTHON = "python"
METRICS_FILE = "metrics file"
EVERY_DOOR = (CLI, CONFIG, PYTHON)
OUTPUT_DOORS = (CLI, CONFIG, PYTHON, METRICS_FILE)

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


class SpecError(ValueError):
    """A value out of its range, or values that contradict each other. ``name`` is the
    field to blame; ``names`` every field involved (a contradiction names two)."""

    def __init__(self, name: str, problem: str, names: tuple[str, ...] = ()) -> None:
        super().__init__(problem)
        self.name = name
        self.problem = problem
        self.names = names or (name,)


class Field:
    """One setting of a job's spec, and how every room shows it.

    ``low``/``high`` bound a duration (seconds) or a count (``above``: the value must be
    more than ``low``, and ``why`` says what ``low`` itself would do); ``column`` is the
    store's column type when each run keeps the value (``real``, ``int``, ``cron``,
    ``zone``); ``gauge`` is (metric without namespace, help, the ``JobSpec`` attribute it
    shows) when a push carries it."""

    __slots__ = ("above", "column", "default", "doors", "env", "flag", "gauge", "help",
                 "high", "kind", "low", "metavar", "name", "why")

    def __init__(self, name: str, kind: str, help: str, *, flag: str, env: str,
                 metavar: str | None = None, low: float = 0, high: float = MAX_SECONDS,
                 above: bool = False, why: str | None = None, default: Any = None,
                 doors: tuple[str, ...] = EVERY_DOOR, column: str | None = None,
                 gauge: tuple[str, str] | tuple[str, str, str] | None = None) -> None:
        self.name = name
        self.kind = kind
        self.help = help
        self.flag = flag
        self.env = env
        self.metavar = metavar or {DURATION: "DURATION", COUNT: "N", CRON: "CRON",
                                   ZONE: "ZONE", PATHS: "PATH", SIZE: "SIZE",
                                   RATIO: "PERCENT"}.get(kind)
        self.low = low
        self.high = high
        self.above = above
        self.why = why
        self.default = default
        self.doors = doors
        self.column = column
        self.gauge = None if gauge is None else (gauge[0], gauge[1],
                                                 gauge[2] if len(gauge) > 2 else name)

    def __repr__(self) -> str:
        return f"Field({self.name})"

    @property
    def range(self) -> str:
        """The documented range, as the docs and every error message write it."""
        if self.kind == DURATION:
            high = "100y" if self.high == MAX_SECONDS else format_duration(self.high)
            if self.above:
                return f"more than {format_duration(self.low)}, at most {high}"
            return f"{format_duration(self.low)} to {high}"
        if self.kind == COUNT:
            return f"{int(self.low)} to {int(self.high)}"
        if self.kind == SIZE:
            return f"{format_size(self.low)} to {format_size(self.high)}"
        if self.kind == RATIO:  # (both ends left out)
            return f"more than {format_ratio(self.low)}, less than {format_ratio(self.high)}"
        return {CRON: "five cron fields or @hourly, @daily, @weekly, @monthly, @yearly",
                ZONE: "an IANA time zone name", FLAG: "on or off",
                PATHS: "file or directory paths"}[self.kind]

    def convert(self, value: object) -> Any:
        """``value`` (text as typed, or a Python or TOML value) as this field's type;
        ``ValueError`` with the reason, naming the range, when it is not one."""
        if self.kind == DURATION:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise ValueError(f"{value!r} is not a duration (use e.g. 90s, 26h, 1h30m)")
            return self._in_range(value, duration_seconds(value))
        if self.kind == COUNT:
            return self._in_range(value, whole_number(value))
        if self.kind == SIZE:  # whole bytes
            return float(round(self._in_range(value, size_bytes(value))))
        if self.kind == RATIO:
            number = share(value)
            if not self.low < number < self.high:  # (NaN is neither)
                hint = (" (a number without % is a share of 1: write 50% or 0.5)"
                        if isinstance(value, str) and "%" not in value and number >= 1
                        else "")
                raise ValueError(f"{value!r} is out of range: {self.range}{hint}")
            return number
        if self.kind == CRON:
            if not isinstance(value, str):
                raise ValueError(f"{value!r} is not a schedule (write e.g. \"0 3 * * 1-5\" "
                                 "or @daily)")
            from jobreport.cron import check_expression  # (only for a schedule)

            return check_expression(value)
        if self.kind == ZONE:
            if not isinstance(value, str):
                raise ValueError(f"{value!r} is not an IANA time zone name (e.g. UTC)")
            from jobreport.cron import check_timezone

            return check_timezone(value)
        if self.kind == FLAG:
            return value if isinstance(value, bool) else parse_flag(str(value))
        if isinstance(value, str):  # PATHS
            return (value,)
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ValueError(f"{value!r} is not a list of paths")

    def _in_range(self, raw: object, number: float) -> Any:
        low_ok = number > self.low if self.above else number >= self.low
        if not low_ok or not number <= self.high:  # (NaN is neither)
            why = f" ({self.why})" if self.why and number == self.low else ""
            raise ValueError(f"{raw!r} is out of range: {self.range}{why}")
        return number


def whole_number(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a whole number")
    if isinstance(value, int):
        return value
    text = value.strip()
    if not (text.isascii() and text.lstrip("-").isdigit()):
        raise ValueError(f"{value!r} is not a whole number")
    return int(text)


def parse_flag(text: str) -> bool:
    """An on/off value as click reads it (``1``/``true``/``yes``/``on``...); ValueError if
    it is neither."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a valid boolean")


def parse_labels(value: object) -> dict[str, str]:
    """Labels from a mapping or from ``k=v,k2=v2`` text, checked; ValueError says why not."""
    if isinstance(value, Mapping):
        pairs = {str(k): v for k, v in value.items()}
    elif isinstance(value, str):
        pairs = {}
        for item in filter(None, (p.strip() for p in value.split(","))):
            name, sep, val = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r} is not k=v (write labels as k=v,k2=v2)")
            pairs[name.strip()] = val
    else:
        raise ValueError(f"{value!r} is not a set of labels (write k=v,k2=v2)")
    from jobreport.errors import InvalidNameError
    from jobreport.names import check_labels

    try:
        return check_labels(pairs)
    except InvalidNameError as e:
        raise ValueError(str(e)) from None
