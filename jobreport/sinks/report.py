"""The sinks besides the Pushgateway, seen from the commands: where the store's groups stand
with each (``jobreport status`` and ``check``), and removing a group from them (``delete``,
``prune``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobreport.config import Config
from jobreport.errors import JobReportError, StoreError

if TYPE_CHECKING:
    from jobreport.sinks.base import Sink

log = logging.getLogger("jobreport")

__all__ = ["SinkBacklog", "held_elsewhere", "other_sinks", "probe", "remove_elsewhere",
           "sink_backlogs"]


@dataclass(frozen=True)
class SinkBacklog:
    """One sink: how many groups (and runs) it has not received yet, and the last error."""

    sink: str
    groups: int
    runs: int
    last_error: str | None

    def line(self) -> str:
        if not self.groups:
            return f"{self.sink}: every group delivered"
        text = f"{self.sink}: {self.groups} group(s), {self.runs} run(s) not delivered yet"
        return text + (f" (last error: {self.last_error})" if self.last_error else "")


def sink_backlogs(config: Config) -> list[SinkBacklog]:
    """The backlog of each configured sink, from the store; raises ``StoreError``."""
    from jobreport.sinks.configured import configured_sinks
    from jobreport.store.store import Store

    store = Store(config.db)
    store.ensure_schema()
    out = []
    for sink in configured_sinks(config):
        pending = store.pending(sink.name)
        errors = [p.last_error for p in pending if p.last_error]
        out.append(SinkBacklog(sink.name, len(pending), sum(p.pending_runs for p in pending),
                               errors[-1] if errors else None))
    return out


def probe(config: Config, name: str) -> str | None:
    """Try the sink ``name`` without delivering anything: None when it would take a
    delivery, else why not. Remote write: an empty write (reachability, credentials);
    textfile: a temporary file in the directory."""
    from jobreport.sinks.configured import configured_sinks

    for sink in configured_sinks(config):
        if sink.name != name:
            continue
        check = getattr(sink, "probe", None)
        if check is None:
            return None
        try:
            check()
        except (JobReportError, StoreError) as e:
            return str(e)
        return None
    return f"{name} is not configured"


def other_sinks(config: Config) -> list[Sink]:
    """The configured sinks besides the Pushgateway (remote write, textfile)."""
    from jobreport.sinks.configured import configured_sinks

    if not (config.remote_write_url or config.textfile_dir):
        return []
    return [s for s in configured_sinks(config) if s.name != "pushgateway"]


def held_elsewhere(sinks: list[Sink], grouping: Mapping[str, str]) -> bool:
    """Whether one of ``sinks`` holds the group (a textfile sink: its file exists)."""
    for sink in sinks:
        where = getattr(sink, "path", None)
        if where is not None and where(grouping).exists():
            return True
    return False


def remove_elsewhere(sinks: list[Sink], grouping: Mapping[str, str]) -> None:
    """Remove the group from ``sinks`` (a textfile sink deletes its file; a remote-write
    receiver has nothing to delete)."""
    from jobreport.sinks.base import Delivered

    for sink in sinks:
        outcome = sink.remove(grouping)
        if not isinstance(outcome, Delivered):
            log.warning("jobreport: the %s still has the group: %s", sink.name, outcome.reason)
