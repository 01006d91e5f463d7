"""``jobreport prune``: retire and delete the groups of hosts that are gone.

The Pushgateway keeps a group for ever (it refuses TTLs), so a decommissioned host's jobs
stay overdue in Prometheus. A group is stale when its last push (``push_time_seconds``, set
by the Pushgateway itself) is older than a given age. Only jobreport's own groups are
candidates, the ones holding ``jobreport_info``: the groups of other pushers are never
touched, whatever their age.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jobreport.commands.delete import remove_everywhere
from jobreport.commands.status import listing_sinks
from jobreport.config import Config
from jobreport.errors import NotConfiguredError, StoreError
from jobreport.logger import log
from jobreport.sinks.base import Sink, deadline_after
from jobreport.state import group_key
from jobreport.store.store import Store

__all__ = ["StaleGroup", "prune_groups", "stale_groups"]


@dataclass(frozen=True)
class StaleGroup:
    """A jobreport group of the gateway whose last push is older than the limit."""

    grouping: dict[str, str]
    """The whole grouping key, ``job`` included, as the gateway holds it."""
    last_push: float
    age: float

    @property
    def job(self) -> str:
        return self.grouping["job"]

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job,
                "labels": {k: v for k, v in self.grouping.items() if k != "job"},
                "last_push": self.last_push, "age_seconds": self.age}


def stale_groups(config: Config, older_than: float, *, sinks: list[Sink] | None = None,
                 now: float | None = None) -> list[StaleGroup]:
    """The jobreport groups (with ``<namespace>_info``) whose ``push_time_seconds`` is more
    than ``older_than`` seconds old, oldest first, of every sink that can list its groups.
    Raises ``NotConfiguredError`` without one, ``DeliveryError`` when one cannot be read."""
    listing = listing_sinks(config, sinks)
    if not listing:
        raise NotConfiguredError("no Pushgateway configured (set JOBREPORT_GATEWAY)")
    deadline = deadline_after(config.budget)
    when = time.time() if now is None else now
    out = []
    for sink in listing:
        for group in sink.groups(deadline=deadline, keep=()):
            if not group.jobreport or not group.job:
                continue  # another pusher's group: never ours to remove
            pushed = group.push_time
            if pushed is None or not math.isfinite(pushed) or pushed <= 0:
                continue  # no push time: nothing says the group is old
            if when - pushed > older_than:
                out.append(StaleGroup(grouping=dict(group.grouping), last_push=pushed,
                                      age=when - pushed))
    return sorted(out, key=lambda g: (g.last_push, sorted(g.grouping.items())))


def prune_groups(config: Config, groups: Sequence[StaleGroup], *,
                 sinks: list[Sink] | None = None, store: Store | None = None) -> list[StaleGroup]:
    """Retire each group in the store (no ``flush`` brings it back; a new run of the job
    revives it), then remove it from every sink (this host's textfile of the group too).
    Returns the groups removed; raises ``DeliveryError`` at the first group a sink still
    has (those before it stay removed)."""
    if not groups:
        return []
    if sinks is None:
        from jobreport.sinks.configured import configured_sinks

        sinks = configured_sinks(config)
    try:
        store = store or Store(config.db)
    except StoreError as e:
        log.warning("jobreport: the store is unavailable (%s); the groups are deleted from "
                    "the gateway only", e)
        store = None
    done = []
    for group in groups:
        if store is not None:
            try:
                store.retire_group(group_key(group.grouping))
            except StoreError as e:
                log.warning("jobreport: the store was not updated (%s); a later `jobreport "
                            "flush` may push this group again", e)
                store = None
        remove_everywhere(sinks, group.grouping,
                          deadline=deadline_after(config.budget))
        done.append(group)
    return done
