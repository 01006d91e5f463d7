"""What a group holds: its whole state at one moment (``GroupState``), derived from the
store, and the canonical key of a grouping.

Pure data, cheap to import: the exposition (``jobreport.exposition``) turns a
``GroupState`` into the body of a push.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from jobreport.result import CustomFamily, RunResult
from jobreport.spec import JobSpec

__all__ = ["GroupState", "HeldGroup", "group_key", "grouping_from_key"]


@dataclass
class GroupState:
    """The whole known state of one group (job + grouping labels) at one moment.

    ``None`` means "unknown here": the push leaves that metric out (used when the store is
    unavailable; such a push is a POST, so the gateway keeps what it had).
    """

    job: str
    grouping: dict[str, str]
    running: int = 0
    last_start: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    #: The result of the newest run that ended (skipped runs aside).
    last: RunResult | None = None
    runs_total: dict[str, int] | None = None
    last_heartbeat: float | None = None
    #: What the newest run is held to: its thresholds are pushed (``JobSpec.gauges``).
    spec: JobSpec | None = None
    #: Deadlines from the newest run's schedule (``hold_to``).
    success_deadline: float | None = None
    start_deadline: float | None = None
    #: Unsuccessful runs since the last success (skipped runs do not count).
    consecutive_failures: int | None = None
    #: Medians of the last 10 successful runs' sizes (of those that reported one) and
    #: durations: what ``max_shrink`` compares a run's size with, and the dashboard shows.
    typical_size: float | None = None
    typical_duration: float | None = None
    #: What ``jobreport push`` gave the group (kept in the store).
    pushed: tuple[CustomFamily, ...] = ()
    #: Only these families go out (used for start and heartbeat pushes); None: all known.
    only: frozenset[str] | None = None

    @property
    def custom(self) -> tuple[CustomFamily, ...]:
        """The families of the group's own: pushed values, then the last run's families
        (which win over a pushed family of the same name)."""
        mine = self.last.custom if self.last is not None else ()
        names = {f.name for f in mine}
        return tuple(f for f in self.pushed if f.name not in names) + mine

    def hold_to(self, spec: JobSpec | None, *, known: bool = True) -> None:
        """Hold the group to ``spec`` (its newest run's): its thresholds, and the deadlines
        its schedule sets after the state's last success, start and end. ``known=False``:
        the state is one run's alone (no store), whose success deadline only that run can
        give when it succeeded: the last success otherwise is the history's."""
        self.spec = spec
        if spec is None or not spec.schedule:
            return
        from jobreport.schedule import scheduled_deadlines

        due = scheduled_deadlines(
            spec.schedule, spec.timezone, last_success=self.last_success,
            last_start=self.last_start,
            last_end=self.last.ended if self.last is not None else None,
            max_runtime=spec.max_runtime, grace=spec.grace)
        if due is not None:
            self.start_deadline = due.start
            if known or self.last_success is not None:
                self.success_deadline = due.success


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


def group_key(grouping: Mapping[str, str]) -> str:
    """A canonical text key for a grouping (job included): sorted JSON."""
    return json.dumps(dict(sorted(grouping.items())), ensure_ascii=False, separators=(",", ":"))


def grouping_from_key(key: str) -> dict[str, str]:
    """The grouping ``group_key`` wrote."""
    return {str(k): str(v) for k, v in json.loads(key).items()}
