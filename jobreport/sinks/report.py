"""Where the store's groups stand with each configured sink: what ``jobreport status`` and
``jobreport check`` show per sink."""

from __future__ import annotations

from dataclasses import dataclass

from jobreport.config import Config
from jobreport.errors import JobReportError, StoreError

__all__ = ["SinkBacklog", "probe", "sink_backlogs"]


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
