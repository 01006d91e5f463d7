"""What one process shares between its runs (``SHARED``): the stores and sinks it opened and
the one thread that opens runs and pushes their starts. Tests call ``SHARED.reset()``."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jobreport.config import Config
from jobreport.logger import forget_notices
from jobreport.threads import start_soon

if TYPE_CHECKING:
    from jobreport.config import SinkSettings
    from jobreport.sinks.base import Sink
    from jobreport.store.store import Store

__all__ = ["SHARED"]


class _StartQueue:
    """One daemon thread per process opens runs and pushes their starts, one after another:
    starting a thread for every run costs more than a short run's whole report."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue())
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, func: Callable[..., None], *args: Any) -> None:
        """Queue ``func(*args)``; returns at once (an event loop may be calling)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="jobreport-start",
                                                daemon=True)
                start_soon(self._thread)
        self._queue.put((func, args))

    def after_fork(self) -> None:
        # the thread, what was queued for it and the lock it may have held at the fork
        # stay behind in the parent (as for ``runs.background.ENDS``)
        self._queue = queue.SimpleQueue()
        self._thread = None
        self._lock = threading.Lock()

    def close(self) -> None:
        """The thread ends once what was queued before is done."""
        self._queue.put(None)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            func, args = item
            func(*args)  # Recorder._start_worker never raises


class _Shared:
    """What one process shares between its runs: the stores and sinks it opened (a warm
    process does not set up its engine and HTTP session again for every run) and the start
    thread. ``reset()`` forgets it all, and the notices given once per process (tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.starts = _StartQueue()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.stores: dict[str, Store] = {}
            self.sinks: dict[SinkSettings, list[Sink]] = {}
            self.starts.close()  # (its thread, if it has one, ends)
            self.starts = _StartQueue()
        forget_notices()

    def store(self, url: str) -> Store:
        from jobreport.store.store import Store

        with self._lock:
            store = self.stores.get(url)
            if store is None:
                store = self.stores[url] = Store(url)
            return store

    def sinks_for(self, config: Config) -> list[Sink]:
        from jobreport.sinks.configured import configured_sinks

        key = config.sinks  # every setting that picks or shapes a sink
        with self._lock:
            sinks = self.sinks.get(key)
            if sinks is None:
                sinks = self.sinks[key] = configured_sinks(config)
            return sinks


    def after_fork(self) -> None:
        # a lock held by another thread of the parent at the fork would never be released
        self._lock = threading.Lock()
        self.starts.after_fork()


#: The one process-wide instance.
SHARED = _Shared()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=SHARED.after_fork)
