"""What a group holds: the state derived from the store, and the run records behind it.

Pure data, cheap to import: the exposition (``jobreport.exposition``) turns a ``GroupState``
into the body of a push.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CustomFamily", "GroupState", "RunRecord", "group_key", "grouping_from_key"]


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


@dataclass
class GroupState:
    """The whole known state of one group (job + grouping labels) at one moment.

    ``None`` means "unknown here": the push leaves that metric out, and since every push is
    a POST the gateway keeps what it had (used when the store is unavailable).
    """

    job: str
    grouping: dict[str, str]
    running: int = 0
    last_start: float | None = None
    last_end: float | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_duration: float | None = None
    last_exit_code: int | None = None
    last_outcome: str | None = None
    runs_total: dict[str, int] | None = None
    last_size: float | None = None
    last_items: float | None = None
    last_cpu_seconds: float | None = None
    last_max_rss_bytes: float | None = None
    expected_interval: float | None = None
    max_runtime: float | None = None
    last_heartbeat: float | None = None
    custom: tuple[CustomFamily, ...] = ()
    #: Only these families go out (used for start and heartbeat pushes); None: all known.
    only: frozenset[str] | None = None


@dataclass(frozen=True)
class RunRecord:
    """One run as the store keeps it."""

    id: int
    job: str
    grouping: dict[str, str]
    host: str
    pid: int | None
    started: float
    ended: float | None
    duration: float | None
    outcome: str | None
    exit_code: int | None
    size: float | None = None
    items: float | None = None
    cpu_seconds: float | None = None
    max_rss_bytes: float | None = None
    command: str | None = None
    tail: str | None = None
    custom: tuple[CustomFamily, ...] = field(default=())
    uid: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``jobreport history --json``)."""
        return {
            "id": self.id,
            "uid": self.uid,
            "job": self.job,
            "labels": {k: v for k, v in self.grouping.items() if k != "job"},
            "host": self.host,
            "pid": self.pid,
            "started": self.started,
            "ended": self.ended,
            "duration": self.duration,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "size": self.size,
            "items": self.items,
            "cpu_seconds": self.cpu_seconds,
            "max_rss_bytes": self.max_rss_bytes,
            "command": self.command,
            "tail": self.tail,
            "metrics": [f.to_json() for f in self.custom],
        }


def group_key(grouping: Mapping[str, str]) -> str:
    """A canonical text key for a grouping (job included): sorted JSON."""
    return json.dumps(dict(sorted(grouping.items())), ensure_ascii=False, separators=(",", ":"))


def grouping_from_key(key: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in json.loads(key).items()}
