"""Delivery of a group's state from the store to its sinks: ``deliver_group`` (one group,
one sink: what every run does at its end) and ``flush`` (every pending group, every sink).

A group leaves a sink's pending set only when the sink accepted its newest state. What the
sink's answer means (delivered, retry later, rejected) is decided in ``jobreport.sinks.base``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from jobreport.config import Config, load_config
from jobreport.errors import NotConfiguredError
from jobreport.records import GroupState, grouping_from_key
from jobreport.sinks.base import Delivered, DeliveryOutcome, HoldsState, Rejected, Sink
from jobreport.store.store import PendingGroup, Store

__all__ = ["FlushResult", "deliver_each", "deliver_group", "flush", "notice_no_sink",
           "warn_undelivered"]

log = logging.getLogger("jobreport")


@dataclass
class FlushResult:
    """What a flush did: deliveries made (one per group and sink), the runs they carried, and the
    deliveries that failed as (group key, reason)."""

    groups: int = 0
    runs: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: Per sink name: (groups delivered, runs they carried, groups not delivered).
    by_sink: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def deliver_group(store: Store, sink: Sink, key: str, *, budget: float,
                  known: tuple[GroupState, int] | None = None,
                  rounds: int = 3) -> DeliveryOutcome:
    """Deliver group ``key``'s complete state (``known``: state and seq just read) to
    ``sink``; repeat while another run changed it meanwhile, so that the delivery that
    lands last carries the newest state. The outcome is recorded in the store."""
    deadline = time.monotonic() + budget
    if (store.created and isinstance(sink, HoldsState) and callable(sink.held_state)
            and not store.knows_delivery(key, sink.name)):
        # a store this process created (a new one, or one whose file was removed) does not
        # know the group's past: take over what the sink holds before replacing it
        held = sink.held_state(grouping_from_key(key), budget=min(1.0, budget))
        if held is not None:
            store.adopt(key, sink.name, held)
            known = None
    outcome: DeliveryOutcome = Delivered()
    for _ in range(rounds):
        state, seq = known if known is not None else store.group_state(key)
        known = None
        outcome = sink.deliver(state, complete=True,
                               budget=max(0.0, deadline - time.monotonic()))
        if isinstance(outcome, Rejected):
            outcome = _without_rejected_families(store, sink, key, (state, seq), outcome,
                                                 deadline=deadline)
            if isinstance(outcome, Delivered):
                return outcome
        if not isinstance(outcome, Delivered):
            store.mark_failed(key, outcome.reason, sink=sink.name)
            return outcome
        if store.mark_delivered(key, seq, sink=sink.name) <= seq:
            break
        if time.monotonic() >= deadline:
            break
    return outcome


def _without_rejected_families(store: Store, sink: Sink, key: str,
                               known: tuple[GroupState, int], rejected: Rejected, *,
                               deadline: float) -> DeliveryOutcome:
    """A sink that names one of the group's own families in its rejection (a type clash
    with another group, a bad quantile) gets one more try without them, so that the last
    success and the outcome still land. The group stays pending, the error recorded."""
    state, seq = known
    if rejected.status != 400:
        return rejected
    # the families the answer points at; when it points at none of them (a proxy's 400, a
    # text without names), all of the group's own families are the suspects
    offending = (_rejected_families(state, rejected.reason)
                 or tuple(sorted({f.name for f in state.custom})))
    if not offending:
        return rejected
    kept = tuple(f for f in state.custom if f.name not in offending)
    last = replace(state.last, custom=tuple(f for f in kept if f in state.last.custom)) \
        if state.last is not None else None
    lean = replace(state, last=last, pushed=tuple(f for f in kept if f in state.pushed))
    outcome = sink.deliver(lean, complete=True, budget=max(0.0, deadline - time.monotonic()))
    if not isinstance(outcome, Delivered):
        return outcome
    # send the refused state once more: the gateway keeps the state just delivered, and
    # records the failure after it, so that JobreportPushFailing still says something is
    # wrong (push_failure_time_seconds > push_time_seconds)
    sink.deliver(state, complete=True, budget=max(0.0, deadline - time.monotonic()))
    log.warning("jobreport: the %s rejected the families %s of job %s; pushed the rest "
                "without them: %s", sink.name, ", ".join(offending), state.job,
                rejected.reason)
    store.mark_delivered(key, seq, sink=sink.name, left_out=offending,
                         problem=f"left out {', '.join(offending)}: {rejected.reason}")
    return Delivered(left_out=offending)


def _rejected_families(state: GroupState, reason: str) -> tuple[str, ...]:
    """The group's own families a 400 is about: named in its text (a type clash), or
    owning the line of the body it points at (``text format parsing error in line N``)."""
    own = {f.name for f in state.custom}
    named = {name for name in own if name in reason}
    line = re.search(r"\bin line (\d+)\b", reason)
    if line is not None:
        from prometheus_client.exposition import generate_latest

        from jobreport.exposition import registry_for

        body = generate_latest(registry_for(state)).decode("utf-8", "replace").splitlines()
        family = None
        for text in body[:int(line.group(1))]:
            if text.startswith(("# HELP ", "# TYPE ")):
                family = text.split(" ", 3)[2]
        if family in own:
            named.add(family)
    return tuple(sorted(named))


def flush(
    config: Config | None = None,
    *,
    store: Store | None = None,
    sinks: list[Sink] | None = None,
    job: str | None = None,
    all_groups: bool = False,
) -> FlushResult:
    """Deliver the whole state of every pending group once to each sink (however many
    runs it has pending), newest state only. ``all_groups`` delivers every group the store
    knows, pending or not (retired ones aside): that restores a Pushgateway that lost its
    data. A sink that is unreachable or refuses the credentials stops its own round at the
    first such answer; the other sinks go on. Raises ``NotConfiguredError`` when no sink is
    configured and ``StoreError`` when the store cannot be read."""
    config = config or load_config()
    store = store or Store(config.db)
    if sinks is None:
        from jobreport.sinks.configured import configured_sinks

        sinks = configured_sinks(config)
    if not sinks:
        raise NotConfiguredError("no Pushgateway configured (set JOBREPORT_GATEWAY)")
    _adopt_markers(store, config)
    result = FlushResult()
    for sink in sinks:
        delivered, runs, failed = 0, 0, 0
        for group in _groups_to_deliver(store, sink, all_groups):
            if job is not None and group.job != job:
                continue
            outcome = deliver_group(store, sink, group.key, budget=config.budget)
            if not isinstance(outcome, Delivered):
                failed += 1
                result.failed.append((group.key, outcome.reason))
                log.warning("jobreport: flush of job %s failed: %s", group.job, outcome.reason)
                if outcome.sink_wide:
                    break  # every other group would fail the same way
                continue
            delivered += 1
            runs += group.pending_runs
        result.by_sink[sink.name] = (delivered, runs, failed)
        result.groups += delivered
        result.runs += runs
    return result


def _groups_to_deliver(store: Store, sink: Sink, all_groups: bool) -> list[PendingGroup]:
    groups = store.pending(sink.name)
    if all_groups:
        pending = {g.key for g in groups}
        groups += [PendingGroup(key, grouping_from_key(key)["job"], grouping_from_key(key), 0)
                   for key in store.group_keys() if key not in pending]
    return groups


def _adopt_markers(store: Store, config: Config) -> None:
    """Runs whose wrapper was killed before the store heard of them (``jobreport run``'s
    markers) are recorded as abandoned first, so that this flush delivers them."""
    import socket

    from jobreport.wrapper.marker import adopt_all

    adopt_all(store, socket.gethostname(), config.grouping)


# --- what the reporter needs around deliver_group ---------------------------------------


def deliver_each(sinks: list[Sink], deliver: Callable[[Sink], bool], budget: float) -> bool:
    """``deliver`` to every sink at the same time, one thread each: a sink that is down
    costs its own budget, not the others' (one sink down delays only that sink), and the
    whole delivery stays within the budget (+1 s for the threads to report)."""
    results: dict[int, bool] = {}

    def work(i: int, sink: Sink) -> None:
        try:
            results[i] = deliver(sink)
        except Exception:  # never let reporting break the job
            from jobreport.reporter import unexpected

            unexpected("the delivery to the %s failed", sink.name)

    threads = [threading.Thread(target=work, args=(i, s), name=f"jobreport-{s.name}",
                                daemon=True) for i, s in enumerate(sinks)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + budget + 1.0
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return all(results.get(i, False) for i in range(len(sinks)))


def warn_undelivered(what: str, job: str, sink: str, outcome: DeliveryOutcome, *,
                     stored: bool) -> None:
    """One warning line for a delivery that did not land, saying what happens next."""
    assert not isinstance(outcome, Delivered)
    if not stored:
        kept = "the run is not kept: the store is unavailable"
    elif isinstance(outcome, Rejected):
        kept = ("the group stays pending with the error recorded; once the cause is fixed, "
                "the next run or `jobreport flush` delivers it")
    else:
        kept = "the run is kept in the store for the next run or `jobreport flush`"
    log.warning("jobreport: %s push of job %s failed: %s; %s", what, job, outcome.reason, kept)


def notice_no_sink(stored: bool) -> None:
    """Once per process: no sink is configured, and where the runs are kept."""
    from jobreport._shared import SHARED

    if not SHARED.notice_once(f"no sink, stored={stored}"):
        return
    if stored:
        log.warning("jobreport: no Pushgateway configured (set JOBREPORT_GATEWAY); runs are "
                    "kept in the store until `jobreport flush`")
    else:
        log.warning("jobreport: no Pushgateway configured and the store is unavailable: "
                    "this run is not recorded anywhere")
