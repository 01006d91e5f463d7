"""``jobreport push``: ad hoc values into a job's group, kept in the store so that every later
delivery of the group carries them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jobreport.config import Config
from jobreport.errors import DeliveryError, NotConfiguredError, StoreError
from jobreport.logger import log
from jobreport.result import CustomFamily
from jobreport.sinks.base import Delivered, RetryLater, Sink
from jobreport.state import group_key
from jobreport.store.store import Store

__all__ = ["push_values"]


def push_values(config: Config, job: str, families: Sequence[CustomFamily],
                labels: Mapping[str, str] | None = None, *,
                sinks: list[Sink] | None = None, store: Store | None = None) -> dict[str, str]:
    """Give ``families`` to the group of ``job``: kept in the store, so that every later
    delivery of the group carries them, and delivered now to every sink with the group's
    whole state. Returns the grouping key. Raises ``StoreError`` when the store cannot keep
    them, ``DeliveryError`` when a sink did not take them (they stay pending for
    ``jobreport flush``: every sink is tried first)."""
    from jobreport.delivery import deliver_group
    from jobreport.sinks.configured import configured_sinks

    grouping = config.grouping(job, labels)
    sinks = configured_sinks(config) if sinks is None else sinks
    if not sinks:
        raise NotConfiguredError("no Pushgateway configured (set JOBREPORT_GATEWAY)")
    try:
        store = store or Store(config.db)
        store.record_pushed(grouping, families)
    except StoreError as e:
        raise StoreError(f"{e}; `jobreport push` keeps the values in the store for every "
                         "later push of the group: fix the store and push again") from None
    failures = []
    for sink in sinks:
        done = deliver_group(store, sink, group_key(grouping), budget=config.budget,
                             namespace=config.namespace)
        if not isinstance(done, Delivered):
            failures.append(done)
            if len(sinks) > 1:
                log.warning("jobreport: the %s did not take the values (kept for `jobreport "
                            "flush`): %s", sink.name, done.reason)
    if failures:
        first = failures[0]
        raise DeliveryError(first.reason, status=first.status,
                            retryable=isinstance(first, RetryLater))
    return grouping
