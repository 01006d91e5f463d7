"""The outcomes of a run and the exit codes that go with them."""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: importing typing costs every `jobreport run`
if TYPE_CHECKING:
    from typing import Final

SUCCESS: Final = "success"
FAILURE: Final = "failure"
TIMEOUT: Final = "timeout"
SIGNAL: Final = "signal"
NOT_FOUND: Final = "not_found"
NOT_EXECUTABLE: Final = "not_executable"
INTERRUPTED: Final = "interrupted"
ABANDONED: Final = "abandoned"
SKIPPED: Final = "skipped"

#: Every outcome, in the order the state set ``jobreport_last_outcome`` lists them.
OUTCOMES: Final = (
    SUCCESS,
    FAILURE,
    TIMEOUT,
    SIGNAL,
    NOT_FOUND,
    NOT_EXECUTABLE,
    INTERRUPTED,
    ABANDONED,
    SKIPPED,
)

EXIT_TIMEOUT: Final = 124
EXIT_NOT_EXECUTABLE: Final = 126
EXIT_NOT_FOUND: Final = 127
EXIT_INTERRUPTED: Final = 130


def from_exception(exc: BaseException | None) -> tuple[str, int]:
    """Outcome and exit code of a ``with job_metrics(...)`` body that raised ``exc``.

    ``SystemExit(0)``/``SystemExit(None)`` is a success, ``SystemExit(n)`` a failure with
    code n (1 when n is not an int, 255 when it is beyond 32 bits); ``GeneratorExit`` (a
    generator closed before its end by its consumer: a ``break``) is a success;
    ``KeyboardInterrupt`` is interrupted (130), and so is every other exception that is
    not an ``Exception``, which is how a cancellation
    stops code from outside: ``asyncio.CancelledError`` (a task cancelled, a caller's
    ``asyncio.timeout`` or ``wait_for`` expiring, Ctrl-C under ``asyncio.run``, which cancels
    the main task), trio's ``Cancelled``; any other exception is a failure with code 1.
    """
    if exc is None or isinstance(exc, GeneratorExit):
        return SUCCESS, 0
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None or code == 0:
            return SUCCESS, 0
        if isinstance(code, int) and not isinstance(code, bool):
            from jobreport.numbers import exit_code

            return FAILURE, exit_code(code)
        return FAILURE, 1
    if not isinstance(exc, Exception):  # KeyboardInterrupt, a cancellation
        return INTERRUPTED, EXIT_INTERRUPTED
    return FAILURE, 1


def cancelled(exc: BaseException) -> bool:
    """``exc`` is asyncio's CancelledError (asyncio is not loaded for this: no task can be
    cancelled where it never was)."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)
