"""The run is durable before the command starts: a marker file per run of ``jobreport run``.

Opening a run in the store loads the store and takes a write lock, which the wrapper does in
the background once the command runs. A wrapper killed before that (SIGKILL within a few
milliseconds of the start) would leave no trace, so before the command starts the wrapper
writes a tiny marker (standard library only, no fsync: a crash of the whole host is a reboot,
and the store records those runs neither). The marker names the run, its wrapper and, once
it has started, the command; it is removed when the run has ended. The next run (or flush)
of the group turns a marker whose processes are all gone, and whose run the store does not
know, into an open run that the store then closes as ``abandoned``.

Format: one ``name=value`` line per field, values with backslash escapes.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from jobreport import liveness
from jobreport.logger import log
from jobreport.paths import private_dir

TYPE_CHECKING = False  # not typing's: importing typing costs every `jobreport run`
if TYPE_CHECKING:
    from typing import Any

    from jobreport.store.store import RunStart, Store

__all__ = ["RunMarker", "adopt", "adopt_all", "marker_dir", "markers", "new_marker"]

_FIELDS = ("uid", "job", "host", "started", "pid", "pid_start", "pid_ns", "command",
           "child_pid", "child_pid_start")


def marker_dir() -> Path:
    """Where the markers of this user's runs live (``<state dir>/runs``)."""
    from jobreport.config import state_dir

    return state_dir() / "runs"


@dataclass(frozen=True)
class RunMarker:
    """What a wrapper knows of its run before the store does."""

    uid: str
    job: str
    grouping: dict[str, str] = field(compare=False)
    host: str
    started: float
    pid: int
    pid_start: float | None = None
    pid_ns: str | None = None
    command: str | None = None
    child_pid: int | None = None
    child_pid_start: float | None = None

    @property
    def path(self) -> Path:
        return marker_dir() / f"{self.uid}.run"

    def write(self) -> bool:
        """Write (or replace, atomically) the marker; False when it cannot be written."""
        path = self.path
        text = "".join(f"{name}={_escape(getattr(self, name))}\n" for name in _FIELDS)
        text += "".join(f"label.{k}={_escape(v)}\n" for k, v in sorted(self.grouping.items()))
        tmp = path.with_suffix(".tmp")
        try:
            private_dir(path.parent)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, text.encode("utf-8", "backslashreplace"))
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as e:
            log.warning("jobreport: cannot write the run marker %s: %s", path, e.strerror)
            return False
        return True

    def with_child(self, pid: int, pid_start: float | None, command: str) -> RunMarker:
        """The marker once the command runs: its process and its command line."""
        return replace(self, child_pid=pid, child_pid_start=pid_start, command=command)

    @property
    def key(self) -> str:
        from jobreport.records import group_key

        return group_key(self.grouping)

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def alive(self) -> bool:
        """Whether its wrapper or its command still runs."""
        return liveness.any_alive((self.pid, self.pid_start),
                                  (self.child_pid, self.child_pid_start))

    def run_start(self) -> RunStart:
        from jobreport.store.store import RunStart

        return RunStart(job=self.job, grouping=dict(self.grouping),
                        started=self.started, host=self.host, pid=self.pid,
                        pid_start=self.pid_start, command=self.command, uid=self.uid,
                        pid_ns=self.pid_ns, child_pid=self.child_pid,
                        child_pid_start=self.child_pid_start)


def markers(key: str | None = None) -> list[RunMarker]:
    """The markers of group ``key`` (every group: None) that can be read."""
    found = []
    try:
        paths = sorted(marker_dir().glob("*.run"))
    except OSError:
        return []
    for path in paths:
        marker = _read(path)
        if marker is not None and (key is None or marker.key == key):
            found.append(marker)
    return found


def adopt(store: Store, key: str | None, host: str) -> int:
    """Open in ``store`` the runs of group ``key`` (every group: None) that only a marker
    knows and whose processes are gone, so that the store closes them as abandoned (see
    ``Store.open_run``); forget markers of runs the store already has. Judges only markers
    of this host and PID namespace. Returns how many runs were opened."""
    namespace = liveness.pid_namespace()
    opened = 0
    for marker in markers(key):
        if marker.host != host or marker.pid_ns != namespace or marker.alive():
            continue
        if store.get_run(marker.uid) is None:
            store.open_run(marker.run_start())
            opened += 1
        marker.remove()
    return opened


def adopt_all(store: Store, host: str) -> int:
    """``jobreport flush``: every run only a marker knows whose processes are gone is
    recorded and closed as abandoned at once (no new run of its group may come to do it),
    so that its group is pending and gets delivered. Returns how many were."""
    namespace = liveness.pid_namespace()
    closed = 0
    for marker in markers():
        if marker.host != host or marker.pid_ns != namespace or marker.alive():
            continue
        if store.get_run(marker.uid) is None:
            store.open_run(marker.run_start())
            closed += 1
        start = replace(marker.run_start(), started=time.time(), pid=None, uid=None)
        store.close_abandoned(start, alive=liveness.alive)
        marker.remove()
    return closed


def _read(path: Path) -> RunMarker | None:
    try:
        text = path.read_text("utf-8", "replace")
    except OSError:
        return None
    values: dict[str, Any] = {}
    grouping: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, raw = line.partition("=")
        if sep and name.startswith("label."):
            grouping[name[len("label."):]] = _unescape(raw)
        elif sep:
            values[name] = _unescape(raw)
    try:
        return RunMarker(
            uid=values["uid"], job=values["job"], grouping=grouping, host=values["host"],
            started=float(values["started"]), pid=int(values["pid"]),
            pid_start=_number(values.get("pid_start")), pid_ns=values.get("pid_ns") or None,
            command=values.get("command"),
            child_pid=int(values["child_pid"]) if values.get("child_pid") else None,
            child_pid_start=_number(values.get("child_pid_start")),
        )
    except (KeyError, ValueError):
        return None


def _escape(value: object) -> str:
    if value is None:
        return ""
    return str(value).encode("unicode_escape").decode("ascii")


def _unescape(raw: str) -> str:
    return raw.encode("ascii", "replace").decode("unicode_escape")


def _number(raw: str | None) -> float | None:
    return float(raw) if raw else None


def new_marker(uid: str, job: str, grouping: dict[str, str]) -> RunMarker:
    """The marker of a run of this process that starts now (its grouping labels: job,
    instance and the extra labels, as ``Config.grouping`` gives them)."""
    pid = os.getpid()
    return RunMarker(uid=uid, job=job, grouping=dict(grouping), host=os.uname().nodename,
                     started=time.time(), pid=pid, pid_start=liveness.process_start(pid),
                     pid_ns=liveness.pid_namespace())
