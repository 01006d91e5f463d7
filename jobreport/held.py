"""What a sink holds for one group, read back (``HeldGroup``): what a new store adopts,
``status`` judges and ``prune`` ages. Apart from ``state`` because only a reading of a
sink makes one: a run that reads nothing back does not build its class."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["HeldGroup"]

#: The most runs a counter read back from a sink may hold (beyond, a float is not whole).
_MOST_RUNS = 2**53
#: Beyond any real size or duration (NaN and infinities are not below it either).
_MOST_AMOUNT = 1e18
#: How far ahead of this host's clock a timestamp read back may be (clocks differ a little;
#: a time far ahead would hold a last success there for good: never overdue).
_AHEAD = 86400.0



@dataclass(frozen=True)
class HeldGroup:
    """What a sink holds for one group, read back: a new store adopts it before its first
    push of the group (``Store.adopt``), ``status`` judges it, ``prune`` ages it. The gauges
    of jobreport's namespace that have no labels of their own (those the reader asked for),
    by their name without the namespace (``last_success_timestamp_seconds``,
    ``consecutive_failures``, ``typical_size_bytes`` ...), the runs counted per outcome,
    the last outcome, whether jobreport pushed the group (it holds ``<namespace>_info``),
    and the sink's own record of its last push and last failed push.

    A sink may hold anything another pusher put there, so the values a new store takes
    over are read through the methods below, which give None for what cannot be taken over
    as it is (``status`` shows an odd value as a problem)."""

    #: The group's grouping labels, job included.
    grouping: Mapping[str, str]
    gauges: Mapping[str, float] = field(default_factory=dict)
    #: ``runs_total`` by its ``outcome`` label.
    runs_total: Mapping[str, float] = field(default_factory=dict)
    #: The outcome whose ``last_outcome`` sample is 1 (None: none is).
    last_outcome: str | None = None
    #: It holds ``<namespace>_info``: a group of jobreport's (not another pusher's).
    jobreport: bool = False
    #: The Pushgateway's ``push_time_seconds`` and ``push_failure_time_seconds``.
    push_time: float | None = None
    push_failure_time: float | None = None

    @property
    def job(self) -> str:
        return self.grouping.get("job", "")

    def runs(self) -> dict[str, int]:
        """The counters, each a whole number of runs (a negative, fractional, not finite or
        absurd one is left out: it could lower or overflow the store's counts)."""
        return {outcome: int(n) for outcome, n in self.runs_total.items()
                if _whole(n)}

    def count(self, name: str) -> int | None:
        """Gauge ``name`` as a whole number (a failure streak), or None."""
        value = self.gauges.get(name)
        return int(value) if value is not None and _whole(value) else None

    def amount(self, name: str) -> float | None:
        """Gauge ``name`` as an amount (a size, a duration): not negative and short of any
        real one (below 10^18), or None."""
        value = self.gauges.get(name)
        return value if value is not None and 0 <= value < _MOST_AMOUNT else None

    def timestamp(self, name: str) -> float | None:
        """Gauge ``name`` as a Unix time that has passed (give or take a day), or None."""
        value = self.gauges.get(name)
        if value is None or not math.isfinite(value) or not 0 < value <= time.time() + _AHEAD:
            return None
        return value

    @property
    def empty(self) -> bool:
        """Nothing of jobreport's is held."""
        return not self.gauges and not self.runs_total


def _whole(value: float) -> bool:
    return math.isfinite(value) and 0 <= value < _MOST_RUNS and value == int(value)
