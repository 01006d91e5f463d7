"""One wall-clock deadline for a whole HTTP exchange: connect, send and read.

requests' ``timeout`` bounds each socket operation, not the exchange: a peer that drips
one byte a second never trips it. ``stream=True`` would not help either, because the
status line and headers are read before ``request()`` returns. So the deadline is kept at
the socket: the connections of an exchange register their sockets with a ``Deadline``, and
one watchdog thread per process shuts those sockets down (``shutdown(SHUT_RDWR)`` wakes a
``recv`` blocked in another thread, where ``close`` would not) when the deadline passes.
The exchange then fails at once, and the caller reports a timeout.

Not covered: the host name lookup (``getaddrinfo`` cannot be interrupted); the connect
itself is bounded by the connect timeout, which the caller sets to the time left.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["Deadline", "DeadlineAdapter", "deadline"]

_current = threading.local()


class Deadline:
    """The moment (``time.monotonic()``) by which an exchange must be over."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self.closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it has)."""
        if sock is None:
            return
        with self._lock:
            if not self.expired:
                self._sockets.append(sock)
                return
        _shut(sock)

    def expire(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._sockets = []


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed, or never connected
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that expires deadlines (a thread per exchange would cost more
    than a short push)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def arm(self, d: Deadline) -> None:
        with self._cond:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # first use, or a forked child: the parent's thread does not exist here
                self._heap = []
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._loop, name="jobreport-deadline",
                                                daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (d.at, next(self._order), d))
            self._cond.notify()

    def _loop(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].closed or self._heap[0][0] <= now):
                    _at, _n, d = heapq.heappop(self._heap)
                    d.expire()
                wait = self._heap[0][0] - now if self._heap else None
                self._cond.wait(wait)


_watchdog = _Watchdog()


@contextmanager
def deadline(at: float) -> Iterator[Deadline]:
    """Within this block, every connection the calling thread uses is shut down at ``at``."""
    d = Deadline(at)
    _watchdog.arm(d)
    previous = getattr(_current, "deadline", None)
    _current.deadline = d
    try:
        yield d
    finally:
        _current.deadline = previous
        d.close()


def _register(sock: socket.socket | None) -> None:
    d: Deadline | None = getattr(_current, "deadline", None)
    if d is not None:
        d.watch(sock)


class _Connection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _register(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self.sock)  # a kept-alive connection: no new socket this time
        super().request(*args, **kwargs)


class _TLSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _register(sock)  # before the TLS handshake, which a peer can drip too
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self.sock)
        super().request(*args, **kwargs)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


_POOLS = {"http": _Pool, "https": _TLSPool}


class DeadlineAdapter(HTTPAdapter):
    """A requests adapter whose connections honour the calling thread's ``deadline``."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager
