"""What a run reports at its end: ``RunResult``, and the metric families a job adds
(``CustomFamily``).

Pure data, cheap to import. Every room derives from ``RunResult``'s fields: the store's
columns (``jobreport.store``), the exposition's gauges (``jobreport.exposition``),
``history --json`` (``jobreport.store.rows.RunRecord``) and the push without a store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, NamedTuple

__all__ = ["RESULT_FIELDS", "RESULT_GAUGES", "CustomFamily", "RunResult", "dump_custom",
           "load_custom"]


# A NamedTuple (immutable, compared by value), not a frozen dataclass: made at every run's end.
class CustomFamily(NamedTuple):
    """A metric family a job added (``gauge()``, ``register()``, the metrics file or
    ``jobreport push``), kept in the store as JSON.

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
    """``families`` as the store keeps them (JSON; None for none)."""
    return json.dumps([f.to_json() for f in families]) if families else None


def load_custom(text: str | None) -> tuple[CustomFamily, ...]:
    """The families ``dump_custom`` wrote."""
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

    A new figure is one new field here (a nullable ``real`` column is added to existing
    stores by the store's migration).
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
    #: ``--size-path``: 0 when a successful run left every path as it found it, else 1.
    output_updated: int | None = _figure(
        "last_output_updated",
        "0 when the last run succeeded but wrote nothing to its --size-path, else 1.", "int")
    cpu_seconds: float | None = _figure(
        "last_cpu_seconds", "User+system CPU seconds of the last run's process tree.")
    max_rss_bytes: float | None = _figure(
        "last_max_rss_bytes", "Peak RSS of the largest process of the last run.")
    tail: str | None = _figure(None, "The last lines of output.", "tail")
    #: What failed a Python block (``job_metrics``): the exception's type and the first
    #: line of its message, secrets masked, at most ``ERROR_MAX_CHARS`` characters. Kept
    #: with the run and shown by ``history``; never pushed (no label carries free text).
    error: str | None = _figure(None, "The error that failed the run.", "text")
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
