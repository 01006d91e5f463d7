"""The store's rows as Python values: what a run start holds, where a group stands with a
sink, and how a ``RunResult`` maps to its columns and back (one converter per kind of
field, so that a new figure needs no edit here)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jobreport.records import (
    RESULT_FIELDS,
    RunPlan,
    RunRecord,
    RunResult,
    dump_custom,
    grouping_from_key,
    load_custom,
)
from jobreport.wrapper.streams import TAIL_MAX_BYTES

__all__ = ["DEFAULT_SINK", "TAIL_MAX_BYTES", "PendingGroup", "RunStart", "Undelivered",
           "bound_tail", "end_values", "run_record", "run_result"]

#: The sink whose marks ``pending()`` and friends read unless told otherwise.
DEFAULT_SINK = "pushgateway"


@dataclass(frozen=True)
class RunStart:
    """What is known when a run starts."""

    job: str
    grouping: Mapping[str, str]
    started: float
    host: str
    pid: int | None = None
    pid_start: float | None = None
    #: What the run is held to (thresholds, schedule).
    plan: RunPlan = field(default_factory=RunPlan)
    command: str | None = None
    uid: str | None = None
    #: The PID namespace ``pid`` and ``child_pid`` belong to (jobreport.liveness).
    pid_ns: str | None = None
    #: The command's own process: the run lives on while it does, even without its wrapper.
    child_pid: int | None = None
    child_pid_start: float | None = None


@dataclass(frozen=True)
class PendingGroup:
    """A group whose newest state has not reached a sink."""

    key: str
    job: str
    grouping: dict[str, str]
    pending_runs: int
    #: When the oldest undelivered run ended (None: only a start or pushed values pending).
    since: float | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class Undelivered:
    """A group whose newest state one sink (or no sink yet: ``sink`` None) has not taken."""

    key: str
    job: str
    sink: str | None
    #: When the oldest undelivered run ended (None: only a start or pushed values wait).
    since: float | None
    last_error: str | None
    last_attempt: float | None

    def describe(self) -> str:
        """One line: ``delivery of group job=... to pushgateway: pending since ..., last
        error: ...`` (what check, status and history print)."""
        grouping = grouping_from_key(self.key)
        ordered = sorted(grouping.items(), key=lambda kv: (kv[0] != "job", kv[0] != "instance"))
        group = " ".join(f"{k}={v}" for k, v in ordered)
        text = f"delivery of group {group}" + (f" to {self.sink}" if self.sink else "")
        text += ": pending"
        if self.since is not None:
            text += " since " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        if self.last_error:
            text += f", last error: {' '.join(self.last_error.split())}"
        elif self.sink is None:
            text += " (no sink has taken it yet: `jobreport flush` with a gateway set)"
        return text


def bound_tail(tail: str | None) -> str | None:
    """``tail`` cut to its last ``TAIL_MAX_BYTES`` bytes."""
    if tail is None:
        return None
    data = tail.encode("utf-8", "replace")
    if len(data) <= TAIL_MAX_BYTES:
        return tail
    return data[-TAIL_MAX_BYTES:].decode("utf-8", "replace")


_TO_COLUMN: dict[str, Callable[[Any], Any]] = {"tail": bound_tail, "families": dump_custom}
_FROM_COLUMN: dict[str, Callable[[Any], Any]] = {"families": load_custom}


def end_values(result: RunResult, seq: int) -> dict[str, Any]:
    """The columns of ``result`` (and the seq its end made)."""
    values: dict[str, Any] = {}
    for f in RESULT_FIELDS:
        value = getattr(result, f.name)
        convert = _TO_COLUMN.get(f.metadata["column"])
        values[f.name] = convert(value) if convert is not None else value
    values["closed_seq"] = seq
    return values


def run_result(row: Mapping[str, Any]) -> RunResult | None:
    """The result a run row holds (None while the run is open)."""
    if row["ended"] is None:
        return None
    values: dict[str, Any] = {}
    for f in RESULT_FIELDS:
        convert = _FROM_COLUMN.get(f.metadata["column"])
        values[f.name] = convert(row[f.name]) if convert is not None else row[f.name]
    return RunResult(**values)


def run_record(row: Mapping[str, Any]) -> RunRecord:
    """A run row as a ``RunRecord``."""
    return RunRecord(
        id=row["id"], job=row["job"], grouping=grouping_from_key(row["group_key"]),
        host=row["host"], pid=row["pid"], started=row["started"], result=run_result(row),
        command=row["command"], uid=row["uid"], min_runtime=row["min_runtime"],
    )
