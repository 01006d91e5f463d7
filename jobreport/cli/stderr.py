"""jobreport's own warnings on stderr, one line each (a cron mail or a journal shows them
as they are; an exception is named, never printed with its traceback)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["log_to_stderr"]


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            message += f" ({type(exc).__name__}{': ' + first if first else ''})"
        return message


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (CliRunner swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def log_to_stderr(quiet: bool = False) -> Callable[[], None]:
    """Show jobreport's warnings as one line each on stderr; return what undoes it."""
    logger = logging.getLogger("jobreport")
    handler = _Stderr()
    handler.setFormatter(_OneLine())
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR if quiet else logging.WARNING)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    return restore
