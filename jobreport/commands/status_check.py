"""``jobreport status --check``: the state of every group and sink as a monitoring plugin
says it (Nagios, Icinga, Naemon, Sensu...): one status line first, then the details, and
the exit code of the state.

0 OK; 1 WARNING and 2 CRITICAL: the severity of the gravest alert the shipped rules would
fire (``jobreport.commands.alerts``), or runs a configured sink has not received (a
WARNING); 3 UNKNOWN: the gateway could not be read (unreachable, refusing, no answer in
time, an answer that is not the Pushgateway's), or a value could not be judged. The
gateway is read within ``READ_TIME`` seconds, well inside the 10 s a plugin is given by
default.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

from jobreport.commands.alerts import (
    CRITICAL,
    KINDS,
    OK,
    STATE_NAMES,
    UNKNOWN,
    WARNING,
    Finding,
    rank,
    worst,
)
from jobreport.commands.status import GroupStatus, gateway_status, listing_sinks
from jobreport.config import Config
from jobreport.errors import DeliveryError, StoreError
from jobreport.sinks.base import Sink, deadline_after

__all__ = ["READ_TIME", "PluginReport", "check_status"]

#: How long ``--check`` waits for the gateway's answer, in seconds (at most the budget).
READ_TIME = 5.0


@dataclass
class PluginReport:
    """What ``status --check`` prints and exits with."""

    state: int
    summary: str
    details: list[str] = field(default_factory=list)
    perfdata: dict[str, int] = field(default_factory=dict)
    groups: list[GroupStatus] = field(default_factory=list)

    @property
    def status_line(self) -> str:
        """``JOBREPORT CRITICAL - 1 overdue, 2 failed | groups=5;;;0 ...``: one line."""
        line = f"JOBREPORT {STATE_NAMES[self.state]} - {_one_line(self.summary)}"
        if self.perfdata:
            line += " | " + " ".join(f"{k}={v};;;0" for k, v in self.perfdata.items())
        return line


def check_status(config: Config, *, sinks: list[Sink] | None = None,
                 now: float | None = None) -> PluginReport:
    """Judge every group the gateway holds and what every configured sink has not received
    (from this host's store, when there is one). Never raises for what it checks."""
    if sinks is None:
        from jobreport.sinks.configured import configured_sinks

        sinks = configured_sinks(config)
    if not sinks:
        return PluginReport(UNKNOWN, "no sink configured: set JOBREPORT_GATEWAY (or "
                            "--gateway, --remote-write, --textfile-dir)")
    groups: list[GroupStatus] = []
    if listing_sinks(config, sinks):
        deadline = deadline_after(min(config.budget, READ_TIME))
        try:
            groups = gateway_status(config, sinks=sinks, now=now, deadline=deadline).groups
        except DeliveryError as e:
            return PluginReport(UNKNOWN, f"cannot read the Pushgateway: {e}",
                                details=_backlog_lines(_backlogs(config, sinks)))
    backlog = _backlogs(config, sinks)
    state = worst([*(g.state for g in groups), *(f.state for f in backlog)])
    return PluginReport(state, _summary(groups, backlog), _details(groups, backlog),
                        _perfdata(groups, backlog), groups)


def _backlogs(config: Config, sinks: list[Sink]) -> list[Finding]:
    """One finding per configured sink that has not received every run (from the store of
    this host; none when the host has no store: the check may run elsewhere)."""
    from jobreport.paths import sqlite_path

    path = sqlite_path(config.db)
    if path is not None and not os.path.exists(path):
        return []
    try:
        from jobreport.commands.backlogs import sink_backlogs

        found = sink_backlogs(config, sinks)
    except StoreError as e:
        return [Finding(KINDS["odd value"], f"the store cannot be read: {e}")]
    return [Finding(KINDS["undelivered"], b.line()) for b in found if b.groups]


def _summary(groups: list[GroupStatus], backlog: list[Finding]) -> str:
    counts: Counter[str] = Counter()
    for g in groups:
        for label in dict.fromkeys(f.kind.label for f in g.findings if f.state != OK):
            counts[label] += 1
    order = sorted(counts, key=lambda label: (-rank(KINDS[label].state), label))
    parts = [f"{counts[label]} {label}" for label in order]
    parts += [str(f).split(" (last error", 1)[0] for f in backlog]
    if not parts:
        return f"{len(groups)} group(s), no problem" if groups else "no group yet, no problem"
    return ", ".join(parts)


def _details(groups: list[GroupStatus], backlog: list[Finding]) -> list[str]:
    lines = []
    for g in groups:
        where = " ".join(f"{k}={v}" for k, v in {"job": g.job, **g.labels}.items())
        for f in g.findings:
            if f.state != OK:
                rule = f" [{f.kind.rule}]" if f.kind.rule else ""
                lines.append(f"{STATE_NAMES[f.state]}: {_one_line(where)}: {f}{rule}")
    return lines + _backlog_lines(backlog)


def _backlog_lines(backlog: list[Finding]) -> list[str]:
    return [f"{STATE_NAMES[f.state]}: {_one_line(str(f))}" for f in backlog]


def _perfdata(groups: list[GroupStatus], backlog: list[Finding]) -> dict[str, int]:
    states = Counter(g.state for g in groups)
    return {"groups": len(groups), "critical": states[CRITICAL], "warning": states[WARNING],
            "unknown": states[UNKNOWN],
            "undelivered_sinks": sum(1 for f in backlog if f.kind.label == "undelivered")}


def _one_line(text: str) -> str:
    """``text`` on one line, without what would start perfdata early or move a terminal:
    a job name or an error may hold a newline, a ``|`` or a control character."""
    text = text.replace("|", "/")
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
