"""``jobreport delete``: remove one group from every sink, and retire it in the store."""

from __future__ import annotations

from collections.abc import Mapping

from jobreport.config import Config
from jobreport.errors import DeliveryError, GroupNotFoundError, NotConfiguredError, StoreError
from jobreport.logger import log
from jobreport.sinks.base import (
    Delivered,
    HoldsLocally,
    ListsGroups,
    RetryLater,
    Sink,
    deadline_after,
)
from jobreport.state import group_key
from jobreport.store.store import Store

__all__ = ["delete_group", "remove_everywhere"]


def delete_group(config: Config, job: str, labels: Mapping[str, str] | None = None, *,
                 sinks: list[Sink] | None = None, store: Store | None = None) -> dict[str, str]:
    """Remove the group of ``job`` (with ``labels`` and the configured instance) from every
    sink, and retire it in the store so that no ``flush`` brings it back (a new run of the
    job revives it). Returns the grouping key. Raises ``GroupNotFoundError`` when neither
    the store (or only as a group deleted already) nor a sink has the group,
    ``DeliveryError`` when a sink still has it."""
    from jobreport.sinks.configured import configured_sinks

    grouping = config.grouping(job, labels)
    sinks = configured_sinks(config) if sinks is None else sinks
    if not sinks:
        raise NotConfiguredError("no Pushgateway configured (set JOBREPORT_GATEWAY)")
    deadline = deadline_after(config.budget)
    retired: float | None = None
    try:
        store = store or Store(config.db)
        retired = store.retired_at(group_key(grouping))
        # retired before the removal, so that no flush brings it back, even one running
        # meanwhile or after a failed removal (then the user deletes again)
        live = store.retire_group(group_key(grouping)) and retired is None
    except StoreError as e:
        log.warning("jobreport: the store was not updated (%s); a later `jobreport flush` "
                    "may push this group again", e)
        live = True  # unknown: do not claim it never existed
    if not live and not any(_has(sink, grouping, deadline) for sink in sinks):
        raise GroupNotFoundError(grouping, retired)
    remove_everywhere(sinks, grouping, deadline=deadline)
    return grouping


def _has(sink: Sink, grouping: Mapping[str, str], deadline: float) -> bool:
    """Whether ``sink`` holds the group; True when it cannot tell (its removal decides)."""
    if isinstance(sink, HoldsLocally):
        return sink.holds(grouping)
    if isinstance(sink, ListsGroups):
        try:
            wanted = dict(grouping)
            return any(dict(g.grouping) == wanted
                       for g in sink.groups(deadline=deadline, keep=()))
        except DeliveryError:
            return True
    return False  # a remote-write receiver: there is no group to remove


def remove_everywhere(sinks: list[Sink], grouping: Mapping[str, str], *,
                      deadline: float) -> None:
    """Remove the group from every sink (a remote-write receiver has nothing to remove);
    after trying them all, raises ``DeliveryError`` for the first sink that still has it."""
    failures = [result for result in (sink.remove(grouping, deadline=deadline)
                                      for sink in sinks)
                if not isinstance(result, Delivered)]
    if failures:
        first = failures[0]
        raise DeliveryError(first.reason, status=first.status,
                            retryable=isinstance(first, RetryLater))
