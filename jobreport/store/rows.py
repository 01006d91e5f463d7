"""The store's rows as a run writes them: what a run start holds, and how a ``RunResult``
maps to its columns and back (one converter per kind of field, so that a new figure needs
no edit here; a run's ``JobSpec`` maps itself: ``JobSpec.columns``). What the store's
readers hand back (a run as kept, where a group stands with a sink) is in ``read_rows``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from jobreport.numbers import column_int, column_real
from jobreport.result import RESULT_FIELDS, RunResult, dump_custom, load_custom
from jobreport.spec import BY_NAME, TAIL_MAX_BYTES, JobSpec

__all__ = ["DEFAULT_SINK", "TAIL_MAX_BYTES", "RunStart", "bound_tail", "end_values",
           "run_result", "spec_values"]

#: The sink whose marks ``pending()`` and friends read unless told otherwise.
DEFAULT_SINK = "pushgateway"


# A NamedTuple (immutable, compared by value), not a frozen dataclass: made at every run's end.
class RunStart(NamedTuple):
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


def spec_values(spec: JobSpec) -> dict[str, Any]:
    """The columns of what a run is held to (``JobSpec.columns``), each held to what its
    column takes: a spec made in Python without its door may hold any number, and a run is
    never lost to one."""
    values: dict[str, Any] = {}
    for name, value in spec.columns().items():
        convert = _TO_COLUMN.get(str(BY_NAME[name].column))
        values[name] = convert(value) if convert is not None else value
    return values


def end_values(result: RunResult, seq: int) -> dict[str, Any]:
    """The columns of ``result`` (and the seq its end made)."""
    values: dict[str, Any] = {}
    for f in RESULT_FIELDS:
        value = getattr(result, f.name)
        convert = _TO_COLUMN.get(f.column)
        values[f.name] = convert(value) if convert is not None else value
    values["closed_seq"] = seq
    return values


def run_result(row: Mapping[str, Any]) -> RunResult | None:
    """The result a run row holds (None while the run is open)."""
    if row["ended"] is None:
        return None
    values: dict[str, Any] = {}
    for f in RESULT_FIELDS:
        convert = _FROM_COLUMN.get(f.column)
        values[f.name] = convert(row[f.name]) if convert is not None else row[f.name]
    return RunResult(**values)
