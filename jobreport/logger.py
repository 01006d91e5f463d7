"""jobreport's logger, ``log``: the standard ``logging`` package loads on its first use;
``unexpected`` logs a bug as one warning line, and ``notice_once`` keeps a notice to once
per process.

``logging`` brings traceback, textwrap and string with it, whose regular expressions cost
about as much as the interpreter's own start, and ``jobreport run`` has no reason to pay that
before its command starts when it has nothing to say. ``on_load`` registers what is to be
set up once logging is loaded (the command line's one-line stderr handler); ``load`` loads
it (the wrapper calls it as soon as the command has started, before the reporter, whose
modules use ``logging`` directly).
"""

from __future__ import annotations

# _thread rather than threading, and not typing's TYPE_CHECKING: this module is on the
# path of `jobreport run` before its command starts
import _thread
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from typing import Any

__all__ = ["forget_notices", "load", "log", "notice_once", "on_load", "unexpected"]

_lock = _thread.allocate_lock()
_pending: list[Callable[[], object]] = []
_loaded: list[logging.Logger] = []  # the logger, once loaded
_noticed: set[str] = set()


def on_load(setup: Callable[[], object]) -> None:
    """Call ``setup`` once ``logging`` is loaded (at once if it already is)."""
    with _lock:
        if not _loaded:
            _pending.append(setup)
            return
    setup()


def load() -> logging.Logger:
    """The ``jobreport`` logger, with what ``on_load`` registered set up."""
    with _lock:
        if not _loaded:
            import logging

            for setup in _pending:
                setup()
            _pending.clear()
            _loaded.append(logging.getLogger("jobreport"))
        return _loaded[0]


class _Log:
    """Stands for the ``jobreport`` logger: using any of its attributes loads it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(load(), name)


#: The ``jobreport`` logger, loaded on first use.
log: logging.Logger = _Log()  # type: ignore[assignment]


def unexpected(message: str, *args: object) -> None:
    """Log a bug in reporting as one warning line (never a traceback in a job's output);
    the traceback goes to the debug level for whoever turns it on."""
    exc = sys.exc_info()[1]
    log.warning("jobreport: " + message + ": %s: %s (a bug: please report it)",
                *args, type(exc).__name__, exc)
    log.debug("jobreport: traceback", exc_info=True)


def notice_once(what: str) -> bool:
    """True the first time ``what`` is noticed in this process (a notice given once)."""
    with _lock:
        first = what not in _noticed
        _noticed.add(what)
        return first


def forget_notices() -> None:
    """Forget the notices given (tests, through ``jobreport.runs.SHARED.reset``)."""
    with _lock:
        _noticed.clear()
