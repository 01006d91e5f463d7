"""What the store's readers hand back: a run as the store keeps it (``history``,
``get_run``) and where a group stands with a sink (``pending``, ``undelivered``). Apart
from ``rows`` because a run never reads them: their classes are not made at every run's
end."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobreport.result import RESULT_FIELDS, RunResult
from jobreport.spec import JobSpec
from jobreport.state import grouping_from_key
from jobreport.store.rows import run_result

__all__ = ["PendingGroup", "RunRecord", "Undelivered", "run_record"]


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
                  {f.json: [] if f.column == "families"
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


def run_record(row: Mapping[str, Any]) -> RunRecord:
    """A run row as a ``RunRecord``."""
    return RunRecord(
        id=row["id"], job=row["job"], grouping=grouping_from_key(row["group_key"]),
        host=row["host"], pid=row["pid"], started=row["started"], result=run_result(row),
        command=row["command"], uid=row["uid"], spec=JobSpec.from_columns(row["job"], row),
    )
