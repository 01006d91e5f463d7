"""``flush``: deliver every pending group to every sink, once each, newest state only."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobreport.config import Config, load_config
from jobreport.delivery.group import deliver_group
from jobreport.errors import NotConfiguredError
from jobreport.logger import log
from jobreport.sinks.base import Delivered, RetryLater, Sink
from jobreport.state import grouping_from_key
from jobreport.store.read_rows import PendingGroup
from jobreport.store.store import Store

__all__ = ["FlushResult", "flush"]


@dataclass
class FlushResult:
    """What a flush did: deliveries made (one per group and sink), the runs they carried, and
    the deliveries that failed as (group key, reason)."""

    groups: int = 0
    runs: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    #: Per sink name: (groups delivered, runs they carried, groups not delivered).
    by_sink: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def flush(
    config: Config | None = None,
    *,
    store: Store | None = None,
    sinks: list[Sink] | None = None,
    job: str | None = None,
    all_groups: bool = False,
) -> FlushResult:
    """Deliver the whole state of every pending group once to each sink (however many
    runs it has pending), newest state only, each delivery within the configured budget.
    ``all_groups`` delivers every group the store knows, pending or not (retired ones
    aside): that restores a Pushgateway that lost its data. A sink that cannot take
    deliveries now (unreachable, or unwell for a whole budget) or rejects them all
    (credentials, TLS) stops its own round at the first such answer; the other sinks go
    on. Raises ``NotConfiguredError`` when no sink is configured and ``StoreError`` when
    the store cannot be read."""
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
            done = deliver_group(store, sink, group.key, budget=config.budget,
                                 namespace=config.namespace)
            if not isinstance(done, Delivered):
                failed += 1
                result.failed.append((group.key, done.reason))
                log.warning("jobreport: flush of job %s failed: %s", group.job, done.reason)
                if isinstance(done, RetryLater) or done.sink_wide:
                    break  # every other group would fare the same now
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
