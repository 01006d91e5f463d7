"""Numbers a user hands jobreport outside a job's spec, each held to its range at the door:
sample values written as text (``jobreport push``, ``$JOBREPORT_METRICS_FILE``), the run's
own figures (its size and items), a block's exit code; and what the store's columns can
hold, so that no number ever loses a run.

Standard library only, and cheap.
"""

from __future__ import annotations

import math
import re

__all__ = ["INT_COLUMN", "MAX_FIGURE", "SETTING_LIMITS", "column_int", "column_real",
           "exit_code", "figure", "sample_value", "setting_whole", "shown"]

#: The largest size (bytes) or item count a run may report: what a file system's offsets
#: hold (2^63). Larger ones are surely a unit mistake.
MAX_FIGURE = float(2**63)
#: What every store's INTEGER column holds (PostgreSQL's is 32-bit).
INT_COLUMN = (-(2**31), 2**31 - 1)

# compiled on first use (re's cache), not at import: few runs read a sample value
_INFINITY = r"(?i)[+-]?(?:inf|infinity)"


def sample_value(text: str) -> float:
    """A sample value written as text: a number, or ``+Inf``, ``-Inf``, ``NaN`` spelled out.
    ``ValueError`` says why not; a number beyond a 64-bit float (``1e400``) is out of range
    rather than silently infinite."""
    word = text.strip()
    try:
        value = float(word)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if math.isinf(value) and not re.fullmatch(_INFINITY, word):
        raise ValueError(f"{text!r} is out of range: a sample value is a 64-bit float, "
                         "from -1.8e308 to 1.8e308 (write +Inf or -Inf for infinity)")
    return value


def figure(name: str, value: object) -> float:
    """The run's ``size`` (bytes) or ``items`` as a float, held to its range: a finite
    number from 0 to 2^63; ``ValueError`` says why not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} {value!r} is not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not (math.isfinite(number) and 0 <= number <= MAX_FIGURE):
        raise ValueError(f"{name} {shown(value)} is out of range: 0 to 2^63 (9.2e18)"
                         + (" (a count of what the run produced cannot be negative)"
                            if number < 0 else ""))
    return number


def shown(value: object) -> str:
    """``value`` for a message: a number of a hundred digits is not read, it is counted."""
    text = repr(value)
    return text if len(text) <= 30 else f"{text[:12]}... ({len(text)} digits)"


def exit_code(code: int) -> int:
    """A block's exit code as the store can hold it: one beyond 32 bits is recorded as 255,
    as the process itself would exit with a code it cannot hand to the system."""
    low, high = INT_COLUMN
    return code if low <= code <= high else 255


def column_int(value: object) -> object:
    """``value`` for an INTEGER column: an int beyond what every store holds is brought to
    the nearest bound (a run is never lost to a number)."""
    if isinstance(value, int) and not isinstance(value, bool):
        low, high = INT_COLUMN
        return min(max(value, low), high)
    return value


def column_real(value: object) -> object:
    """``value`` for a REAL column: an int too large for a float is an infinity (a run is
    never lost to a number)."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return value


#: The whole-number settings (what each group of the store keeps, issue 23) and their most:
#: 100 years; a billion runs of a group. 0 keeps everything.
SETTING_LIMITS: dict[str, tuple[int, str]] = {
    "keep_days": (36500, "days"),
    "keep_runs": (1_000_000_000, "runs"),
}


def setting_whole(name: str, value: object) -> int:
    """Setting ``name`` (``keep_days``, ``keep_runs``): a whole number from 0 (no limit) to
    its most; ``ValueError`` names the range."""
    high, what = SETTING_LIMITS[name]
    text = str(value).strip()
    if isinstance(value, bool) or not (isinstance(value, int) or (
            text.isascii() and text.isdigit())):
        raise ValueError(f"{value!r} is not a whole number of {what} (0 keeps them all)")
    number = int(text)
    if not 0 <= number <= high:
        raise ValueError(f"{value!r} is out of range: 0 to {high} (0 keeps them all)")
    return number
