"""jobreport's logger, ``log``: the standard ``logging`` package loads on its first use.

``logging`` brings traceback, textwrap and string with it, whose regular expressions cost
about as much as the interpreter's own start, and ``jobreport run`` has no reason to pay that
before its command starts when it has nothing to say. ``on_load`` registers what is to be
set up once logging is loaded (the command line's one-line stderr handler); ``load`` loads
it (the wrapper calls it as soon as the command has started, before the reporter, whose
modules use ``logging`` directly).
"""

from __future__ import annotations

import _thread

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from typing import Any

__all__ = ["load", "log", "on_load"]

_lock = _thread.allocate_lock()
_pending: list[Callable[[], object]] = []
_loaded: list[logging.Logger] = []  # the logger, once loaded


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
