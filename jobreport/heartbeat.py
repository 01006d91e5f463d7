"""The one heartbeat loop of a run (``jobreport run --heartbeat`` and ``job_metrics(heartbeat=)``).

A thread calls ``beat()`` every ``interval`` seconds while the run lasts. ``stop()`` ends the
loop and joins the thread: a heartbeat being sent at that moment is waited for, so that no
heartbeat can follow the end of its run (the end is recorded and pushed only after
``stop()`` returned). The store drops a heartbeat of a run that is no longer open anyway,
whatever the timing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from jobreport.logger import log
from jobreport.threads import start_soon

__all__ = ["STOP_GRACE", "Heartbeat"]

#: How long ``stop()`` waits beyond the push budget for a beat in progress: the store's busy
#: timeout (a beat first records itself in the store) plus a margin.
STOP_GRACE = 35.0


class Heartbeat:
    """Calls ``beat`` every ``interval`` seconds in a daemon thread until ``stop()``.

    Exceptions from ``beat`` become one warning line naming ``job``; the loop goes on.
    """

    def __init__(self, beat: Callable[[], None], interval: float, job: str) -> None:
        if interval <= 0:
            raise ValueError("the heartbeat interval must be more than zero")
        self.beat = beat
        self.interval = interval
        self.job = job
        self._stopped = threading.Event()
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
        """Start the loop (once); the first beat comes after one interval. Returns at once,
        without waiting for the thread to run (an event loop may be calling)."""
        if self._thread is None and not self._stopped.is_set():
            self._thread = threading.Thread(target=self._loop, name="jobreport-heartbeat",
                                            daemon=True)
            start_soon(self._thread)
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """End the loop and wait for a beat in progress (at most ``timeout`` seconds; every
        beat is bounded by the push budget). True when the loop has ended."""
        self._stopped.set()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        return self._ended.wait(timeout)

    def _loop(self) -> None:
        try:
            while not self._stopped.wait(self.interval):
                try:
                    self.beat()
                except Exception as e:  # a heartbeat must never disturb the run
                    log.warning("jobreport: heartbeat of job %s failed: %s", self.job, e)
        finally:
            self._ended.set()
