"""How the child's end becomes an outcome and an exit code: a wait status (exit code, signal
N → 128+N, SIGINT → interrupted, timeout → 124) or a failure to start it (127 not found, 126
not executable, with the reason a person can act on), and ``ProcessResult``, how one run of
a command went. Loaded once the command has started."""

from __future__ import annotations

import errno
import os
import signal
import sys
from typing import NamedTuple

from jobreport import outcomes
from jobreport.logger import log

__all__ = ["ProcessResult", "classify", "describe_spawn_error", "rss_bytes", "say_outcome"]


# A NamedTuple (immutable, compared by value) rather than a frozen dataclass: a dataclass's
# generated methods cost about 0.5 ms to make at every run's end (benchmarks/README.md).
class ProcessResult(NamedTuple):
    """How one run of a command went.

    ``exit_code`` is what ``jobreport run`` exits with: the child's own code, 128+N when it
    died of signal N, 124 after a timeout, 126/127 when it could not be started.
    """

    exit_code: int
    outcome: str
    signal: int | None
    """The signal that killed the child, if one did."""
    started_at: float
    """Unix time just before the child was started."""
    ended_at: float
    """Unix time when the child had been reaped."""
    duration: float
    """Seconds between start and end, from the monotonic clock."""
    cpu_seconds: float | None
    """User+system CPU time of every reaped process of the tree (None: nothing ran)."""
    max_rss_bytes: int | None
    """Peak resident set size of the largest single process of the tree."""
    tail: str | None
    """Last lines of stdout and stderr, in arrival order (None: not captured)."""
    error: str | None
    """Why the command could not be started (126/127), else None."""
    pid: int | None
    timed_out: bool = False


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


def say_outcome(job: str, result: ProcessResult, timeout: float | None) -> None:
    """One line on stderr for an outcome the command cannot tell itself (killed by our
    timeout or by a signal), so that a cron mail says what happened."""
    code = result.exit_code
    if result.outcome == outcomes.TIMEOUT:
        from jobreport.durations import format_duration

        limit = format_duration(timeout) if timeout else "its timeout"
        log.warning("jobreport: %s timed out after %s; killed the command (exit %d)",
                    job, limit, code)
    elif result.outcome in (outcomes.SIGNAL, outcomes.INTERRUPTED) and result.signal is not None:
        log.warning("jobreport: %s was ended by signal %d (%s) (exit %d)",
                    job, result.signal, _signal_name(result.signal), code)
    # a failure (a non-zero exit) is the command's own to explain: it gets no line of ours


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
