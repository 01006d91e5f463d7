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
        self._queue: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = (
            queue.SimpleQueue())
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def submit(self, func: Callable[..., None], *args: Any) -> None:
        """Queue ``func(*args)``; returns at once (an event loop may be calling)."""
        with self._lock:
            if self._thread is None or self._pid != os.getpid():  # also after a fork
                self._thread = threading.Thread(target=self._loop, name="jobreport-start",
                                                daemon=True)
                self._pid = os.getpid()
                start_soon(self._thread)
        self._queue.put((func, args))

    def _loop(self) -> None:
        while True:
            func, args = self._queue.get()
            func(*args)  # Recorder._start_worker never raises


class _Shared:
    """What one process shares between its runs: the stores and sinks it opened (a warm
    process does not set up its engine and HTTP session again for every run) and the start
    thread. ``reset()`` forgets it all, and the notices given once per process (tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.stores: dict[str, Store] = {}
            self.sinks: dict[SinkSettings, list[Sink]] = {}
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


#: The one process-wide instance.
SHARED = _Shared()
