"""What a group holds: the state derived from the store, and the run records behind it.

Pure data, cheap to import: the exposition (``jobreport.exposition``) turns a ``GroupState``
into the body of a push.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

__all__ = [
    "PLAN_FIELDS",
    "RESULT_FIELDS",
    "RESULT_GAUGES",
    "CustomFamily",
    "GroupState",
    "RunPlan",
    "RunRecord",
    "RunResult",
    "group_key",
    "grouping_from_key",
]


@dataclass(frozen=True)
class CustomFamily:
    """A metric family a job added (``gauge()`` or ``register()``), kept in the store as JSON.

    ``samples`` are ``(sample name, labels, value)``; timestamps are never kept.
    """

    name: str
    help: str
    type: str
    samples: tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "help": self.help,
            "type": self.type,
            "samples": [[n, dict(labels), v] for n, labels, v in self.samples],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CustomFamily:
        return cls(
            name=str(data["name"]),
            help=str(data.get("help", "")),
            type=str(data.get("type", "gauge")),
            samples=tuple(
                (str(n), tuple(sorted((str(k), str(v)) for k, v in labels.items())), float(val))
                for n, labels, val in data["samples"]
            ),
        )

    @classmethod
    def gauge(cls, name: str, value: float, help: str = "") -> CustomFamily:
        return cls(name=name, help=help, type="gauge", samples=((name, (), float(value)),))


def dump_custom(families: tuple[CustomFamily, ...]) -> str | None:
    return json.dumps([f.to_json() for f in families]) if families else None


def load_custom(text: str | None) -> tuple[CustomFamily, ...]:
    if not text:
        return ()
    return tuple(CustomFamily.from_json(d) for d in json.loads(text))


def _figure(metric: str | None, help: str, column: str = "real", json: str | None = None,
            default: Any = None) -> Any:
    """A field of ``RunResult`` with how each room shows it: ``metric`` (without namespace;
    None: not pushed as a gauge of its own), its ``help``, the store ``column`` type
    (``real``, ``int``, ``text``, ``families``, ``tail``) and its ``history --json`` key."""
    return field(default=default, metadata={"metric": metric, "help": help, "column": column,
                                            "json": json})


@dataclass(frozen=True)
class RunResult:
    """What a run reports at its end: made once, from the child's result (``jobreport run``)
    or from the ``with`` block (``job_metrics``).

    Every room derives from these fields: the store's columns (``jobreport.store``), the
    exposition's gauges (``jobreport.exposition``), ``history --json`` (``RunRecord``) and
    the push without a store. A new figure is one new field here (a nullable ``real``
    column is added to existing stores by the store's migration).
    """

    ended: float = _figure("last_end_timestamp_seconds",
                           "Unix time the last run ended, any outcome.", default=MISSING)
    duration: float = _figure("last_duration_seconds", "Wall time of the last run.",
                              default=MISSING)
    outcome: str = _figure(None, "Outcome of the last run.", "text", default=MISSING)
    #: None only for a run the store closed as abandoned (no process reported it).
    exit_code: int | None = _figure("last_exit_code", "Exit code of the last run.", "int",
                                    default=MISSING)
    size: float | None = _figure("last_size_bytes", "Bytes the last run produced.")
    items: float | None = _figure("last_items", "Items the last run processed.")
    cpu_seconds: float | None = _figure(
        "last_cpu_seconds", "User+system CPU seconds of the last run's process tree.")
    max_rss_bytes: float | None = _figure(
        "last_max_rss_bytes", "Peak RSS of the largest process of the last run.")
    tail: str | None = _figure(None, "The last lines of output.", "tail")
    custom: tuple[CustomFamily, ...] = _figure(None, "Families the job added.", "families",
                                               json="metrics", default=())

    @classmethod
    def measured(cls, since_monotonic: float, **values: Any) -> RunResult:
        """A result that ends now, its duration measured from ``since_monotonic``."""
        values.setdefault("ended", time.time())
        values.setdefault("duration", time.monotonic() - since_monotonic)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The fields as ``history --json`` shows them."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["column"] == "families":
                value = [fam.to_json() for fam in value]
            out[f.metadata["json"] or f.name] = value
        return out


#: The fields of ``RunResult`` in their order (store columns, JSON keys).
RESULT_FIELDS = tuple(fields(RunResult))
#: The fields pushed as a gauge each, with their metric name and help.
RESULT_GAUGES = tuple((f.metadata["metric"], f.metadata["help"], f.name)
                      for f in RESULT_FIELDS if f.metadata["metric"] is not None)


def _threshold(column: str) -> Any:
    """A field of ``RunPlan`` and its store ``column`` type (``real``, ``int``, ``cron``,
    ``zone``: see ``jobreport.store.schema``)."""
    return field(default=None, metadata={"column": column})


@dataclass(frozen=True)
class RunPlan:
    """What a run is held to, fixed when it starts (its thresholds and schedule): made once
    (``Reporter.start``), kept with the run in the store, and given to the group's state
    by ``apply``. Like ``RunResult``, a new threshold is one field here (a nullable column
    of ``jobreport_runs`` the store's migration adds) and one line in ``apply``."""

    #: The job is overdue this long after its last success (expect_every + grace).
    expected_interval: float | None = _threshold("real")
    max_runtime: float | None = _threshold("real")
    # schedules (jobreport.schedule): kept raw, the deadlines derive from them
    schedule: str | None = _threshold("cron")
    timezone: str | None = _threshold("zone")
    grace: float | None = _threshold("real")
    min_runtime: float | None = _threshold("real")
    alert_after_failures: int | None = _threshold("int")

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunPlan:
        """The plan a store row holds (a column per field)."""
        values = {f.name: row[f.name] for f in PLAN_FIELDS}
        if values["alert_after_failures"] is not None:
            values["alert_after_failures"] = int(values["alert_after_failures"])
        return cls(**values)

    def apply(self, state: GroupState, *, known: bool = True) -> None:
        """Give ``state`` this plan's thresholds and the deadlines its schedule sets after
        the state's last start, end and success. ``known=False``: the state is one run's
        alone (no store), see ``schedule.apply_deadlines``."""
        state.expected_interval = self.expected_interval
        state.max_runtime = self.max_runtime
        state.min_runtime = self.min_runtime
        state.alert_after_failures = self.alert_after_failures
        if self.schedule:
            from jobreport.schedule import apply_deadlines

            apply_deadlines(state, self.schedule, self.timezone, grace=self.grace, known=known)


@dataclass
class GroupState:
    """The whole known state of one group (job + grouping labels) at one moment.

    ``None`` means "unknown here": the push leaves that metric out (used when the store is
    unavailable; such a push is a POST, so the gateway keeps what it had).
    """

    job: str
    grouping: dict[str, str]
    running: int = 0
    last_start: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    #: The result of the newest run that ended (skipped runs aside).
    last: RunResult | None = None
    runs_total: dict[str, int] | None = None
    expected_interval: float | None = None
    max_runtime: float | None = None
    last_heartbeat: float | None = None
    # --- schedules (jobreport.schedule): deadlines from the newest run's schedule, and the
    # thresholds of the too-short and failed-N-times alerts
    success_deadline: float | None = None
    start_deadline: float | None = None
    min_runtime: float | None = None
    alert_after_failures: int | None = None
    #: Unsuccessful runs since the last success (skipped runs do not count).
    consecutive_failures: int | None = None
    #: What ``jobreport push`` gave the group (kept in the store).
    pushed: tuple[CustomFamily, ...] = ()
    #: Only these families go out (used for start and heartbeat pushes); None: all known.
    only: frozenset[str] | None = None

    @property
    def custom(self) -> tuple[CustomFamily, ...]:
        """The families of the group's own: pushed values, then the last run's families
        (which win over a pushed family of the same name)."""
        mine = self.last.custom if self.last is not None else ()
        names = {f.name for f in mine}
        return tuple(f for f in self.pushed if f.name not in names) + mine


#: The fields of ``RunPlan`` in their order (store columns).
PLAN_FIELDS = tuple(fields(RunPlan))


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
    #: The run's --min-runtime (``history`` marks a success shorter than it).
    min_runtime: float | None = None

    @property
    def too_short(self) -> bool:
        """A success shorter than the run's minimum runtime."""
        return (self.min_runtime is not None and self.result is not None
                and self.result.outcome == "success"
                and self.result.duration < self.min_runtime)

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
        """A JSON-ready dict (``jobreport history --json``)."""
        result = (self.result.to_json() if self.result is not None else
                  {f.metadata["json"] or f.name: [] if f.metadata["column"] == "families"
                   else None for f in RESULT_FIELDS})
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
            "min_runtime": self.min_runtime,
            "too_short": self.too_short,
        }


def group_key(grouping: Mapping[str, str]) -> str:
    """A canonical text key for a grouping (job included): sorted JSON."""
    return json.dumps(dict(sorted(grouping.items())), ensure_ascii=False, separators=(",", ":"))


def grouping_from_key(key: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in json.loads(key).items()}
