"""How the child's end becomes an outcome and an exit code: a wait status (exit code, signal
N → 128+N, SIGINT → interrupted, timeout → 124) or a failure to start it (127 not found, 126
not executable, with the reason a person can act on)."""

from __future__ import annotations

import errno
import os
import signal
import sys

from jobreport import outcomes

__all__ = ["classify", "describe_spawn_error", "returncode", "rss_bytes"]


def classify(status: int | None, timed_out: bool) -> tuple[int, str, int | None]:
    signum = None
    if status is not None and os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
    if timed_out:
        return outcomes.EXIT_TIMEOUT, outcomes.TIMEOUT, signum
    if status is None:  # somebody else reaped it: nothing is known
        return 255, outcomes.FAILURE, None
    if signum is not None:
        if signum == signal.SIGINT:
            return 128 + signum, outcomes.INTERRUPTED, signum
        return 128 + signum, outcomes.SIGNAL, signum
    code = os.waitstatus_to_exitcode(status)
    return code, outcomes.SUCCESS if code == 0 else outcomes.FAILURE, None


def returncode(status: int | None) -> int:
    if status is None:
        return 255
    return os.waitstatus_to_exitcode(status)


def describe_spawn_error(command: str, exc: OSError) -> tuple[int, str, str]:
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if os.sep in command and os.path.isfile(command):
            # exec says ENOENT for an existing file when its #! interpreter is missing
            return (
                outcomes.EXIT_NOT_EXECUTABLE,
                outcomes.NOT_EXECUTABLE,
                f"{command}: bad interpreter (the program named after #! does not exist)",
            )
        shown = command or "''"
        where = "" if os.sep in command or not command else " (searched PATH)"
        return outcomes.EXIT_NOT_FOUND, outcomes.NOT_FOUND, f"{shown}: command not found{where}"
    if os.sep in command and os.path.isdir(command):
        reason = "is a directory"
    return (outcomes.EXIT_NOT_EXECUTABLE, outcomes.NOT_EXECUTABLE,
            f"{command}: cannot execute: {reason}")


def rss_bytes(maxrss: int) -> int:
    return maxrss if sys.platform == "darwin" else maxrss * 1024
