"""``flush``: deliver every group whose newest state has not reached the gateway."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from jobreport.config import Config, load_config
from jobreport.errors import PushError
from jobreport.records import grouping_from_key
from jobreport.reporter import deliver_group
from jobreport.sinks.pushgateway import Sender, UnreachableError
from jobreport.store.store import PendingGroup, Store

__all__ = ["FlushResult", "flush"]

log = logging.getLogger("jobreport")


@dataclass
class FlushResult:
    """What a flush did: groups pushed, the runs they carried, and the groups that failed."""

    groups: int = 0
    runs: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def flush(
    config: Config | None = None,
    *,
    store: Store | None = None,
    sender: Sender | None = None,
    job: str | None = None,
    all_groups: bool = False,
) -> FlushResult:
    """Push the whole state of every pending group once (however many runs it has pending),
    newest state only. ``all_groups`` pushes every group the store knows, pending or not:
    that restores a Pushgateway that lost its data (restarted without persistence).
    Raises ``PushError`` when no gateway is configured and ``StoreError`` when the store
    cannot be read."""
    config = config or load_config()
    store = store or Store(config.db)
    sender = sender or Sender(config)
    result = FlushResult()
    groups = store.pending()
    if all_groups:
        pending = {g.key for g in groups}
        groups += [PendingGroup(key, grouping_from_key(key)["job"], grouping_from_key(key), 0)
                   for key in store.group_keys() if key not in pending]
    for group in groups:
        if job is not None and group.job != job:
            continue
        try:
            deliver_group(store, sender, config, group.key, budget=config.budget)
        except PushError as e:
            result.failed.append((group.key, str(e)))
            log.warning("jobreport: flush of job %s failed: %s", group.job, e)
            if isinstance(e, UnreachableError) or e.retryable or e.status in (None, 401, 403):
                # unreachable, unwell for a whole budget, or refusing us: every other group
                # would fail the same way (and pay the budget again); only a rejection of
                # this group's own state (400, 409, ...) lets the others go on
                break
            continue
        result.groups += 1
        result.runs += group.pending_runs
    return result
