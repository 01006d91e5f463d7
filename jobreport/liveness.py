"""Is the process of a run still there? Pids with their start times, and PID namespaces.

A pid alone says little: the kernel reuses pids, so a run's process is identified by its pid
together with its start time. And a pid means something only inside one PID namespace: a
container that shares the host's name (host networking) sees other processes under the same
numbers, so a run is judged only by a jobreport in the namespace that recorded it.

Only the standard library and ``/proc`` on the run path; psutil is a fallback elsewhere.
"""

from __future__ import annotations

import os

__all__ = ["alive", "any_alive", "inherited_by_any", "pid_namespace", "process_start"]

#: Two readings of one process's start time differ by less than this (clock ticks, or
#: seconds from psutil): anything further apart is another process under a reused pid.
_SAME_START = 1.0


def process_start(pid: int | None) -> float | None:
    """When process ``pid`` started: clock ticks since boot from /proc on Linux, else
    seconds since the epoch from psutil; None when there is no such process. Only ever
    compared with another value from this function on the same host."""
    if pid is None or pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()
        if fields[0] == b"Z":  # a zombie has ended; only its parent has not reaped it yet
            return None
        return float(fields[19])  # field 22: starttime
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(proc.create_time())
    except Exception:
        return None


def alive(pid: int | None, pid_start: float | None) -> bool:
    """Whether process ``pid`` still runs and is the same process (not a reused pid);
    ``pid_start`` None means "any process under that pid"."""
    started = process_start(pid)
    if started is None:
        return False
    return pid_start is None or abs(started - pid_start) < _SAME_START


def any_alive(*processes: tuple[int | None, float | None]) -> bool:
    """Whether any of the (pid, start time) pairs still runs: a run lives as long as its
    wrapper or its command does."""
    return any(alive(pid, start) for pid, start in processes if pid is not None)


def inherited_by_any(variable: str, value: str) -> bool:
    """Whether a live process of this user has ``variable=value`` in its environment (from
    /proc; False where there is none). The way to find a run's command whose pid nobody
    wrote down: it inherited the run's ``JOBREPORT_RUN_ID``."""
    entry = f"\0{variable}={value}\0".encode("utf-8", "surrogateescape")
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = b"\0" + f.read() + b"\0"
        except OSError:  # gone, or another user's
            continue
        if entry in environ and process_start(int(pid)) is not None:  # not a zombie
            return True
    return False


def pid_namespace() -> str | None:
    """This process's PID namespace (``pid:[4026531836]``), None where there is none to read."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
