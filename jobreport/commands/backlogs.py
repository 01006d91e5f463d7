"""What each configured sink has not received yet, from the store (``jobreport status`` and
``check``)."""

from __future__ import annotations

from dataclasses import dataclass

from jobreport.config import Config
from jobreport.sinks.base import Sink

__all__ = ["SinkBacklog", "sink_backlogs"]


@dataclass(frozen=True)
class SinkBacklog:
    """One sink: how many groups (and runs) it has not received yet, and the last error."""

    sink: str
    groups: int
    runs: int
    last_error: str | None

    def line(self) -> str:
        if not self.groups:
            return f"{self.sink}: nothing waiting"
        text = f"{self.sink}: {self.groups} group(s), {self.runs} run(s) not delivered yet"
        return text + (f" (last error: {self.last_error})" if self.last_error else "")


def sink_backlogs(config: Config, sinks: list[Sink] | None = None) -> list[SinkBacklog]:
    """The backlog of each configured sink (or of ``sinks``), from the store; raises
    ``StoreError``."""
    from jobreport.sinks.configured import configured_sinks
    from jobreport.store.store import Store

    store = Store(config.db)
    store.ensure_schema()
    out = []
    for sink in configured_sinks(config) if sinks is None else sinks:
        pending = store.pending(sink.name)
        errors = [p.last_error for p in pending if p.last_error]
        out.append(SinkBacklog(sink.name, len(pending), sum(p.pending_runs for p in pending),
                               errors[-1] if errors else None))
    return out
