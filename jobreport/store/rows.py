"""The store's rows as Python values: what a run start holds, a run as the store keeps it,
where a group stands with a sink, and how a ``RunResult`` maps to its columns and back
(one converter per kind of field, so that a new figure needs no edit here; a run's
``JobSpec`` maps itself: ``JobSpec.columns``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jobreport.numbers import column_int, column_real
from jobreport.result import RESULT_FIELDS, RunResult, dump_custom, load_custom
from jobreport.spec import TAIL_MAX_BYTES, JobSpec
from jobreport.state import grouping_from_key

__all__ = ["DEFAULT_SINK", "TAIL_MAX_BYTES", "PendingGroup", "RunRecord", "RunStart",
           "Undelivered", "bound_tail", "end_values", "run_record", "run_result"]

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
    #: What the run is held to (thresholds, schedule); None: not known (a run that only a
    #: marker knew of).
    spec: JobSpec | None = None
    command: str | None = None
    uid: str | None = None
    #: The PID namespace ``pid`` and ``child_pid`` belong to (jobreport.liveness).
    pid_ns: str | None = None
    #: The command's own process: the run lives on while it does, even without its wrapper.
    child_pid: int | None = None
    child_pid_start: float | None = None
    #: The run holds its group's lock in a store many hosts share (``--lock`` with
    #: PostgreSQL): no other run of the group runs anywhere, so every run of the group left
    #: open, on any host (a pod that vanished), is abandoned.
    exclusive: bool = False


@dataclass(frozen=True)
class RunRecord:
    """One run as the store keeps it: how it started and, once it ended, its result."""

    id: int
    job: str
    grouping: dict[str, str]
    host: str
    pid: int | None
    started: float
    result: RunResult | None = None
    command: str | None = None
    uid: str | None = None
    #: What the run was held to (``history`` marks a success shorter than its minimum).
    spec: JobSpec | None = None

    @property
    def too_short(self) -> bool:
        """A success shorter than the run's minimum runtime."""
        return self.spec is not None and self.spec.too_short(self.outcome, self.duration)

    @property
    def too_small(self) -> bool:
        """A success below the run's minimum size or items."""
        return self.spec is not None and self.result is not None and self.spec.too_small(
            self.outcome, self.result.size, self.result.items)

    @property
    def ended(self) -> float | None:
        return self.result.ended if self.result is not None else None

    @property
    def outcome(self) -> str | None:
        return self.result.outcome if self.result is not None else None

    @property
    def duration(self) -> float | None:
        return self.result.duration if self.result is not None else None

    @property
    def exit_code(self) -> int | None:
        return self.result.exit_code if self.result is not None else None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``jobreport history --json``): the run, its result and what it
        was held to (a key per stored field of its spec)."""
        result = (self.result.to_json() if self.result is not None else
                  {f.metadata["json"] or f.name: [] if f.metadata["column"] == "families"
                   else None for f in RESULT_FIELDS})
        spec = self.spec if self.spec is not None else JobSpec(self.job)
        return {
            "id": self.id,
            "uid": self.uid,
            "job": self.job,
            "labels": {k: v for k, v in self.grouping.items() if k != "job"},
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "command": self.command,
            **result,
            **spec.columns(),
            "too_short": self.too_short,
            "too_small": self.too_small,
        }


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


_TO_COLUMN: dict[str, Callable[[Any], Any]] = {"tail": bound_tail, "families": dump_custom,
                                               "int": column_int, "real": column_real}
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
        command=row["command"], uid=row["uid"], spec=JobSpec.from_columns(row["job"], row),
    )
