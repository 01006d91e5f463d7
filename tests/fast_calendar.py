"""A calendar that runs faster than the clock, for tests of schedules end to end (cron has
minute resolution; a test cannot wait for hours).

``scaled(real, virtual, factor)`` is a function of the shape of ``jobreport.schedule.
fire_times``: Unix time ``real`` is ``virtual`` on the calendar, which runs ``factor`` times
faster than the clock. The fire times are still cronsim's (``cron_fires``); only the time
line they are read on is compressed.

``python -m tests.fast_calendar REAL VIRTUAL FACTOR ARGS...`` runs ``jobreport ARGS...`` (a real
process, the console script's own path) with that calendar put in place first: jobreport
itself has no hook for it, only the seam ``jobreport.schedule.fire_times``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from jobreport import schedule
from jobreport.schedule import Schedule, cron_fires

__all__ = ["launcher", "scaled"]


def scaled(real: float, virtual: float,
           factor: float) -> Callable[[Schedule, float, int], list[float]]:
    """Fire times on a calendar ``factor`` times as fast as the clock."""
    def fires(job: Schedule, after: float, count: int) -> list[float]:
        found = cron_fires(job, virtual + (after - real) * factor, count)
        return [real + (when - virtual) / factor for when in found]

    return fires


def launcher(real: float, virtual: float, factor: float) -> list[str]:
    """The start of a command line that runs ``jobreport`` on that calendar."""
    return [sys.executable, "-m", "tests.fast_calendar", repr(real), repr(virtual), repr(factor)]


if __name__ == "__main__":
    real, virtual, factor = (float(v) for v in sys.argv[1:4])
    schedule.fire_times = scaled(real, virtual, factor)
    sys.argv = ["jobreport", *sys.argv[4:]]
    from jobreport.cli import main

    main()
