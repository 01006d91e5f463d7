"""Starting a thread without waiting for it to run: ``start_soon``.

``threading.Thread.start()`` returns only once the new thread runs, and a new thread runs
only once it gets the GIL: while other threads of the process are busy (importing the
store's modules, building a push), that wait takes tens of milliseconds. In an event
loop's thread that is a stall of every task of the program, so the threads jobreport
starts while a job runs (the start worker, heartbeats, the ends of runs) are started by a
raw thread of ``_thread``, which does the waiting instead.
"""

from __future__ import annotations

import _thread
import contextlib
import threading

__all__ = ["start_soon"]


def start_soon(thread: threading.Thread) -> None:
    """Start ``thread`` (not started yet) without waiting for it to run. Raises
    ``RuntimeError`` when no thread can be started now (interpreter shutdown)."""
    _thread.start_new_thread(_start, (thread,))


def _start(thread: threading.Thread) -> None:
    # RuntimeError: the interpreter is shutting down, nothing runs any more
    with contextlib.suppress(RuntimeError):
        thread.start()
