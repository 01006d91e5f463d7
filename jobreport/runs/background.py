"""The ends of runs handed off the caller's thread (``ENDS``): an event loop must never wait
for a store write or a delivery.

``job_metrics`` in async code (``async with``, a decorated coroutine or async generator)
and a plain ``with`` inside a running event loop close their runs here: a few daemon
threads take the ends in the order they were handed over. Two guarantees:

- **Order per group.** The ends of one group are written to the store in the order they
  were handed over (``turn``), however the threads are scheduled, so that the newest run
  of a group stays the one that ended last. With a store, an end whose group has a later
  end handed over already leaves the delivery to that one (it pushes the group's newest
  state, this run included): the tasks of a ``gather`` cost one push or two, not one each.
- **Nothing lost at exit.** The process waits for the ends still in progress when the
  program ends (an ``atexit`` hook), at most until the latest end's own deadline (its
  start budget, its budget and a margin after it was handed over): a program that ends
  right after its last run still reports it, and a gateway that never answers cannot
  hold the program for longer than that.
"""

from __future__ import annotations

import atexit
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures

from jobreport.logger import log, unexpected
from jobreport.threads import start_soon

__all__ = ["DRAIN_MARGIN", "ENDS", "MAX_THREADS", "Ends", "Turn"]

#: At most this many threads deliver ends at once; more ends wait for a free thread.
MAX_THREADS = 32
#: What an end may take beyond its start budget and budget before the exit stops waiting:
#: a store write waits for a busy store, a heartbeat in flight is joined first.
DRAIN_MARGIN = 5.0
#: How long an end waits for the previous end of its group to be written to the store.
TURN_WAIT = 60.0


class Turn:
    """An end's place in its group's order: ``wait()`` for the previous end of the group to
    be written to the store, then ``done()`` once this one is."""

    __slots__ = ("_after", "_done", "_key", "_owner")

    def __init__(self, owner: Ends, key: str, after: threading.Event | None) -> None:
        self._owner = owner
        self._key = key
        self._after = after
        self._done = threading.Event()

    def wait(self, timeout: float = TURN_WAIT) -> None:
        """Wait (at most ``timeout`` seconds: never forever) for the previous end."""
        if self._after is not None:
            self._after.wait(timeout)
            self._after = None

    def done(self) -> bool:
        """This end is written: the next end of the group may go. True when a later end of
        the group was handed over meanwhile (its delivery carries this one's too)."""
        self._done.set()
        return self._owner._forget(self._key, self._done)


class Ends:
    """Hands ends of runs to a few daemon threads; the process waits for them at exit."""

    def __init__(self, max_threads: int = MAX_THREADS) -> None:
        self.max_threads = max_threads
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Future[None], Callable[[], None]]] = (
            queue.SimpleQueue())
        #: The worker threads (they never end; a fork leaves them behind).
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._waiting = 0
        #: Per group: the event the newest end handed over sets once it is written.
        self._tails: dict[str, threading.Event] = {}
        #: Every end not finished yet, with the monotonic time the exit waits for it until.
        self._pending: dict[Future[None], float] = {}
        self._hooked = False

    def turn(self, key: str) -> Turn:
        """The next place in group ``key``'s order (take it when the run ends, in the
        thread that ended it: that is the order kept)."""
        with self._lock:
            after = self._tails.get(key)
            turn = Turn(self, key, after)
            self._tails[key] = turn._done
            return turn

    def _forget(self, key: str, done: threading.Event) -> bool:
        with self._lock:
            newest = self._tails.get(key)
            if newest is done:
                del self._tails[key]
            return newest is not None and newest is not done

    def submit(self, work: Callable[[], None], *, within: float) -> Future[None]:
        """Run ``work`` (which never raises) in one of the threads; the process waits for
        it at exit for at most ``within`` seconds from now."""
        future: Future[None] = Future()
        with self._lock:
            self._pending[future] = time.monotonic() + within
            if not self._hooked:
                atexit.register(self.drain)
                self._hooked = True
            self._waiting += 1
            thread = None
            if self._waiting > self._idle and len(self._threads) < self.max_threads:
                thread = threading.Thread(target=self._loop, name="jobreport-end",
                                          daemon=True)
                self._threads.append(thread)
            self._queue.put((future, work))
        if thread is not None:
            try:
                start_soon(thread)  # an event loop may be calling: no waiting for it
            except RuntimeError:  # no new thread at interpreter shutdown: work here
                with self._lock:
                    self._threads.remove(thread)
                self._work_here(future)
        return future

    def _work_here(self, future: Future[None]) -> None:
        """Take ends from the queue in this thread until ``future``'s is done."""
        while not future.done():
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return  # a thread took it
            with self._lock:
                self._waiting -= 1
            self._run(*item)

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            future, work = self._queue.get()
            with self._lock:
                self._idle -= 1
                self._waiting -= 1
            self._run(future, work)

    def _run(self, future: Future[None], work: Callable[[], None]) -> None:
        if not future.set_running_or_notify_cancel():
            self._finished(future)
            return
        try:
            work()
        except BaseException:  # work() never raises; if it did, the future says so
            unexpected("the end of a run was not reported")
        finally:
            future.set_result(None)
            self._finished(future)

    def _finished(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.pop(future, None)

    def pending(self) -> int:
        """How many ends are not finished yet."""
        with self._lock:
            return len(self._pending)

    def drain(self) -> bool:
        """Wait for the ends in progress, each at most until its own deadline. True when
        none is left (called at exit; tests call it too)."""
        with self._lock:
            pending = dict(self._pending)
        if not pending:
            return True
        not_done = 0
        try:
            for future, deadline in sorted(pending.items(), key=lambda item: item[1]):
                done, _ = wait_futures([future], timeout=max(0.0, deadline - time.monotonic()))
                not_done += not done
        except KeyboardInterrupt:  # Ctrl-C while the program waits at its exit: stop waiting
            return False
        if not_done:
            log.warning("jobreport: %d run end(s) still being reported when the program "
                        "ended; a run closed in the store is delivered by the next run or "
                        "`jobreport flush`", not_done)
        return not not_done

    def _after_fork(self) -> None:
        # the threads and the locks they held stay behind in the parent
        self._lock = threading.Lock()
        self._queue = queue.SimpleQueue()
        self._threads = []
        self._idle = self._waiting = 0
        self._tails = {}
        self._pending = {}


#: The one process-wide instance.
ENDS = Ends()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=ENDS._after_fork)
