"""The seams between jobreport's rooms, as Protocols: what a collaborator must do, so that
each can be replaced by a fake in tests (no ``type: ignore``) or by another implementation.

The sink seam (``Sink``) lives with the delivery results in ``jobreport.sinks.base`` and is
re-exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from jobreport.sinks.base import Sink

if TYPE_CHECKING:
    from collections.abc import Mapping

    from jobreport.result import RunResult
    from jobreport.spec import JobSpec

__all__ = ["RunReporter", "Sink"]


class RunReporter(Protocol):
    """What the wrapper (``jobreport run``) asks of a reporter; ``jobreport.runs.Recorder``
    is the real one. The run handle ``start`` returns is opaque to the caller: it is only
    handed back to ``heartbeat`` and ``finish``."""

    def start(self, spec: JobSpec, *, command: str | None = ..., wait: float | None = ...,
              uid: str | None = ..., child_pid: int | None = ...,
              child_pid_start: float | None = ..., exclusive: bool = ...) -> Any:
        """Open a run held to ``spec`` and push its start in the background; never raises
        for trouble with the store or a sink. ``exclusive``: the run holds its group's lock
        in a store many hosts share."""
        ...

    def heartbeat(self, run: Any) -> None:
        """Say that ``run`` is still alive."""
        ...

    def finish(self, run: Any, result: RunResult, *,
               held_to: Mapping[str, Any] | None = ...) -> bool:
        """Close ``run`` with ``result`` and deliver its group; True when every sink has it.
        ``held_to``: values of its spec that its end gave (thresholds the command wrote to
        its metrics file), over what the run was held to from its config section."""
        ...

    def record_skipped(self, spec: JobSpec, *, command: str | None = ...) -> Any:
        """Record a run that did not start because another one holds the lock."""
        ...
