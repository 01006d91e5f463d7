"""The process tree of a wrapped command: find it (children, descendants, orphans handed to
us as subreaper), signal it, wait for it. psutil is imported only here, when a timeout has
to stop the whole tree."""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False  # not typing's: importing typing costs every `jobreport run`
if TYPE_CHECKING:
    from typing import Any

__all__ = ["alive", "get_subreaper", "merge", "own_children", "prctl", "signal_tree", "tree",
           "wait_gone"]

_PR_GET_CHILD_SUBREAPER = 37


def own_children() -> set[int]:
    """Pids of this process's children (cheap /proc read on Linux, psutil elsewhere)."""
    pids: set[int] = set()
    try:
        tasks = os.listdir("/proc/self/task")
        for tid in tasks:
            try:
                with open(f"/proc/self/task/{tid}/children", "rb") as f:  # no codec to load
                    pids.update(int(p) for p in f.read().split())
            except FileNotFoundError:
                continue  # the thread just ended
        return pids
    except OSError:
        import psutil

        return {p.pid for p in psutil.Process().children()}


def tree(pid: int, foreign: set[int]) -> list[Any]:
    """The child and every descendant of it still alive, plus orphans handed to us."""
    import psutil

    found: dict[int, psutil.Process] = {}
    roots = [pid, *(own_children() - foreign - {pid})]
    for root_pid in roots:
        try:
            root = psutil.Process(root_pid)
            found[root.pid] = root
            for p in root.children(recursive=True):
                found[p.pid] = p
        except psutil.Error:
            continue
    return [p for p in found.values() if alive(p)]


def alive(proc: Any) -> bool:
    import psutil

    try:
        return bool(proc.is_running()) and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(procs: list[Any], until: float) -> bool:
    """Poll until every process has ended (zombies count as ended) or ``until`` passes."""
    while any(alive(p) for p in procs):
        if time.monotonic() >= until:
            return False
        time.sleep(0.05)
    return True


def merge(old: list[Any], new: list[Any]) -> list[Any]:
    by_pid = {p.pid: p for p in old}
    by_pid.update({p.pid: p for p in new})
    return list(by_pid.values())


def signal_tree(pid: int, tree: list[Any], signum: int, own_group: bool) -> None:
    import psutil

    if own_group:
        try:  # noqa: SIM105 - contextlib stays off the path before the command starts
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass
    for proc in tree:
        try:
            if own_group and os.getpgid(proc.pid) == pid:
                continue  # killpg reached it: a second SIGTERM could cut its own clean-up short
            proc.send_signal(signum)  # psutil checks the pid was not reused
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue


def prctl(option: int, value: int) -> bool:
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def get_subreaper() -> int | None:
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        value = ctypes.c_int(0)
        if int(libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0)) != 0:
            return None
        return int(value.value)
    except (OSError, AttributeError):
        return None
