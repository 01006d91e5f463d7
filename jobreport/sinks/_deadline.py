"""One wall-clock deadline for a whole HTTP exchange: look up, connect, send and read.

A socket timeout bounds each socket operation, not the exchange: a peer that drips one byte
a second never trips it. So the deadline is kept at the socket: the sockets of an exchange
are registered with its ``Deadline``, and one watchdog thread per process shuts them down
(``shutdown(SHUT_RDWR)`` wakes a ``recv`` blocked in another thread, where ``close`` would
not) when the deadline passes. The exchange then fails at once, and the caller reports a
timeout.

The host name lookup (``getaddrinfo``, which cannot be interrupted) runs in a thread of its
own that the exchange waits for only until the deadline; a lookup that does not finish by
then fails the exchange as an unknown name would (the peer is unreachable), and later
exchanges for the same name wait on that one lookup instead of starting more. Each address
is then tried within the connect timeout and the time left (``open_socket``).

Standard library only; ``jobreport.sinks.transport`` plugs it into requests (urllib3's
connection class).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time

__all__ = ["Deadline", "open_socket", "resolve"]


class Deadline:
    """The moment (``time.monotonic()``) by which an exchange must be over; ``with`` it,
    the sockets it watches are shut down at that moment.

    It watches a duplicate of each socket's descriptor, so that shutting it down needs no
    other thread's socket object (a TLS socket takes the descriptor over from the plain one
    it wraps), and closes the duplicates when the exchange is over: a deadline that has
    closed holds nothing that could reach a later exchange's socket (a kept-alive
    connection is watched anew by each exchange that uses it).
    """

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
            if self.closed:
                return
            if self.expired:
                _shut(sock)
                return
            try:
                self._sockets.append(socket.socket(fileno=os.dup(sock.fileno())))
            except (OSError, ValueError):  # closed meanwhile: nothing left to watch
                return

    def expire(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.expired = True
            for sock in self._sockets:  # under the lock: close() cannot interleave
                _shut(sock)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()  # a duplicate: the connection itself stays with its owner

    def __enter__(self) -> Deadline:
        _watchdog.arm(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
        # IPv6 addresses too where this host can use them (as urllib3 does)
        family = socket.AF_UNSPEC if socket.has_ipv6 else socket.AF_INET
        try:
            found = socket.getaddrinfo(self.key[0], self.key[1], family, socket.SOCK_STREAM)
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


def open_socket(host: str, port: int, timeout: float | None,
                deadline: Deadline) -> socket.socket:
    """A TCP connection to ``host`` (a name or an address), watched by ``deadline``: the
    name is looked up by then, and each address is tried for at most ``timeout`` seconds
    and the time left. Raises ``socket.gaierror`` for a name that cannot be looked up,
    ``TimeoutError`` when no address answered in time, else the last address's ``OSError``
    (refused, no route...)."""
    name = host.strip("[]")
    addresses = [name] if _numeric(name) else resolve(name, port, deadline.at)
    error: OSError | None = None
    for address in addresses:
        left = deadline.at - time.monotonic()
        if left <= 0:
            break
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        deadline.watch(sock)
        sock.settimeout(left if timeout is None else min(timeout, left))
        try:
            sock.connect((address, port))
        except OSError as e:
            sock.close()
            if deadline.expired:  # shut down by the deadline while connecting
                raise TimeoutError(f"no connection to {host} in time") from None
            error = e  # refused or timed out on this address: the next one may answer
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise error or TimeoutError(f"no connection to {host} in time")
