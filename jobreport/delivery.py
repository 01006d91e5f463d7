"""Delivery of a group's state from the store to its sinks: ``deliver_group`` (one group,
one sink: what every run does at its end) and ``flush`` (every pending group, every sink).

A group leaves a sink's pending set only when the sink accepted its newest state. What the
sink's answer means (delivered, retry later, rejected) is decided in ``jobreport.sinks.base``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from jobreport.config import Config, load_config
from jobreport.errors import NotConfiguredError, PushError
from jobreport.names import DEFAULT_NAMESPACE
from jobreport.sinks.base import (
    Delivered,
    DeliveryOutcome,
    HoldsState,
    RecordsFailure,
    Rejected,
    RetryLater,
    Sink,
    judge_error,
)
from jobreport.state import GroupState, group_key, grouping_from_key
from jobreport.store.store import PendingGroup, Store

__all__ = ["FlushResult", "deliver_each", "deliver_group", "deliver_state", "flush",
           "notice_no_sink", "warn_undelivered"]

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
                  known: tuple[GroupState, int] | None = None, rounds: int = 3,
                  namespace: str = DEFAULT_NAMESPACE) -> DeliveryOutcome:
    """Deliver group ``key``'s complete state (``known``: state and seq just read) to
    ``sink``; repeat while another run changed it meanwhile, so that the delivery that
    lands last carries the newest state. The outcome is recorded in the store."""
    deadline = time.monotonic() + budget
    if (isinstance(sink, HoldsState) and callable(sink.held_state) and store.fresh
            and not store.knows_delivery(key, sink.name)):
        # a new store (a new install, or one whose file was removed) does not know the
        # group's past: take over what the sink holds before replacing it, exactly once
        # (under the store's lock: see Store.adopt)
        holder = sink

        def held() -> GroupState | None:
            return holder.held_state(grouping_from_key(key), budget=min(1.0, budget))

        while True:
            try:
                if store.adopt(key, sink.name, held):
                    known = None
                break
            except PushError as e:
                # no answer: a push now could lower what the sink holds. A sink that is
                # unwell (5xx) is asked again within the budget (each try holds the
                # store's lock for at most a second); an unreachable one, or the budget
                # spent, keeps the group pending and the next delivery asks again
                judged = judge_error(e)
                if (not isinstance(judged, RetryLater) or judged.unreachable
                        or time.monotonic() + 0.2 >= deadline):
                    return judged
                time.sleep(0.1)
    outcome: DeliveryOutcome = Delivered()
    for _ in range(rounds):
        state, seq = known if known is not None else store.group_state(key)
        known = None
        outcome, problem = _deliver_state(sink, state, complete=True, deadline=deadline,
                                          namespace=namespace)
        if not isinstance(outcome, Delivered):
            store.mark_failed(key, outcome.reason, sink=sink.name)
            return outcome
        if outcome.left_out:
            # delivered without some families: the group stays pending, the error recorded
            store.mark_delivered(key, seq, sink=sink.name, left_out=outcome.left_out,
                                 problem=problem)
            return outcome
        if store.mark_delivered(key, seq, sink=sink.name) <= seq:
            break
        if time.monotonic() >= deadline:
            break
    return outcome


def deliver_state(sink: Sink, state: GroupState, *, complete: bool, budget: float,
                  namespace: str = DEFAULT_NAMESPACE) -> DeliveryOutcome:
    """Deliver ``state`` as it is (no store: ``complete=False``), leaving out the families
    no push should carry or the sink refuses, as ``deliver_group`` does."""
    return _deliver_state(sink, state, complete=complete,
                          deadline=time.monotonic() + budget, namespace=namespace)[0]


def _deliver_state(sink: Sink, state: GroupState, *, complete: bool, deadline: float,
                   namespace: str) -> tuple[DeliveryOutcome, str | None]:
    """One delivery of ``state``, and what was left out of it (None: nothing).

    A family that breaks the text format's rules never reaches the sink
    (``sinks._families``); a sink that still refuses the body with a 400 that names or
    points at some of the group's own families (a type clash with another group, a line it
    cannot parse) gets one more try without them, so that the last success and the outcome
    land. Either way the sink is asked to record the failure (the Pushgateway's
    ``push_failure_time_seconds``, which ``JobreportPushFailing`` reads), and one warning
    names the families."""
    from jobreport.sinks._families import faults, listing, pointed_at, without

    def remaining() -> float:
        return max(0.0, deadline - time.monotonic())

    # (a push of chosen families only carries none of the job's own)
    bad = faults(state, namespace) if state.only is None else {}
    sent = without(state, set(bad))
    outcome = sink.deliver(sent, complete=complete, budget=remaining())
    refused: tuple[str, ...] = ()
    rejected = ""
    if isinstance(outcome, Rejected) and outcome.status == 400:
        # the families the answer points at; when it points at none of them (a proxy's
        # 400, a text without names), all of the group's own families are the suspects
        rejected = outcome.reason
        refused = (pointed_at(sent, rejected, namespace)
                   or tuple(sorted({f.name for f in sent.custom})))
        if refused:
            outcome = sink.deliver(without(sent, refused), complete=complete,
                                   budget=remaining())
            if not isinstance(outcome, Delivered):
                return outcome, None
            log.warning("jobreport: the %s rejected the families %s of job %s; pushed the "
                        "rest without them: %s", sink.name, ", ".join(refused), state.job,
                        rejected)
    if not isinstance(outcome, Delivered) or not (bad or refused):
        return outcome, None
    from jobreport.logger import notice_once

    if bad and notice_once(f"left out {group_key(state.grouping)} {sorted(bad)}"):
        # once per process (a start push, the heartbeats and the end push carry them all)
        log.warning("jobreport: left out the families of job %s that no push may carry, "
                    "and pushed the rest: %s", state.job, listing(bad))
    if isinstance(sink, RecordsFailure):
        sink.record_failure(state.grouping, budget=min(1.0, remaining()))
    left_out = tuple(sorted(set(bad) | set(refused)))
    problem = "; ".join([*([f"left out {listing(bad)}"] if bad else []),
                         *([f"left out {', '.join(refused)}: {rejected}"] if refused else [])])
    return Delivered(left_out=left_out), problem


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
            outcome = deliver_group(store, sink, group.key, budget=config.budget,
                                   namespace=config.namespace)
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

    from jobreport.marker import adopt_all

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
            from jobreport.logger import unexpected

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
    from jobreport.logger import notice_once

    if not notice_once(f"no sink, stored={stored}"):
        return
    if stored:
        log.warning("jobreport: no Pushgateway configured (set JOBREPORT_GATEWAY); runs are "
                    "kept in the store until `jobreport flush`")
    else:
        log.warning("jobreport: no Pushgateway configured and the store is unavailable: "
                    "this run is not recorded anywhere")
