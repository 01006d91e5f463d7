"""``jobreport prune``: retire and delete the groups of hosts that are gone.

The Pushgateway keeps a group for ever (it refuses TTLs), so a decommissioned host's jobs
stay overdue in Prometheus. A group is stale when its last push (``push_time_seconds``, set
by the Pushgateway itself) is older than a given age. Only jobreport's own groups are
candidates, the ones holding ``jobreport_info``: the groups of other pushers are never
touched, whatever their age.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobreport.config import Config
from jobreport.errors import StoreError
from jobreport.state import group_key

if TYPE_CHECKING:
    from jobreport.sinks.pushgateway import Sender
    from jobreport.store.store import Store

__all__ = ["StaleGroup", "prune_groups", "stale_groups"]

log = logging.getLogger("jobreport")


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


def stale_groups(config: Config, older_than: float, *, sender: Sender | None = None,
                 now: float | None = None) -> list[StaleGroup]:
    """The jobreport groups (with ``<namespace>_info``) whose ``push_time_seconds`` is more
    than ``older_than`` seconds old, oldest first. Raises ``PushError`` when the gateway
    cannot be read."""
    from jobreport.gateway import gateway_groups

    data = gateway_groups(sender or _sender(config))
    when = time.time() if now is None else now
    out = []
    for group in data:
        if not isinstance(group, Mapping) or f"{config.namespace}_info" not in group:
            continue  # another pusher's group: never ours to remove
        labels = group.get("labels")
        if not isinstance(labels, Mapping) or not labels.get("job"):
            continue
        pushed = _first_value(group.get("push_time_seconds"))
        if pushed is None or pushed <= 0:
            continue  # no push time: nothing says the group is old
        if when - pushed > older_than:
            grouping = {str(k): str(v) for k, v in labels.items()}
            out.append(StaleGroup(grouping=grouping, last_push=pushed, age=when - pushed))
    return sorted(out, key=lambda g: (g.last_push, sorted(g.grouping.items())))


def prune_groups(config: Config, groups: Sequence[StaleGroup], *,
                 sender: Sender | None = None, store: Store | None = None) -> list[StaleGroup]:
    """Retire each group in the store (no ``flush`` brings it back; a new run of the job
    revives it), then delete it from the gateway. Returns the groups deleted; raises
    ``PushError`` at the first group the gateway refuses to delete (those before it stay
    deleted)."""
    if not groups:
        return []
    from jobreport.sinks.report import other_sinks, remove_elsewhere

    sender = sender or _sender(config)
    others = other_sinks(config)
    try:
        store = store or _store(config)
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
        sender.delete(group.job, group.grouping)
        remove_elsewhere(others, group.grouping)  # e.g. this host's textfile of the group
        done.append(group)
    return done


def _first_value(family: object) -> float | None:
    if not isinstance(family, Mapping):
        return None
    metrics = family.get("metrics")
    for metric in metrics if isinstance(metrics, list) else []:
        try:
            value = float(metric["value"])
        except (KeyError, TypeError, ValueError):
            continue
        return value if math.isfinite(value) else None
    return None


def _sender(config: Config) -> Sender:
    from jobreport.sinks.pushgateway import Sender

    return Sender(config)


def _store(config: Config) -> Store:
    from jobreport.store.store import Store

    return Store(config.db)
