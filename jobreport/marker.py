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

import os
import time

from jobreport import liveness
from jobreport.logger import log
from jobreport.paths import private_dir, state_dir

# not typing's: the wrapper writes the marker before its command starts
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from jobreport.store.rows import RunStart
    from jobreport.store.store import Store

    #: (job, the run's own labels) -> the grouping key: ``Config.grouping``
    GroupingOf = Callable[[str, Mapping[str, str]], dict[str, str]]

__all__ = ["RunMarker", "adopt", "adopt_all", "marker_dir", "markers", "new_marker"]

_FIELDS = ("uid", "job", "host", "started", "pid", "pid_start", "pid_ns", "command",
           "child_pid", "child_pid_start")


def marker_dir() -> str:
    """Where the markers of this user's runs live (``<state dir>/runs``)."""
    return os.path.join(state_dir(), "runs")


class RunMarker:
    """What a wrapper knows of its run before the store does (read-only once made).

    ``grouping`` is the run's grouping key once the settings are resolved; before that
    (the first marker is written before the command starts, and the settings load while it
    runs) it is empty and ``labels`` holds the labels the run was given, from which the
    reader resolves the group with its own settings.

    A plain class, not a dataclass: ``dataclasses`` costs the run path about 10 ms before
    the command starts.
    """

    __slots__ = ("child_pid", "child_pid_start", "command", "grouping", "host", "job",
                 "labels", "pid", "pid_ns", "pid_start", "started", "uid")

    def __init__(self, *, uid: str, job: str, grouping: Mapping[str, str], host: str,
                 started: float, pid: int, pid_start: float | None = None,
                 pid_ns: str | None = None, command: str | None = None,
                 child_pid: int | None = None, child_pid_start: float | None = None,
                 labels: Mapping[str, str] | None = None) -> None:
        self.uid = uid
        self.job = job
        self.grouping = dict(grouping)
        self.labels = dict(labels or {})
        self.host = host
        self.started = started
        self.pid = pid
        self.pid_start = pid_start
        self.pid_ns = pid_ns
        self.command = command
        self.child_pid = child_pid
        self.child_pid_start = child_pid_start

    def __repr__(self) -> str:
        return f"RunMarker(uid={self.uid!r}, job={self.job!r}, grouping={self.grouping!r})"

    @property
    def path(self) -> str:
        return os.path.join(marker_dir(), f"{self.uid}.run")

    def write(self) -> bool:
        """Write (or replace, atomically) the marker; False when it cannot be written."""
        path = self.path
        text = "".join(f"{name}={_escape(getattr(self, name))}\n" for name in _FIELDS)
        text += "".join(f"label.{k}={_escape(v)}\n" for k, v in sorted(self.grouping.items()))
        if not self.grouping:
            text += "".join(f"runlabel.{k}={_escape(v)}\n" for k, v in sorted(self.labels.items()))
        tmp = path[:-len(".run")] + ".tmp"
        try:
            private_dir(os.path.dirname(path))
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

    def with_child(self, pid: int, pid_start: float | None, command: str | None,
                   grouping: Mapping[str, str] | None = None) -> RunMarker:
        """The marker once the command runs: its process, its command line and, once the
        settings are resolved, the run's grouping key."""
        return self._with(child_pid=pid, child_pid_start=pid_start, command=command,
                          grouping=grouping or self.grouping)

    def resolved(self, grouping_of: GroupingOf | None) -> RunMarker:
        """This marker with its grouping key (resolved by ``grouping_of`` when the wrapper
        was killed before it could write it)."""
        if self.grouping or grouping_of is None:
            return self
        return self._with(grouping=grouping_of(self.job, self.labels))

    def _with(self, **changes: Any) -> RunMarker:
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields.update(changes)
        return RunMarker(**fields)

    @property
    def key(self) -> str:
        from jobreport.state import group_key

        return group_key(self.grouping)

    def remove(self) -> None:
        try:  # noqa: SIM105 - contextlib stays off the path before the command starts
            os.unlink(self.path)
        except OSError:
            pass

    def alive(self) -> bool:
        """Whether its wrapper or its command still runs. A wrapper killed in the instant
        between starting the command and writing its pid here leaves a command nobody
        named: it is found by the run id it inherited (``JOBREPORT_RUN_ID``)."""
        if liveness.any_alive((self.pid, self.pid_start),
                              (self.child_pid, self.child_pid_start)):
            return True
        return self.child_pid is None and liveness.inherited_by_any("JOBREPORT_RUN_ID", self.uid)

    def run_start(self) -> RunStart:
        from jobreport.store.rows import RunStart

        return RunStart(job=self.job, grouping=dict(self.grouping),
                        started=self.started, host=self.host, pid=self.pid,
                        pid_start=self.pid_start, command=self.command, uid=self.uid,
                        pid_ns=self.pid_ns, child_pid=self.child_pid,
                        child_pid_start=self.child_pid_start)


def markers(key: str | None = None, grouping_of: GroupingOf | None = None) -> list[RunMarker]:
    """The markers of group ``key`` (every group: None) that can be read, each with its
    grouping key (``grouping_of`` resolves those written before the settings were)."""
    found = []
    try:
        names = sorted(name for name in os.listdir(marker_dir()) if name.endswith(".run"))
    except OSError:
        return []
    for name in names:
        marker = _read(os.path.join(marker_dir(), name))
        if marker is None:
            continue
        marker = marker.resolved(grouping_of)
        if key is None or marker.key == key:
            found.append(marker)
    return found


def adopt(store: Store, key: str | None, host: str,
          grouping_of: GroupingOf | None = None) -> int:
    """Open in ``store`` the runs of group ``key`` (every group: None) that only a marker
    knows and whose processes are gone, so that the store closes them as abandoned (see
    ``Store.open_run``); forget markers of runs the store already has. Judges only markers
    of this host and PID namespace. Returns how many runs were opened."""
    opened = 0
    for marker in _orphaned(markers(key, grouping_of), host):
        if store.get_run(marker.uid) is None:
            store.open_run(marker.run_start())
            opened += 1
        marker.remove()
    return opened


def adopt_all(store: Store, host: str, grouping_of: GroupingOf | None = None) -> int:
    """``jobreport flush``: every run only a marker knows whose processes are gone is
    recorded and closed as abandoned at once (no new run of its group may come to do it),
    so that its group is pending and gets delivered. Returns how many were."""

    closed = 0
    for marker in _orphaned(markers(None, grouping_of), host):
        if store.get_run(marker.uid) is None:
            store.open_run(marker.run_start())
            closed += 1
        start = marker.run_start()._replace(started=time.time(), pid=None, uid=None)
        store.close_abandoned(start, alive=liveness.alive)
        marker.remove()
    return closed


def _orphaned(found: list[RunMarker], host: str) -> list[RunMarker]:
    """Those of ``found`` that this jobreport may judge (its host and PID namespace) and
    whose wrapper and command are both gone."""
    namespace = liveness.pid_namespace()
    return [marker for marker in found
            if marker.host == host and marker.pid_ns == namespace and not marker.alive()]


def _read(path: str) -> RunMarker | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    values: dict[str, Any] = {}
    grouping: dict[str, str] = {}
    labels: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, raw = line.partition("=")
        if sep and name.startswith("label."):
            grouping[name[len("label."):]] = _unescape(raw)
        elif sep and name.startswith("runlabel."):
            labels[name[len("runlabel."):]] = _unescape(raw)
        elif sep:
            values[name] = _unescape(raw)
    try:
        return RunMarker(
            uid=values["uid"], job=values["job"], grouping=grouping, labels=labels,
            host=values["host"], started=float(values["started"]), pid=int(values["pid"]),
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
    # what the unicode_escape codec writes, without loading the codec before the start
    return ascii(str(value))[1:-1]


def _unescape(raw: str) -> str:
    return raw.encode("ascii", "replace").decode("unicode_escape")


def _number(raw: str | None) -> float | None:
    return float(raw) if raw else None


def new_marker(uid: str, job: str, grouping: Mapping[str, str] | None = None,
               labels: Mapping[str, str] | None = None) -> RunMarker:
    """The marker of a run of this process that starts now: its grouping key (job,
    instance and the extra labels, as ``Config.grouping`` gives them) when the settings are
    already resolved, else the labels the run was given."""
    pid = os.getpid()
    return RunMarker(uid=uid, job=job, grouping=grouping or {}, labels=labels,
                     host=os.uname().nodename,
                     started=time.time(), pid=pid, pid_start=liveness.process_start(pid),
                     pid_ns=liveness.pid_namespace())
