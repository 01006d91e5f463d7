"""One group's state to one sink (``deliver_group`` from the store, ``deliver_state`` as it
is), the families a sink refuses left out, and every sink at once (``deliver_each``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from jobreport.errors import DeliveryError
from jobreport.logger import log, notice_once, unexpected
from jobreport.names import DEFAULT_NAMESPACE
from jobreport.sinks.base import (
    Delivered,
    DeliveryResult,
    RecordsFailure,
    Rejected,
    RetryLater,
    SaysWhatItHolds,
    Sink,
    deadline_after,
    failed,
)
from jobreport.state import GroupState, group_key, grouping_from_key
from jobreport.store.store import Store

__all__ = ["deliver_each", "deliver_group", "deliver_state"]

#: How long a sink is asked to record a failed delivery.
RECORD_TRY = 1.0
#: Rounds of a delivery whose group another run changed meanwhile (the last one carries the
#: newest state; more would only chase a group that changes all the time).
ROUNDS = 3


def deliver_group(store: Store, sink: Sink, key: str, *, budget: float,
                  known: tuple[GroupState, int] | None = None,
                  namespace: str = DEFAULT_NAMESPACE) -> DeliveryResult:
    """Deliver group ``key``'s complete state (``known``: state and seq just read) to
    ``sink`` within ``budget`` seconds; repeat while another run changed it meanwhile, so
    that the delivery that lands last carries the newest state. A store many hosts share
    lets one delivery of the group run at a time (``Store.delivering``). The result is
    recorded in the store."""
    deadline = deadline_after(budget)
    with store.delivering(key, sink.name, deadline) as held:
        if not held:
            # another host delivers the group now: its next round carries our change
            return RetryLater(f"another process was delivering job "
                              f"{grouping_from_key(key)['job']} to the {sink.name} for the "
                              "whole budget")
        mark = store.delivered_seq(key, sink.name)  # (None: never delivered there)
        if known is not None and (mark or 0) >= known[1]:
            # another process delivered the group, this change with it, while we waited
            return Delivered()
        return _deliver_rounds(store, sink, key, deadline, known=known, namespace=namespace,
                               first=mark is None)


def _deliver_rounds(store: Store, sink: Sink, key: str, deadline: float, *,
                    known: tuple[GroupState, int] | None, namespace: str,
                    first: bool) -> DeliveryResult:
    if isinstance(sink, SaysWhatItHolds) and first and store.fresh:
        known = None  # what the group holds after the adoption (here or elsewhere)
        try:
            _adopt(store, sink, sink.name, key, deadline)
        except DeliveryError as e:
            # no answer: a push now could lower what the sink holds; the group stays
            # pending and the next delivery asks again
            return failed(e)
    result: DeliveryResult = Delivered()
    for _ in range(ROUNDS):
        state, seq = known if known is not None else store.group_state(key)
        known = None
        result, problem = _deliver(sink, state, complete=True, deadline=deadline,
                                   namespace=namespace)
        if not isinstance(result, Delivered):
            store.mark_failed(key, result.reason, sink=sink.name, seq=seq)
            return result
        if result.left_out:
            # delivered without some families: the group stays pending, the error recorded
            store.mark_delivered(key, seq, sink=sink.name, left_out=result.left_out,
                                 problem=problem)
            return result
        if store.mark_delivered(key, seq, sink=sink.name) <= seq:
            break
        if time.monotonic() >= deadline:
            break
    return result


def _adopt(store: Store, sink: SaysWhatItHolds, name: str, key: str,
           deadline: float) -> bool:
    """A new store (a new install, a container's, a pod's) does not know the group's past:
    take over what the sink holds before replacing it, exactly once (``Store.adopt``). The
    sink is read without the store's lock, by the delivery's deadline: a gateway that is
    slow or holds many groups costs this delivery's budget, never another run's time. A
    sink that is unwell (no answer, 5xx) is asked again by the deadline (the one retry
    policy, inside ``held``); an unreachable one is not. Returns whether it took over what
    the sink holds; raises a retryable ``DeliveryError`` (nothing taken over, no mark: the
    next delivery asks again). A sink that will not say (a permanent error) counts as
    holding nothing."""
    try:
        held = sink.held(grouping_from_key(key), deadline=deadline)
    except DeliveryError as e:
        if e.retryable:
            raise
        held = None
    return store.adopt(key, name, held)


def deliver_state(sink: Sink, state: GroupState, *, complete: bool, budget: float,
                  namespace: str = DEFAULT_NAMESPACE) -> DeliveryResult:
    """Deliver ``state`` as it is (no store: ``complete=False``) within ``budget`` seconds,
    leaving out the families no push should carry or the sink refuses, as
    ``deliver_group`` does."""
    return _deliver(sink, state, complete=complete, deadline=deadline_after(budget),
                    namespace=namespace)[0]


def _deliver(sink: Sink, state: GroupState, *, complete: bool, deadline: float,
             namespace: str) -> tuple[DeliveryResult, str | None]:
    """One delivery of ``state``, and what was left out of it (None: nothing).

    A family that breaks the text format's rules never reaches the sink
    (``sinks._families``); a sink that still refuses the body with a 400 that names or
    points at some of the group's own families (a type clash with another group, a line it
    cannot parse) gets one more try without them, so that the last success and the outcome
    land. Either way a sink that records failures is asked to (the Pushgateway's
    ``push_failure_time_seconds``, which ``JobreportPushFailing`` reads), and one warning
    names the families."""
    if not state.custom:  # no family of the job's own: nothing to check or leave out
        return sink.deliver(state, complete=complete, deadline=deadline), None
    from jobreport.sinks._families import faults, listing, pointed_at, without

    # (a push of chosen families only carries none of the job's own)
    bad = faults(state, namespace) if state.only is None else {}
    sent = without(state, set(bad))
    result = sink.deliver(sent, complete=complete, deadline=deadline)
    refused: tuple[str, ...] = ()
    rejected = ""
    if isinstance(result, Rejected) and result.status == 400:
        # the families the answer points at; when it points at none of them (a proxy's
        # 400, a text without names), all of the group's own families are the suspects
        rejected = result.reason
        refused = (pointed_at(sent, rejected, namespace)
                   or tuple(sorted({f.name for f in sent.custom})))
        if refused:
            result = sink.deliver(without(sent, refused), complete=complete,
                                  deadline=deadline)
            if not isinstance(result, Delivered):
                return result, None
            log.warning("jobreport: the %s rejected the families %s of job %s; pushed the "
                        "rest without them: %s", sink.name, ", ".join(refused), state.job,
                        rejected)
    if not isinstance(result, Delivered) or not (bad or refused):
        return result, None
    if bad and notice_once(f"left out {group_key(state.grouping)} {sorted(bad)}"):
        # once per process (a start push, the heartbeats and the end push carry them all)
        log.warning("jobreport: left out the families of job %s that no push may carry, "
                    "and pushed the rest: %s", state.job, listing(bad))
    if isinstance(sink, RecordsFailure):
        sink.record_failure(state.grouping,
                            deadline=min(deadline, time.monotonic() + RECORD_TRY))
    left_out = tuple(sorted(set(bad) | set(refused)))
    problem = "; ".join([*([f"left out {listing(bad)}"] if bad else []),
                         *([f"left out {', '.join(refused)}: {rejected}"] if refused else [])])
    return Delivered(left_out=left_out), problem


def deliver_each(sinks: list[Sink], deliver: Callable[[Sink], bool], budget: float) -> bool:
    """``deliver`` to every sink at the same time, one thread each: a sink that is down
    costs its own budget, not the others' (one sink down delays only that sink), and the
    whole delivery stays within the budget (+1 s for the threads to report)."""
    results: dict[int, bool] = {}

    def work(i: int, sink: Sink) -> None:
        try:
            results[i] = deliver(sink)
        except Exception:  # never let reporting break the job
            unexpected("the delivery to the %s failed", sink.name)

    threads = [threading.Thread(target=work, args=(i, s), name=f"jobreport-{s.name}",
                                daemon=True) for i, s in enumerate(sinks)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + budget + 1.0
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return all(results.get(i, False) for i in range(len(sinks)))
