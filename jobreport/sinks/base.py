"""What every sink is, what else a sink may be able to do, and what a delivery comes to.

A sink receives a group's state (``deliver``) and can remove a group (``remove``); its
``name`` keys its delivered-up-to mark in the store, so that one sink being down delays only
that sink. Every method that talks to a sink takes the ``deadline`` (``time.monotonic()``)
by which it must be over: made once at the entry of a delivery or a command from the
budget it has (``deadline_after``), which a message about a peer that did not answer in
time names (``budget_of``).

Beyond that, a sink declares what it can do by the capabilities it subclasses, and the
commands ask for a capability, never for a sink by name:

- ``SaysWhatItHolds``: what it holds for a group (a new store adopts it);
- ``ListsGroups``: every group it holds (``status``, ``prune``, ``delete``);
- ``RecordsFailure``: a record of a failed delivery that the alerts read;
- ``Probes``: whether it would take a delivery, without delivering (``check``);
- ``HoldsLocally``: whether it holds a group, asked on this host (``delete``).

A delivery comes to one of three results:

- ``Delivered``: the sink holds the state; the store marks it delivered to that sink.
- ``RetryLater``: the sink could not take it now (no connection, no answer in time, 408,
  429, 5xx); the group stays pending and the next run or ``flush`` tries again.
- ``Rejected``: the sink will not take it as it is (another 4xx, a 3xx, TLS trouble,
  credentials, a setting it cannot use). It is never dropped for that: the group stays
  pending with the error recorded, so that once the cause is fixed the next run or
  ``flush`` delivers it.

Cheap to import: no network or metrics library here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from jobreport.errors import DeliveryError

if TYPE_CHECKING:
    from jobreport.held import HeldGroup
    from jobreport.state import GroupState

__all__ = [
    "Delivered",
    "DeliveryResult",
    "HoldsLocally",
    "ListsGroups",
    "Probes",
    "RecordsFailure",
    "Rejected",
    "RetryLater",
    "SaysWhatItHolds",
    "Sink",
    "budget_of",
    "deadline_after",
    "failed",
]

#: Answers about the sink itself rather than one group's state: every other group would get
#: the same one, so a ``flush`` stops at the first.
_SINK_WIDE_STATUSES = frozenset({401, 403, 407})


# The results are NamedTuples (immutable, compared by value; their lengths differ, so no two
# kinds compare equal): a frozen dataclass costs 0.3 ms to make at every run's end.
class Delivered(NamedTuple):
    """The sink holds the state it was given."""

    #: Custom families left out because the sink refused them (named in a warning).
    left_out: tuple[str, ...] = ()


class RetryLater(NamedTuple):
    """The sink could not take the state now; the group stays pending and is retried.

    It comes only after the delivery's retries were spent, or at once when the sink could
    not be reached at all: either way the next group would fare the same now, so a
    ``flush`` stops there for this sink."""

    reason: str
    status: int | None = None
    #: No connection at all (refused, unknown host name, connect timeout).
    unreachable: bool = False


class Rejected(NamedTuple):
    """The sink will not take the state as it is; the group stays pending, error recorded."""

    reason: str
    status: int | None = None

    @property
    def sink_wide(self) -> bool:
        """Credentials, TLS, a setting, or no answer code at all: not about this group's
        state, so every other group would be rejected the same way."""
        return self.status is None or self.status in _SINK_WIDE_STATUSES


#: What a delivery (or a removal) comes to.
DeliveryResult = Delivered | RetryLater | Rejected


def failed(error: DeliveryError) -> RetryLater | Rejected:
    """The result of a delivery that ended with ``error``: retried later when the sink may
    well take it unchanged later, else rejected (kept pending with the error)."""
    if error.retryable:
        return RetryLater(str(error), error.status, unreachable=error.unreachable)
    return Rejected(str(error), error.status)


@runtime_checkable
class Sink(Protocol):
    """A destination of group states (the Pushgateway, a remote-write receiver, a textfile
    directory)."""

    @property
    def name(self) -> str:
        """Stable and unique per configured sink: it keys the delivered mark in the store."""
        ...

    def deliver(self, state: GroupState, *, complete: bool, deadline: float) -> DeliveryResult:
        """Hand the group's ``state`` to the sink by ``deadline``.

        ``complete``: ``state`` is the group's whole state (from a healthy store), so the
        sink may replace what it holds; otherwise it must only add to it and never lower
        or remove anything (no store: the run knows only itself).
        """
        ...

    def remove(self, grouping: Mapping[str, str], *, deadline: float) -> DeliveryResult:
        """Remove the group from the sink (``jobreport delete``, ``prune``)."""
        ...


@runtime_checkable
class SaysWhatItHolds(Protocol):
    """A sink that can say what it holds for a group (the Pushgateway can; a remote-write
    receiver or a textfile directory cannot be asked)."""

    def held(self, grouping: Mapping[str, str], *, deadline: float) -> HeldGroup | None:
        """What the sink holds for the group: its gauges and counters (None: nothing),
        by ``deadline``; raises ``DeliveryError`` when it cannot say (retryable: not
        now)."""
        ...


@runtime_checkable
class ListsGroups(Protocol):
    """A sink that can list every group it holds, with what it holds of each."""

    def groups(self, *, deadline: float,
               keep: Collection[str] | None = None) -> list[HeldGroup]:
        """Every group the sink holds (another pusher's too), each with the gauges of
        jobreport's namespace named in ``keep`` (by their name without the namespace;
        None: every one); raises ``DeliveryError`` when it cannot say."""
        ...


@runtime_checkable
class RecordsFailure(Protocol):
    """A sink that keeps a record of failed deliveries per group (the Pushgateway's
    ``push_failure_time_seconds``), which the alerts read."""

    def record_failure(self, grouping: Mapping[str, str], *, deadline: float) -> None:
        """Have the sink record a failed delivery for the group without changing what it
        holds (a delivery left families out). Never raises."""
        ...


@runtime_checkable
class Probes(Protocol):
    """A sink that can be tried without delivering anything (``jobreport check``)."""

    @property
    def where(self) -> str:
        """What and where it is, as every message shows it (``the Pushgateway at URL``,
        credentials masked; ``the textfile directory DIR``)."""
        ...

    def probe(self, *, deadline: float) -> str:
        """What answered (e.g. ``Pushgateway 1.5.1``) when the sink would take a
        delivery; raises ``DeliveryError`` saying why not."""
        ...


@runtime_checkable
class HoldsLocally(Protocol):
    """A sink whose groups live on this host (a textfile directory): whether it holds one
    is answered without asking anybody."""

    def holds(self, grouping: Mapping[str, str]) -> bool:
        """Whether the sink holds the group."""
        ...


# --- deadlines and the budgets they were made from -------------------------------------------

_budgets: dict[float, float] = {}
_budgets_lock = threading.Lock()
_KEPT = 256


def deadline_after(budget: float) -> float:
    """The deadline (``time.monotonic()``) ``budget`` seconds from now, made once at the
    entry of a delivery or a command; ``budget_of`` tells it again."""
    deadline = time.monotonic() + budget
    with _budgets_lock:
        _budgets[deadline] = budget
        while len(_budgets) > _KEPT:  # the oldest deadlines are long past
            del _budgets[next(iter(_budgets))]
    return deadline


def budget_of(deadline: float) -> float | None:
    """The budget ``deadline`` was made from by ``deadline_after`` (None: made otherwise)."""
    with _budgets_lock:
        return _budgets.get(deadline)
