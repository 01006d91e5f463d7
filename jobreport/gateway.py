"""The commands that act on the gateway's groups directly: ``status`` (what the gateway holds
now, problems first), ``delete`` (remove a group) and ``push`` (ad hoc values)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from jobreport.config import Config
from jobreport.errors import GroupNotFoundError, PushError, StoreError
from jobreport.outcomes import SKIPPED, SUCCESS
from jobreport.result import CustomFamily
from jobreport.state import group_key

if TYPE_CHECKING:
    from jobreport.sinks.pushgateway import Sender
    from jobreport.store.store import Store

__all__ = ["GroupStatus", "delete_group", "gateway_groups", "gateway_status", "push_values"]

log = logging.getLogger("jobreport")


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
    problems: tuple[str, ...] = field(default=())
    now: float = 0.0

    @property
    def next_deadline(self) -> float | None:
        """The earlier of a scheduled job's start and success deadlines (the start deadline
        does not count while a run is in progress)."""
        found = [d for d in (self.success_deadline,
                             None if self.running else self.start_deadline) if d is not None]
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
            "next_deadline": self.next_deadline,
            "deadline_passed": (self.next_deadline is not None
                                and self.now > self.next_deadline),
            "min_runtime_seconds": self.min_runtime,
            "problems": list(self.problems),
            "ok": not self.problems,
        }


def gateway_status(config: Config, *, sender: Sender | None = None,
                   now: float | None = None) -> list[GroupStatus]:
    """Every group the gateway holds, problems first. Raises ``PushError`` when the gateway
    cannot be read."""
    data = gateway_groups(sender or _sender(config))
    when = time.time() if now is None else now
    groups = [_group_status(g, config.namespace, when) for g in data]
    return sorted(groups, key=lambda g: (not g.problems, g.job, sorted(g.labels.items())))


def _group_status(group: Mapping[str, Any], ns: str, now: float) -> GroupStatus:
    raw_labels = group.get("labels")
    labels = ({str(k): str(v) for k, v in raw_labels.items()}
              if isinstance(raw_labels, dict) else {})
    job = labels.pop("job", "")
    odd: list[str] = []

    def value(name: str) -> float | None:
        """The first sample of ``name``; an odd one (NaN, infinite) is None and a problem."""
        for _labels, v in _samples(group, name):
            if math.isfinite(v):
                return v
            odd.append(f"{name} is {_number(v)}")
            return None
        return None

    outcome = None
    for sample_labels, v in _samples(group, f"{ns}_last_outcome"):
        if v == 1.0:
            outcome = sample_labels.get("outcome")
    running_value = value(f"{ns}_running")
    running = 0
    if running_value is not None:
        if running_value < 0 or running_value != int(running_value):
            odd.append(f"{ns}_running is {_number(running_value)}")
        running = max(0, int(running_value))
    status = GroupStatus(
        job=job, labels=labels, last_outcome=outcome,
        last_success=value(f"{ns}_last_success_timestamp_seconds"),
        last_end=value(f"{ns}_last_end_timestamp_seconds"),
        last_start=value(f"{ns}_last_start_timestamp_seconds"),
        running=running,
        expected_interval=value(f"{ns}_expected_interval_seconds"),
        max_runtime=value(f"{ns}_max_runtime_seconds"),
        last_push=value("push_time_seconds"),
        last_push_failure=value("push_failure_time_seconds"),
        success_deadline=value(f"{ns}_success_deadline_timestamp_seconds"),
        start_deadline=value(f"{ns}_start_deadline_timestamp_seconds"),
        min_runtime=value(f"{ns}_min_runtime_seconds"),
        last_duration=value(f"{ns}_last_duration_seconds"),
        now=now,
    )
    status = _with_problems(status)
    if odd:
        status = replace(status, problems=(*status.problems, *(f"odd value: {o}" for o in odd)))
    return status


def _number(v: float) -> str:
    """A sample value as the exposition format writes it (NaN, +Inf, -Inf, 1.5)."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return f"{v:g}"


def _with_problems(s: GroupStatus) -> GroupStatus:
    problems = []
    if s.expected_interval:
        if s.last_success is None or s.last_success <= 0:
            # never succeeded: overdue once the first start is that long ago
            if s.last_start is not None and s.now - s.last_start > s.expected_interval:
                problems.append("overdue: never succeeded")
        elif s.now - s.last_success > s.expected_interval:
            problems.append("overdue")
    if s.success_deadline is not None and s.now > s.success_deadline:
        never = s.last_success is None or s.last_success <= 0
        problems.append("overdue: never succeeded" if never else "overdue: past its deadline")
    if s.start_deadline is not None and s.now > s.start_deadline and not s.running:
        problems.append("missed start")
    if s.last_outcome is not None and s.last_outcome not in (SUCCESS, SKIPPED):
        problems.append(f"last run: {s.last_outcome}")
    if (s.last_outcome == SUCCESS and s.min_runtime is not None
            and s.last_duration is not None and s.last_duration < s.min_runtime):
        problems.append("too short")
    if (s.running > 0 and s.max_runtime and s.last_start is not None
            and s.now - s.last_start > s.max_runtime):
        problems.append("running too long")
    if (s.last_push_failure is not None and s.last_push is not None
            and s.last_push_failure > s.last_push):
        problems.append("pushes failing")
    return replace(s, problems=tuple(problems))


def _samples(group: Mapping[str, Any], name: str) -> Iterator[tuple[dict[str, str], float]]:
    family = group.get(name)
    if not isinstance(family, dict):
        return
    metrics = family.get("metrics", [])
    for metric in metrics if isinstance(metrics, list) else []:
        try:
            labels = metric.get("labels") or {}
            yield {str(k): str(v) for k, v in labels.items()}, float(metric["value"])
        except (AttributeError, KeyError, TypeError, ValueError):
            continue


def delete_group(config: Config, job: str, labels: Mapping[str, str] | None = None, *,
                 sender: Sender | None = None, store: Store | None = None) -> dict[str, str]:
    """Remove the group of ``job`` (with ``labels`` and the configured instance) from the
    gateway, and retire it in the store so that no ``flush`` brings it back (a new run of
    the job revives it). Returns the grouping key. Raises ``GroupNotFoundError`` when
    neither the store nor the gateway has the group, ``PushError`` when the gateway fails."""
    from jobreport.sinks.report import held_elsewhere, other_sinks, remove_elsewhere

    grouping = config.grouping(job, labels)
    others = other_sinks(config)
    if sender is None and (config.gateway or not others):
        sender = _sender(config)
    held = held_elsewhere(others, grouping)
    try:
        store = store or _store(config)
        # retired before the DELETE, so that no flush brings it back, even one running
        # meanwhile or after a failed DELETE (then the user deletes again)
        in_store = store.retire_group(group_key(grouping))
    except StoreError as e:
        log.warning("jobreport: the store was not updated (%s); a later `jobreport flush` "
                    "may push this group again", e)
        in_store = True  # unknown: do not claim it never existed
    if not in_store and not held and (sender is None or not _gateway_has(sender, grouping)):
        raise GroupNotFoundError(grouping)
    remove_elsewhere(others, grouping)
    if sender is not None:
        sender.delete(job, grouping)
    return grouping


def _gateway_has(sender: Sender, grouping: Mapping[str, str]) -> bool:
    try:
        data = sender.get("/api/v1/metrics").json()["data"]
    except (ValueError, KeyError, TypeError):
        return True  # cannot tell: let the DELETE decide
    return any(isinstance(g, dict) and g.get("labels") == dict(grouping) for g in data)


def push_values(config: Config, job: str, families: Sequence[CustomFamily],
                labels: Mapping[str, str] | None = None, *,
                sender: Sender | None = None, store: Store | None = None) -> dict[str, str]:
    """Give ``families`` to the group of ``job``: kept in the store, so that every later
    push of the group carries them, and delivered with the group's whole state (without a
    usable store: POSTed, the group's other metrics stay). Returns the grouping key.
    Raises ``PushError``."""
    from jobreport.delivery import deliver_group
    from jobreport.sinks.base import Delivered
    from jobreport.sinks.report import other_sinks

    grouping = config.grouping(job, labels)
    others = other_sinks(config)
    if sender is None and (config.gateway or not others):
        sender = _sender(config)
    try:
        store = store or _store(config)
        store.record_pushed(grouping, families)
    except StoreError as e:
        if sender is None:
            raise
        log.warning("jobreport: the store was not updated (%s); the values are pushed "
                    "without it", e)
        sender.push(job, grouping, _Families(families))
        return grouping
    for sink in others:  # the other sinks get the group's whole state too
        done = deliver_group(store, sink, group_key(grouping), budget=config.budget)
        if not isinstance(done, Delivered):
            if sender is None:
                raise PushError(done.reason, status=done.status, retryable=False)
            log.warning("jobreport: the %s did not take the values (kept for `jobreport "
                        "flush`): %s", sink.name, done.reason)
    if sender is None:
        return grouping
    outcome = deliver_group(store, sender, group_key(grouping), budget=config.budget)
    if not isinstance(outcome, Delivered):
        raise PushError(outcome.reason, status=outcome.status, retryable=False)
    return grouping


class _Families(Collector):
    """A prometheus_client collector of ``CustomFamily`` values."""

    def __init__(self, families: Sequence[CustomFamily]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        for fam in self.families:
            metric = Metric(fam.name, fam.help or fam.name, fam.type)
            for sample_name, labels, value in fam.samples:
                metric.add_sample(sample_name, dict(labels), value)
            yield metric


def gateway_groups(sender: Sender) -> list[dict[str, Any]]:
    """The groups the gateway holds (its ``/api/v1/metrics`` data). Raises ``PushError``
    when it cannot be read or is not a Pushgateway's answer."""
    response = sender.get("/api/v1/metrics")
    try:
        data = response.json()["data"]
    except (ValueError, KeyError, TypeError):
        data = None
    if not isinstance(data, list):
        raise PushError(f"{sender.gateway}/api/v1/metrics did not answer with the "
                        "Pushgateway's JSON; is this a Pushgateway?", retryable=False)
    return [g for g in data if isinstance(g, dict)]


def _sender(config: Config) -> Sender:
    from jobreport.sinks.pushgateway import Sender

    return Sender(config)


def _store(config: Config) -> Store:
    from jobreport.store.store import Store

    return Store(config.db)
