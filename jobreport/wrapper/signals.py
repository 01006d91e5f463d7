"""Signals and waiting during ``jobreport run``: SIGTERM/SIGHUP/SIGINT sent to jobreport are
passed on to the child (``Forwarder``), a thread blocks in wait4() for it (``Waiter``), and
``signals_handled`` routes those signals for a block and restores the previous handlers."""

from __future__ import annotations

import _thread  # not threading (and its imports): loaded before the command starts
import os
import signal

TYPE_CHECKING = False  # not typing's: importing typing costs every `jobreport run`
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any

__all__ = ["FORWARDED_SIGNALS", "Forwarder", "Waiter", "signals_handled"]

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class Waiter:
    """Blocks in wait4() for the child in a thread of its own, so that the calling thread
    stays free for signals. (``threading`` loads here, once the command has started.)"""

    def __init__(self, pid: int, forwarder: Forwarder) -> None:
        import threading

        self.pid = pid
        self.forwarder = forwarder
        self.done = threading.Event()
        self.status: int | None = None
        self.usage: Any = None
        self._thread = threading.Thread(target=self._wait, name=f"jobreport-wait-{pid}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _wait(self) -> None:
        try:
            _pid, self.status, self.usage = os.wait4(self.pid, 0)
        except ChildProcessError:
            self.status = None
        finally:
            self.forwarder.child_reaped()
            self.done.set()


class Forwarder:
    """Passes SIGTERM/SIGHUP/SIGINT received by jobreport on to the child.

    With its own process group the child's whole group gets them. In a terminal's
    foreground the child shares jobreport's group: the terminal already sent SIGINT to
    both, so only SIGTERM and SIGHUP are passed on, to the child itself.
    """

    def __init__(self, foreground: bool) -> None:
        self.foreground = foreground
        self.pending: list[int] = []
        self.pid: int | None = None
        self.own_group = False
        self.lock = _thread.allocate_lock()

    def attach(self, pid: int, own_group: bool) -> None:
        with self.lock:
            self.pid = pid
            self.own_group = own_group
            pending, self.pending = self.pending, []
        for sig in pending:
            self._forward(sig)

    def child_reaped(self) -> None:
        with self.lock:
            self.pid = None

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.pid is None:
            self.pending.append(signum)
            return
        self._forward(signum)

    def _forward(self, signum: int) -> None:
        pid = self.pid
        if pid is None:
            return
        try:
            if self.own_group:
                os.killpg(pid, signum)
            elif signum != signal.SIGINT:
                os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class signals_handled:
    """Route SIGTERM/SIGHUP/SIGINT to ``handler`` for the block, then restore the handlers
    that were there. Handlers can only be set from the main thread: elsewhere nothing
    changes and the block gets False. (A class rather than ``contextlib.contextmanager``:
    contextlib is not worth loading before the command starts.)"""

    def __init__(self, handler: Callable[[int, FrameType | None], None]) -> None:
        self.handler = handler
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> bool:
        # A signal ignored when jobreport started (SIGINT for `cmd &` in a script) stays
        # ignored, so that the command inherits it ignored, as it would without jobreport.
        wanted = [sig for sig in FORWARDED_SIGNALS
                  if signal.getsignal(sig) is not signal.SIG_IGN]
        try:
            for sig in wanted:
                self.previous[sig] = signal.signal(sig, self.handler)
        except ValueError:  # not the main thread (checked without loading threading)
            self._restore()
            return False
        return True

    def __exit__(self, *_exc: object) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, old in self.previous.items():
            signal.signal(sig, old)
        self.previous.clear()
