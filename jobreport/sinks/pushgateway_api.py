"""What the Pushgateway's own API says, parsed once: ``/api/v1/metrics`` into
``GatewayGroup`` records (each group's labels and samples), ``/api/v1/status`` into the
gateway's version, and what a group holds that a new store adopts (``held_state``).

A gateway is read by ``status``, ``prune``, ``delete``, ``check`` and a new store, and can
hold anything another pusher put there, so the reading is tolerant of odd samples (a family
that is not a gauge, a value that is not a number: left out). An answer that is not the
Pushgateway's at all (a proxy's page, another server, ``{"data": [1, "x", null]}``) is
nonsense and raises ``ValueError``: it is never read as "no groups".

Cheap to import: standard library only.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobreport.state import GroupState

__all__ = ["GatewayGroup", "Sample", "held_state", "parse_groups", "parse_version"]


@dataclass(frozen=True)
class Sample:
    """One sample of a family: its own labels and its value (NaN and ±Inf included)."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class GatewayGroup:
    """One group the Pushgateway holds: its grouping labels (``job`` included) and, per
    family name, the samples that have a plain value."""

    labels: Mapping[str, str]
    families: Mapping[str, tuple[Sample, ...]] = field(default_factory=dict)

    @property
    def job(self) -> str:
        return self.labels.get("job", "")

    def samples(self, name: str) -> tuple[Sample, ...]:
        """The samples of family ``name`` (none when the group does not hold it)."""
        return self.families.get(name, ())

    def first(self, name: str) -> float | None:
        """The value of the first sample of family ``name``, if any."""
        found = self.families.get(name, ())
        return found[0].value if found else None

    def is_grouping(self, grouping: Mapping[str, str]) -> bool:
        """Whether this is the group of ``grouping`` (job included)."""
        return dict(self.labels) == dict(grouping)


def _nonsense(what: str) -> ValueError:
    return ValueError(f"{what}: not the Pushgateway's answer")


def _data(payload: bytes | str | object) -> object:
    if isinstance(payload, bytes | str):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise _nonsense("not JSON") from None
    if not isinstance(payload, dict) or "data" not in payload:
        raise _nonsense("no data")
    return payload["data"]


def parse_groups(payload: bytes | str | object,
                 only: Mapping[str, str] | None = None) -> list[GatewayGroup]:
    """The groups of an ``/api/v1/metrics`` answer (its body, or the JSON already read),
    or with ``only`` just the group of that grouping (every group's labels are still
    checked; only that one's samples are read); raises ``ValueError`` when it is not the
    Pushgateway's answer."""
    data = _data(payload)
    if not isinstance(data, list):
        raise _nonsense("data is not a list of groups")
    wanted = None if only is None else dict(only)
    groups = []
    for item in data:
        labels = item.get("labels") if isinstance(item, dict) else None
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise _nonsense("a group without its labels")
        if wanted is not None and labels != wanted:
            continue
        families = {}
        for name, family in item.items():
            if name != "labels" and isinstance(family, dict):
                found = _samples(family.get("metrics"))
                if found:
                    families[str(name)] = found
        groups.append(GatewayGroup(dict(labels), families))
    return groups


def _samples(metrics: object) -> tuple[Sample, ...]:
    out = []
    for metric in metrics if isinstance(metrics, list) else []:
        if not isinstance(metric, dict) or "value" not in metric:
            continue  # a histogram's or summary's buckets: nothing jobreport reads
        labels = metric.get("labels") or {}
        try:
            value = float(metric["value"])
        except (TypeError, ValueError):
            continue
        if isinstance(labels, dict):
            out.append(Sample({str(k): str(v) for k, v in labels.items()}, value))
    return tuple(out)


def parse_version(payload: bytes | str | object) -> str | None:
    """The version in an ``/api/v1/status`` answer (None: it does not say)."""
    try:
        data = _data(payload)
    except ValueError:
        return None
    info = data.get("build_information") if isinstance(data, dict) else None
    version = info.get("version") if isinstance(info, dict) else None
    return version if isinstance(version, str) and version else None


def held_state(group: GatewayGroup, namespace: str) -> GroupState | None:
    """The counters, last success/failure and typical size and duration ``group`` holds, as
    a ``GroupState`` (None when it holds none of them), for a new store to adopt.

    A counter is a whole number of runs: anything else (negative, NaN, 1e300) is not
    adopted, so that it can neither lower nor overflow the store's counts; a time far ahead
    would hold the last success there for good (never overdue) and is not adopted either.
    """
    from jobreport.state import GroupState

    runs = {s.labels.get("outcome", ""): int(s.value)
            for s in group.samples(f"{namespace}_runs_total")
            if math.isfinite(s.value) and 0 <= s.value < 2**53}
    grouping = dict(group.labels)
    state = GroupState(job=group.job, grouping=grouping, runs_total=runs or None)
    for attr, name in (("last_success", "last_success_timestamp_seconds"),
                       ("last_failure", "last_failure_timestamp_seconds")):
        found = [s.value for s in group.samples(f"{namespace}_{name}")
                 if math.isfinite(s.value) and 0 < s.value <= time.time() + 86400]
        setattr(state, attr, found[0] if found else None)
    # the medians a new store's first runs build on (--max-shrink): a size or a duration,
    # never negative, NaN or beyond any real one
    for attr, name in (("typical_size", "typical_size_bytes"),
                       ("typical_duration", "typical_duration_seconds")):
        found = [s.value for s in group.samples(f"{namespace}_{name}")
                 if math.isfinite(s.value) and 0 <= s.value < 1e18]
        setattr(state, attr, found[0] if found else None)
    if (state.runs_total is None and state.last_success is None and state.last_failure is None
            and state.typical_size is None and state.typical_duration is None):
        return None
    return state
