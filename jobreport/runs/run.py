"""``Run``: one run in progress, as the ``Recorder`` and the threads that report it share it
(its start worker, its heartbeats, the thread that records its end)."""

from __future__ import annotations

import os
import threading

from jobreport.spec import JobSpec
from jobreport.state import group_key

__all__ = ["Run"]


class Run:
    """One run in progress: what it is (job, grouping, when it started, its spec, its
    processes), its ids, and the events its threads share. One object per run, compared
    by identity (a plain class: a dataclass's generated methods cost about 0.5 ms to make
    at every run's end, and nothing compares runs by value)."""

    __slots__ = ("_ended", "_lock", "_opening", "_ready", "child_pid", "child_pid_start",
                 "command", "exclusive", "grouping", "id", "job", "monotonic_start",
                 "pid", "spec", "started", "uid")

    def __init__(self, job: str, grouping: dict[str, str], started: float,
                 monotonic_start: float, spec: JobSpec, *, pid: int | None = None,
                 command: str | None = None, child_pid: int | None = None,
                 child_pid_start: float | None = None, exclusive: bool = False,
                 uid: str | None = None) -> None:
        self.job = job
        self.grouping = grouping
        self.started = started
        self.monotonic_start = monotonic_start
        #: What the run is held to: laid over the job's config section once, at its start,
        #: and kept with it in the store.
        self.spec = spec
        self.pid = pid
        self.command = command
        #: The command's process (``jobreport run``): the run lives while it or ``pid`` does.
        self.child_pid = child_pid
        self.child_pid_start = child_pid_start
        #: The run holds its group's lock in a store many hosts share (``RunStart.exclusive``).
        self.exclusive = exclusive
        #: The run's id before the store gives it one (``$JOBREPORT_RUN_ID`` for a child).
        self.uid = uid if uid is not None else os.urandom(8).hex()
        self.id: int | None = None
        #: Set when the run ends (``stop``); the start worker waits on it before opening
        #: the run.
        self._ended = threading.Event()
        #: Set when the start worker is done (run opened in the store, start pushed or
        #: skipped).
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._opening = False

    def __repr__(self) -> str:
        return (f"Run(job={self.job!r}, grouping={self.grouping!r}, uid={self.uid!r}, "
                f"id={self.id!r})")

    @property
    def key(self) -> str:
        return group_key(self.grouping)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def stop(self) -> bool:
        """The run is over: no start push or heartbeat begins after this (its end may be
        recorded later, by another thread). True when the start worker is already opening
        the run, whose end must then wait for it."""
        with self._lock:
            self._ended.set()
            return self._opening
