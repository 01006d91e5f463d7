"""What every sink is, and what a delivery can come to, decided in one place.

A sink receives a group's state (``deliver``) and can remove a group (``remove``); its
``name`` keys its delivered-up-to mark in the store, so that one sink being down delays only
that sink. A delivery comes to one of three outcomes:

- ``Delivered``: the sink holds the state; the store marks it delivered to that sink.
- ``RetryLater``: the peer could not take it now (connection refused or reset, a timeout,
  408, 429, 5xx); the group stays pending and the next run or ``flush`` tries again.
- ``Rejected``: the peer will not take it as it is (any other 4xx, a 3xx, TLS trouble,
  credentials). It is never dropped for that: the group stays pending with the error
  recorded, so that once the cause is fixed the next run or ``flush`` delivers it.

Cheap to import: no network or metrics library here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from jobreport.errors import NotConfiguredError, PushError

if TYPE_CHECKING:
    from jobreport.state import GroupState

__all__ = [
    "RETRY_STATUSES",
    "Delivered",
    "DeliveryOutcome",
    "HoldsState",
    "NotConfiguredError",
    "RecordsFailure",
    "Rejected",
    "RetryLater",
    "Sink",
    "judge_error",
    "judge_status",
]

#: Answers that mean "not now": the request may well succeed later unchanged.
RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
#: Answers about the sink itself rather than one group's state: every other group would get
#: the same one, so a ``flush`` stops at the first.
_SINK_WIDE_STATUSES = frozenset({401, 403, 407})


@dataclass(frozen=True)
class Delivered:
    """The sink holds the state it was given."""

    #: Custom families left out because the sink refused them (named in a warning).
    left_out: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetryLater:
    """The sink could not take the state now; the group stays pending and is retried."""

    reason: str
    status: int | None = None
    #: No answer at all (refused, reset, timeout, unknown host): the sink is unreachable.
    unreachable: bool = False

    @property
    def sink_wide(self) -> bool:
        """Every other group would fare the same (stop a flush here): the sink is
        unreachable, or was unwell for a whole budget."""
        return True


@dataclass(frozen=True)
class Rejected:
    """The sink will not take the state as it is; the group stays pending, error recorded."""

    reason: str
    status: int | None = None

    @property
    def sink_wide(self) -> bool:
        """Credentials, TLS or no answer code at all: not about this group's state."""
        return self.status is None or self.status in _SINK_WIDE_STATUSES


DeliveryOutcome = Delivered | RetryLater | Rejected


def judge_status(status: int | None, reason: str = "") -> DeliveryOutcome:
    """The outcome of an answer with HTTP ``status`` (None: no answer at all).

    2xx is delivered; 408, 429, 5xx and no answer are retried later; every other answer
    (3xx: a proxy or an http→https redirect we must not follow with the body; 4xx: a wrong
    path, a rejected family, credentials) is a rejection that keeps the group pending.
    """
    if status is None:
        return RetryLater(reason, None, unreachable=True)
    if 200 <= status < 300:
        return Delivered()
    if status in RETRY_STATUSES:
        return RetryLater(reason, status)
    return Rejected(reason, status)


def judge_error(error: PushError) -> RetryLater | Rejected:
    """The outcome of a failed exchange, from the ``PushError`` that says how it failed."""
    if error.status is not None:
        judged = judge_status(error.status, str(error))
        assert not isinstance(judged, Delivered)
        return judged
    if error.retryable:
        return RetryLater(str(error), None, unreachable=True)
    return Rejected(str(error), None)  # TLS, a malformed request, no sink configured


@runtime_checkable
class Sink(Protocol):
    """A destination of group states (the Pushgateway; remote write; a textfile dir)."""

    @property
    def name(self) -> str:
        """Stable and unique per configured sink: it keys the delivered mark in the store."""
        ...

    def deliver(self, state: GroupState, *, complete: bool,
                budget: float | None = None) -> DeliveryOutcome:
        """Hand the group's ``state`` to the sink within ``budget`` seconds.

        ``complete``: ``state`` is the group's whole state (from a healthy store), so the
        sink may replace what it holds; otherwise it must only add to it and never lower
        or remove anything (no store: the run knows only itself).
        """
        ...

    def remove(self, grouping: Mapping[str, str], *,
               budget: float | None = None) -> DeliveryOutcome:
        """Remove the group from the sink (``jobreport delete``)."""
        ...


@runtime_checkable
class HoldsState(Protocol):
    """A sink that can say what it holds for a group (the Pushgateway can; a remote-write
    receiver or a textfile directory cannot be asked)."""

    def held_state(self, grouping: Mapping[str, str], *,
             budget: float | None = None) -> GroupState | None:
        """The counters and timestamps the sink holds for the group (None: nothing);
        raises ``PushError`` when it cannot say (retryable: not now)."""
        ...


@runtime_checkable
class RecordsFailure(Protocol):
    """A sink that keeps a record of failed pushes per group (the Pushgateway's
    ``push_failure_time_seconds``), which the alerts read."""

    def record_failure(self, grouping: Mapping[str, str], *,
                       budget: float | None = None) -> None:
        """Have the sink record a failed push for the group without changing what it
        holds (a delivery left families out)."""
        ...


def parse_held_group(group: Mapping[str, object], grouping: dict[str, str],
               namespace: str) -> GroupState | None:
    """The counters and last success/failure of one group of the Pushgateway's
    ``/api/v1/metrics`` answer, as a ``GroupState`` (None when it holds none of them)."""
    from jobreport.state import GroupState

    def samples(name: str) -> list[tuple[dict[str, str], float]]:
        family = group.get(name)
        out = []
        for metric in family.get("metrics", []) if isinstance(family, dict) else []:
            try:
                out.append((dict(metric.get("labels", {})), float(metric["value"])))
            except (AttributeError, KeyError, TypeError, ValueError):
                continue
        return out

    # a counter is a whole number of runs: anything else (negative, NaN, 1e300) held by a
    # gateway is not adopted, so that it can neither lower nor overflow the store's counts
    runs = {labels.get("outcome", ""): int(value)
            for labels, value in samples(f"{namespace}_runs_total")
            if math.isfinite(value) and 0 <= value < 2**53}
    state = GroupState(job=grouping["job"], grouping=grouping, runs_total=runs or None)
    for attr, name in (("last_success", "last_success_timestamp_seconds"),
                       ("last_failure", "last_failure_timestamp_seconds")):
        # (a time far ahead would hold the last success there for good: never overdue)
        found = [v for _, v in samples(f"{namespace}_{name}")
                 if math.isfinite(v) and 0 < v <= time.time() + 86400]
        setattr(state, attr, found[0] if found else None)
    if state.runs_total is None and state.last_success is None and state.last_failure is None:
        return None
    return state
