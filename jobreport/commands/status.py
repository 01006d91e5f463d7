"""``jobreport status``: what the sinks that can list their groups (the Pushgateway) hold
now, per job and instance, problems first, each judged as the shipped alert rules judge it
(``jobreport.commands.alerts``).

Shown: jobreport's groups (those holding ``<namespace>_info``), and a group of another
pusher only when it has a problem: a rule would fire for it (``JobreportPushFailing`` reads
the gateway's own push times, which every group has), or it holds a value of jobreport's
families that cannot be judged. The other pushers' other groups are counted, not listed:
nothing of jobreport's can be judged in them, and a shared gateway may hold thousands.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, cast

from jobreport.commands.alerts import (
    KINDS,
    OK,
    Finding,
    findings,
    rank,
    worst,
)
from jobreport.config import Config
from jobreport.errors import NotConfiguredError
from jobreport.held import HeldGroup
from jobreport.sinks.base import ListsGroups, Sink, deadline_after

__all__ = ["READ", "GatewayStatus", "GroupStatus", "gateway_status", "listing_sinks",
           "statuses"]

#: The fields of ``GroupStatus`` read from a group's gauge of the same meaning (named
#: without the namespace).
_GAUGES = {
    "last_success": "last_success_timestamp_seconds",
    "last_end": "last_end_timestamp_seconds",
    "last_start": "last_start_timestamp_seconds",
    "expected_interval": "expected_interval_seconds",
    "max_runtime": "max_runtime_seconds",
    "success_deadline": "success_deadline_timestamp_seconds",
    "start_deadline": "start_deadline_timestamp_seconds",
    "min_runtime": "min_runtime_seconds",
    "last_duration": "last_duration_seconds",
    "last_run_success": "last_run_success",
    "consecutive_failures": "consecutive_failures",
    "alert_after_failures": "alert_after_failures",
    "last_heartbeat": "last_heartbeat_timestamp_seconds",
    "retire_after": "retire_after_seconds",
    "last_size": "last_size_bytes",
    "last_items": "last_items",
    "min_size": "min_size_bytes",
    "min_items": "min_items",
    "max_shrink": "max_shrink_ratio",
    "typical_size": "typical_size_bytes",
    "output_updated": "last_output_updated",
}
#: What ``status`` keeps of each group while the gateway's answer streams in.
READ = frozenset({"running", "last_outcome", *_GAUGES.values()})


@dataclass(frozen=True)
class GroupStatus:
    """One group of the gateway as ``jobreport status`` shows it."""

    job: str
    labels: dict[str, str]
    """The grouping labels other than ``job`` (instance included)."""
    last_outcome: str | None = None
    last_success: float | None = None
    last_end: float | None = None
    last_start: float | None = None
    running: int = 0
    expected_interval: float | None = None
    max_runtime: float | None = None
    last_push: float | None = None
    last_push_failure: float | None = None
    # schedules (jobreport.schedule)
    success_deadline: float | None = None
    start_deadline: float | None = None
    min_runtime: float | None = None
    last_duration: float | None = None
    # what the failed and heartbeat alerts read
    last_run_success: float | None = None
    consecutive_failures: float | None = None
    alert_after_failures: float | None = None
    last_heartbeat: float | None = None
    #: --retire-after: the group alerts no more once its last start is this old while a
    #: later instance of the job runs on (``retired``).
    retire_after: float | None = None
    # what judges the output (--min-size, --min-items, --max-shrink, --size-path)
    last_size: float | None = None
    last_items: float | None = None
    min_size: float | None = None
    min_items: float | None = None
    max_shrink: float | None = None
    typical_size: float | None = None
    output_updated: float | None = None
    findings: tuple[Finding, ...] = field(default=())
    now: float = 0.0
    retired: bool = False
    #: A group of jobreport's (it holds ``<namespace>_info``), not another pusher's.
    jobreport: bool = True

    @property
    def problems(self) -> tuple[str, ...]:
        """What an alert rule would fire for (or what could not be judged), as said."""
        return tuple(str(f) for f in self.findings if f.state != OK)

    @property
    def state(self) -> int:
        """The group's monitoring-plugin state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)."""
        return worst(f.state for f in self.findings)

    @property
    def overdue_at(self) -> float | None:
        """When an ``--expect-every`` job is (or was) overdue: its last success (or, never
        successful, its last start) plus the interval."""
        if self.expected_interval is None:
            return None
        since = self.last_success if self.last_success and self.last_success > 0 \
            else self.last_start
        return None if since is None else since + self.expected_interval

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline the group pushed: a scheduled job's start and success
        deadlines (the start deadline does not count while a run is in progress), an
        ``--expect-every`` job's overdue time."""
        found = [d for d in (self.success_deadline,
                             None if self.running else self.start_deadline,
                             self.overdue_at) if d is not None]
        return min(found) if found else None

    @property
    def instance(self) -> str:
        return self.labels.get("instance", "")

    @property
    def success_age(self) -> float | None:
        return None if self.last_success is None else max(0.0, self.now - self.last_success)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "labels": self.labels,
            "last_outcome": self.last_outcome,
            "last_success": self.last_success,
            "last_success_age_seconds": self.success_age,
            "last_end": self.last_end,
            "last_start": self.last_start,
            "running": self.running,
            "expected_interval_seconds": self.expected_interval,
            "max_runtime_seconds": self.max_runtime,
            "last_push": self.last_push,
            "last_push_failure": self.last_push_failure,
            "success_deadline": self.success_deadline,
            "start_deadline": self.start_deadline,
            "overdue_at": self.overdue_at,
            "next_deadline": self.next_deadline,
            "deadline_passed": (self.next_deadline is not None
                                and self.now > self.next_deadline),
            "min_runtime_seconds": self.min_runtime,
            "consecutive_failures": self.consecutive_failures,
            "alert_after_failures": self.alert_after_failures,
            "problems": list(self.problems),
            "alerts": [{"alert": f.kind.rule, **dict(f.labels)} for f in self.findings
                       if f.kind.rule and f.state != OK],
            "state": self.state,
            "retired": self.retired,
            "jobreport": self.jobreport,
            "ok": not self.problems,
        }


@dataclass(frozen=True)
class GatewayStatus:
    """What ``status`` shows of the gateway: jobreport's groups and the other pushers'
    groups that have a problem, problems first, and how many other groups it holds."""

    groups: list[GroupStatus]
    #: Groups of other pushers that are not shown (they have no problem).
    others: int = 0


def listing_sinks(config: Config, sinks: list[Sink] | None = None) -> list[ListsGroups]:
    """The configured sinks (or ``sinks``) that can list the groups they hold."""
    if sinks is None:
        from jobreport.sinks.configured import configured_sinks

        sinks = configured_sinks(config)
    return [sink for sink in sinks if isinstance(sink, ListsGroups)]


def gateway_status(config: Config, *, sinks: list[Sink] | None = None,
                   now: float | None = None, deadline: float | None = None
                   ) -> GatewayStatus:
    """What the sinks that can list their groups hold, as ``status`` shows it (the module
    says which groups), read by ``deadline`` (``time.monotonic()``; default: the configured
    budget from now). Raises ``NotConfiguredError`` when no such sink is configured,
    ``DeliveryError`` when one cannot be read."""
    listing = listing_sinks(config, sinks)
    if not listing:
        raise NotConfiguredError("no Pushgateway configured (set JOBREPORT_GATEWAY)")
    if deadline is None:
        deadline = deadline_after(config.budget)
    groups = [group for sink in listing for group in sink.groups(deadline=deadline,
                                                                keep=READ)]
    judged = statuses(groups, config.namespace, now)
    shown = [g for g in judged if g.jobreport or g.problems]
    return GatewayStatus(shown, len(judged) - len(shown))


def statuses(groups: Iterable[HeldGroup], namespace: str,
             now: float | None = None) -> list[GroupStatus]:
    """Each of ``groups`` judged at ``now`` (default: the current time), problems first."""
    when = time.time() if now is None else now
    found = _retire([_group_status(g, namespace, when) for g in groups])
    return sorted(found, key=lambda g: (-rank(g.state), g.job, sorted(g.labels.items())))


def _retire(found: list[GroupStatus]) -> list[GroupStatus]:
    """``found`` with the groups of hosts that are gone retired, as the shipped rules retire
    them: the group's last start is older than its ``retire_after`` while another instance
    of the job (the same labels otherwise) started later. A retired group has no problems:
    it alerts no more."""
    def sibling(s: GroupStatus) -> tuple[str, tuple[tuple[str, str], ...]]:
        return s.job, tuple(sorted((k, v) for k, v in s.labels.items() if k != "instance"))

    newest: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for s in found:
        if s.last_start is not None:
            newest[sibling(s)] = max(newest.get(sibling(s), s.last_start), s.last_start)
    return [replace(s, retired=True, findings=()) if (
        s.retire_after and s.last_start is not None
        and s.now - s.last_start > s.retire_after
        and newest[sibling(s)] > s.last_start) else s for s in found]


def _group_status(group: HeldGroup, ns: str, now: float) -> GroupStatus:
    labels = dict(group.grouping)
    job = labels.pop("job", "")
    odd: list[str] = []

    def checked(name: str, v: float | None) -> float | None:
        """``v``; an odd one (NaN, infinite) is None and a problem."""
        if v is None or math.isfinite(v):
            return v
        odd.append(f"{name} is {_number(v)}")
        return None

    running_value = checked(f"{ns}_running", group.gauges.get("running"))
    running = 0
    if running_value is not None:
        if running_value < 0 or running_value != int(running_value):
            odd.append(f"{ns}_running is {_number(running_value)}")
        running = max(0, int(running_value))
    status = GroupStatus(
        job=job, labels=labels, last_outcome=group.last_outcome, running=running,
        last_push=checked("push_time_seconds", group.push_time),
        last_push_failure=checked("push_failure_time_seconds", group.push_failure_time),
        now=now, jobreport=group.jobreport,
        **cast(dict[str, Any], {name: checked(f"{ns}_{gauge}", group.gauges.get(gauge))
                                for name, gauge in _GAUGES.items()}),
    )
    found = findings(status)
    found += [Finding(KINDS["odd value"], f"odd value: {o}") for o in odd]
    return replace(status, findings=tuple(found))


def _number(v: float) -> str:
    """A sample value as the exposition format writes it (NaN, +Inf, -Inf, 1.5)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:g}"
