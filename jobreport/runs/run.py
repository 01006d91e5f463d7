"""``Run``: one run in progress, as the ``Recorder`` and the threads that report it share it
(its start worker, its heartbeats, the thread that records its end)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from jobreport.spec import JobSpec
from jobreport.state import group_key

__all__ = ["Run"]


@dataclass
class Run:
    """One run in progress."""

    job: str
    grouping: dict[str, str]
    started: float
    monotonic_start: float
    #: What the run is held to: laid over the job's config section once, at its start,
    #: and kept with it in the store.
    spec: JobSpec
    pid: int | None = None
    command: str | None = None
    #: The command's process (``jobreport run``): the run lives while it or ``pid`` does.
    child_pid: int | None = None
    child_pid_start: float | None = None
    #: The run holds its group's lock in a store many hosts share (``RunStart.exclusive``).
    exclusive: bool = False
    #: The run's id before the store gives it one (``$JOBREPORT_RUN_ID`` for a child).
    uid: str = field(default_factory=lambda: os.urandom(8).hex())
    id: int | None = None
    ended: bool = False
    #: Set when the run ends; the start worker waits on it before opening the run.
    _ended: threading.Event = field(default_factory=threading.Event, repr=False)
    #: Set when the start worker is done (run opened in the store, start pushed or skipped).
    _ready: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _opening: bool = False

    @property
    def key(self) -> str:
        return group_key(self.grouping)

    def stop(self) -> bool:
        """The run is over: no start push or heartbeat begins after this (its end may be
        recorded later, by another thread). True when the start worker is already opening
        the run, whose end must then wait for it."""
        with self._lock:
            self.ended = True
            opening = self._opening
        self._ended.set()
        return opening
