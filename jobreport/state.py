"""What a group holds: its whole state at one moment (``GroupState``), derived from the
store, and the canonical key of a grouping. What a sink holds, read back, is
``jobreport.held.HeldGroup``.

Pure data, cheap to import: the exposition (``jobreport.exposition``) turns a
``GroupState`` into the body of a push.
"""

import json
from collections.abc import Mapping
from typing import NamedTuple

from jobreport.result import CustomFamily, RunResult
from jobreport.spec import JobSpec

__all__ = ["GroupState", "group_key", "grouping_from_key"]


# A NamedTuple (changed with ``_replace``), not a dataclass: made at every run's end, and
# ``dataclasses`` (with the ``inspect`` it imports) cost a run about 6 ms.
class GroupState(NamedTuple):
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
    #: Deadlines from the newest run's schedule (``held_to``).
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

    def held_to(self, spec: JobSpec | None, *, known: bool = True) -> "GroupState":
        """The group held to ``spec`` (its newest run's): its thresholds, and the deadlines
        its schedule sets after the state's last success, start and end. ``known=False``:
        the state is one run's alone (no store), whose success deadline only that run can
        give when it succeeded: the last success otherwise is the history's."""
        if spec is None or not spec.schedule:
            return self._replace(spec=spec)
        from jobreport.schedule import scheduled_deadlines

        due = scheduled_deadlines(
            spec.schedule, spec.timezone, last_success=self.last_success,
            last_start=self.last_start,
            last_end=self.last.ended if self.last is not None else None,
            max_runtime=spec.max_runtime, grace=spec.grace)
        if due is None:
            return self._replace(spec=spec)
        if known or self.last_success is not None:
            return self._replace(spec=spec, start_deadline=due.start, success_deadline=due.success)
        return self._replace(spec=spec, start_deadline=due.start)


def group_key(grouping: Mapping[str, str]) -> str:
    """A canonical text key for a grouping (job included): sorted JSON."""
    return json.dumps(dict(sorted(grouping.items())), ensure_ascii=False, separators=(",", ":"))


def grouping_from_key(key: str) -> dict[str, str]:
    """The grouping ``group_key`` wrote."""
    return {str(k): str(v) for k, v in json.loads(key).items()}
