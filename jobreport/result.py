"""What a run reports at its end: ``RunResult``, and the metric families a job adds
(``CustomFamily``).

Pure data, cheap to import. Every room derives from ``RunResult``'s fields: the store's
columns (``jobreport.store``), the exposition's gauges (``jobreport.exposition``),
``history --json`` (``jobreport.store.rows.RunRecord``) and the push without a store.
"""

import json
import time
from collections.abc import Mapping
from typing import Annotated, Any, NamedTuple

__all__ = ["RESULT_FIELDS", "RESULT_GAUGES", "CustomFamily", "Figure", "ResultField",
           "RunResult", "dump_custom", "load_custom"]


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
    def from_json(cls, data: Mapping[str, Any]) -> "CustomFamily":
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
    def gauge(cls, name: str, value: float, help: str = "") -> "CustomFamily":
        return cls(name=name, help=help, type="gauge", samples=((name, (), float(value)),))


def dump_custom(families: tuple[CustomFamily, ...]) -> str | None:
    """``families`` as the store keeps them (JSON; None for none)."""
    return json.dumps([f.to_json() for f in families]) if families else None


def load_custom(text: str | None) -> tuple[CustomFamily, ...]:
    """The families ``dump_custom`` wrote."""
    if not text:
        return ()
    return tuple(CustomFamily.from_json(d) for d in json.loads(text))


class Figure(NamedTuple):
    """How each room shows a field of ``RunResult`` (the field's ``Annotated`` metadata):
    its ``metric`` (without namespace; None: not pushed as a gauge of its own), its
    ``help``, the store ``column`` type (``real``, ``int``, ``text``, ``families``,
    ``tail``) and its ``history --json`` key (None: the field's name)."""

    metric: str | None
    help: str
    column: str = "real"
    json: str | None = None


# A NamedTuple, not a frozen dataclass: made at every run's end, and ``dataclasses`` (with
# the ``inspect`` it imports) cost a run about 6 ms that nothing else on its path needs.
class RunResult(NamedTuple):
    """What a run reports at its end: made once, from the child's result (``jobreport run``)
    or from the ``with`` block (``job_metrics``).

    A new figure is one new field here (a nullable ``real`` column is added to existing
    stores by the store's migration).
    """

    ended: Annotated[float, Figure("last_end_timestamp_seconds",
                                   "Unix time the last run ended, any outcome.")]
    duration: Annotated[float, Figure("last_duration_seconds", "Wall time of the last run.")]
    outcome: Annotated[str, Figure(None, "Outcome of the last run.", "text")]
    #: None only for a run the store closed as abandoned (no process reported it).
    exit_code: Annotated[int | None, Figure("last_exit_code", "Exit code of the last run.",
                                            "int")]
    size: Annotated[float | None, Figure("last_size_bytes",
                                         "Bytes the last run produced.")] = None
    items: Annotated[float | None, Figure("last_items",
                                          "Items the last run processed.")] = None
    #: ``--size-path``: 0 when a successful run left every path as it found it, else 1.
    output_updated: Annotated[int | None, Figure(
        "last_output_updated",
        "0 when the last run succeeded but wrote nothing to its --size-path, else 1.",
        "int")] = None
    cpu_seconds: Annotated[float | None, Figure(
        "last_cpu_seconds", "User+system CPU seconds of the last run's process tree.")] = None
    max_rss_bytes: Annotated[float | None, Figure(
        "last_max_rss_bytes", "Peak RSS of the largest process of the last run.")] = None
    tail: Annotated[str | None, Figure(None, "The last lines of output.", "tail")] = None
    #: What failed a Python block (``job_metrics``): the exception's type and the first
    #: line of its message, secrets masked, at most ``ERROR_MAX_CHARS`` characters. Kept
    #: with the run and shown by ``history``; never pushed (no label carries free text).
    error: Annotated[str | None, Figure(None, "The error that failed the run.", "text")] = None
    custom: Annotated[tuple[CustomFamily, ...], Figure(None, "Families the job added.",
                                                       "families", "metrics")] = ()

    @classmethod
    def measured(cls, since_monotonic: float, **values: Any) -> "RunResult":
        """A result that ends now, its duration measured from ``since_monotonic``."""
        values.setdefault("ended", time.time())
        values.setdefault("duration", time.monotonic() - since_monotonic)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The fields as ``history --json`` shows them."""
        values: tuple[Any, ...] = self
        return {f.json: [fam.to_json() for fam in value] if f.column == "families" else value
                for f, value in zip(RESULT_FIELDS, values, strict=True)}


class ResultField(NamedTuple):
    """A field of ``RunResult`` with its ``Figure``: ``json`` is its ``history --json`` key."""

    name: str
    metric: str | None
    help: str
    column: str
    json: str


#: The fields of ``RunResult`` in their order (store columns, JSON keys).
RESULT_FIELDS = tuple(
    ResultField(name, fig.metric, fig.help, fig.column, fig.json or name)
    for name, hint in RunResult.__annotations__.items()
    for fig in hint.__metadata__)
#: The fields pushed as a gauge each, with their metric name and help.
RESULT_GAUGES = tuple((f.metric, f.help, f.name) for f in RESULT_FIELDS if f.metric is not None)
