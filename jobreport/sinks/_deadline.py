"""One wall-clock deadline for a whole HTTP exchange: connect, send and read.

requests' ``timeout`` bounds each socket operation, not the exchange: a peer that drips
one byte a second never trips it. ``stream=True`` would not help either, because the
status line and headers are read before ``request()`` returns. So the deadline is kept at
the socket: the connections of an exchange register their sockets with a ``Deadline``, and
one watchdog thread per process shuts those sockets down (``shutdown(SHUT_RDWR)`` wakes a
``recv`` blocked in another thread, where ``close`` would not) when the deadline passes.
The exchange then fails at once, and the caller reports a timeout.

The host name lookup (``getaddrinfo``, which cannot be interrupted) runs in a thread of its
own that the exchange waits for only until the deadline; a lookup that does not finish by
then fails the exchange as an unknown name would (the peer is unreachable), and later
exchanges for the same name wait on that one lookup instead of starting more. The connect
is bounded by the connect timeout, which the caller sets to the time left, and each address
tried gets at most the time left.
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

__all__ = ["Deadline", "DeadlineAdapter", "deadline", "resolve"]

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


class _Lookup:
    """One ``getaddrinfo`` in a daemon thread; whoever needs its answer waits for it only
    as long as their own deadline allows."""

    def __init__(self, key: tuple[str, int]) -> None:
        self.key = key
        self.done = threading.Event()
        self.addresses: list[str] = []
        self.error: OSError | None = None
        threading.Thread(target=self._run, name="jobreport-lookup", daemon=True).start()

    def _run(self) -> None:
        from urllib3.util.connection import allowed_gai_family

        try:
            found = socket.getaddrinfo(self.key[0], self.key[1], allowed_gai_family(),
                                       socket.SOCK_STREAM)
            self.addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        except OSError as e:
            self.error = e
        finally:
            with _lookups_lock:
                if _lookups.get(self.key) is self:
                    del _lookups[self.key]
            self.done.set()


_lookups: dict[tuple[str, int], _Lookup] = {}
_lookups_lock = threading.Lock()
_lookups_pid = [os.getpid()]


def resolve(host: str, port: int, at: float) -> list[str]:
    """The addresses of ``host``, or ``socket.gaierror`` when the lookup fails or has not
    finished by ``at`` (``time.monotonic()``)."""
    with _lookups_lock:
        if _lookups_pid[0] != os.getpid():  # a forked child: the parent's threads are gone
            _lookups.clear()
            _lookups_pid[0] = os.getpid()
        lookup = _lookups.get((host, port))
        if lookup is None:
            lookup = _lookups[(host, port)] = _Lookup((host, port))
    if not lookup.done.wait(max(0.0, at - time.monotonic())):
        raise socket.gaierror(socket.EAI_AGAIN, "the host name lookup did not finish in time")
    if lookup.error is not None:
        raise lookup.error
    if not lookup.addresses:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return lookup.addresses


def _numeric(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _connect(conn: HTTPConnection, connect: Any) -> socket.socket:
    """``connect()`` (urllib3's ``_new_conn``) with the name looked up within the calling
    thread's deadline first, then each address tried within the time left."""
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

    d: Deadline | None = getattr(_current, "deadline", None)
    name = conn._dns_host.strip("[]")
    if d is None or _numeric(name):
        sock: socket.socket = connect()
        _register(sock)
        return sock
    try:
        addresses = resolve(name, conn.port or 80, d.at)
    except OSError as e:
        gai = e if isinstance(e, socket.gaierror) else socket.gaierror(str(e))
        raise NameResolutionError(conn.host, conn, gai) from e
    original, timeout = conn._dns_host, conn.timeout
    error: Exception | None = None
    try:
        for address in addresses:
            left = d.at - time.monotonic()
            if left <= 0:
                break
            # only the connect uses _dns_host; conn.host (TLS server name) is read after
            # _new_conn returns, when the name is back
            conn._dns_host = address
            if not isinstance(timeout, int | float) or timeout > left:
                conn.timeout = left
            try:
                sock = connect()
            except NewConnectionError as e:
                error = e  # refused on this address: the next one may answer
                continue
            _register(sock)
            return sock
    finally:
        conn._dns_host, conn.timeout = original, timeout
    raise error or ConnectTimeoutError(conn, f"Connection to {conn.host} timed out")


class _Connection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _connect(self, super()._new_conn)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _register(self.sock)  # a kept-alive connection: no new socket this time
        super().request(*args, **kwargs)


class _TLSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        # registered before the TLS handshake, which a peer can drip too
        return _connect(self, super()._new_conn)

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
