"""A recording HTTP peer on loopback that answers from a script (no tests here).

For the fault sequences a real Pushgateway or remote-write receiver does not produce on
demand (503 twice then 200, a 400 with a reason, a slow answer, a reset...). It speaks
plain HTTP/1.1 on a socket, so the tests that use it hold whatever HTTP client jobreport
uses. (``tests.stubs.Stub`` switches one ``mode`` for every request and can forward to a
real gateway; ``tests.faults.FaultProxy`` scripts statuses in front of a real gateway;
this one scripts whole answers and records what the client sent.)

Each request takes the next ``Answer`` of the queue, or ``default`` once it is empty.
Connections are kept alive (a client may send several requests on one), each served by
its own thread; every wait is bounded and ``__exit__`` ends them all.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from typing import Any

__all__ = ["ANSWER", "CLOSE", "HANG", "RESET", "Answer", "LoopbackHTTP", "QuietHandler",
           "Recorded", "ScriptedServer", "read_body"]

ANSWER, CLOSE, RESET, HANG = "answer", "close", "reset", "hang"


@dataclass(frozen=True)
class Answer:
    """One scripted answer. ``action``: ``"answer"`` (``status``, ``body``, ``headers``),
    ``"close"`` (close the connection without an answer), ``"reset"`` (a TCP reset, no
    answer) or ``"hang"`` (never answer, until the server stops). ``delay`` seconds pass
    before the action; ``on_request`` is called with the request when it arrives (e.g. to
    move a test's fake clock)."""

    status: int = 200
    body: bytes | str = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    action: str = ANSWER
    on_request: Callable[[Recorded], None] | None = None


@dataclass(frozen=True)
class Recorded:
    """A request as it arrived: ``headers`` looks names up case-insensitively
    (``headers["user-agent"]`` and ``headers["User-Agent"]`` are the same)."""

    method: str
    path: str
    headers: Message
    body: bytes
    connection: int  # which accepted connection (1, 2...) carried it

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive: several requests per connection), no log lines, and a client
    or a fault that closes the connection is no error."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection is not held for ever

    def log_message(self, *args: Any) -> None:
        pass

    def handle_one_request(self) -> None:
        with contextlib.suppress(OSError):
            super().handle_one_request()

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # closed by a fault
            super().finish()


class LoopbackHTTP:
    """A ``ThreadingHTTPServer`` of ``handler`` on 127.0.0.1 (a free port), serving in a
    thread of its own between ``start()`` and ``stop()``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for a serve_forever that never ran
            self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


class ScriptedServer:
    """The peer; a context manager. ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, answers: Iterable[Answer | int] = (),
                 default: Answer | int = Answer(200)) -> None:
        self.script: list[Answer] = [_answer(a) for a in answers]
        self.default = _answer(default)
        self.requests: list[Recorded] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        peer = self

        class Handler(QuietHandler):
            def setup(self) -> None:
                super().setup()
                with peer._lock:
                    peer.connections += 1
                    self.number = peer.connections
                    peer._sockets.append(self.connection)

            def _handle(self) -> None:
                body = read_body(self.rfile, self.headers)
                seen = Recorded(self.command, self.path, self.headers, body, self.number)
                with peer._arrived:
                    answer = peer.script.pop(0) if peer.script else peer.default
                    peer.requests.append(seen)
                    peer._arrived.notify_all()
                if answer.on_request is not None:
                    answer.on_request(seen)
                if answer.delay and peer._stop.wait(answer.delay):
                    self.close_connection = True
                    return
                if answer.action != ANSWER:
                    self.close_connection = True
                    peer._fault(self.connection, answer.action)
                    return
                payload = answer.body.encode() if isinstance(answer.body, str) else answer.body
                self.send_response(answer.status)
                names = {k.lower() for k in answer.headers}
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if "content-type" not in names:
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        self.http = LoopbackHTTP(Handler)
        self.port, self.url = self.http.port, self.http.url

    def __enter__(self) -> ScriptedServer:
        self.http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.http.stop()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()

    def add(self, *answers: Answer | int) -> None:
        """Queue more answers (after those still waiting)."""
        with self._lock:
            self.script.extend(_answer(a) for a in answers)

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> list[Recorded]:
        """The requests once ``count`` have arrived; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.requests)} of {count} requests arrived "
                                         f"within {timeout}s")
                self._arrived.wait(left)
            return list(self.requests)

    def _fault(self, conn: socket.socket, action: str) -> None:
        if action == HANG:
            self._stop.wait(120)
        elif action == RESET:
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            if action != RESET:
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def read_body(rfile: BufferedIOBase, headers: Message) -> bytes:
    """A request's body, by its Content-Length or chunk by chunk (a client may stream)."""
    if "chunked" not in (headers.get("Transfer-Encoding") or "").lower():
        length = int(headers.get("Content-Length") or 0)
        return rfile.read(length) if length else b""
    body = b""
    for _ in range(100_000):  # bounded: a test body has far fewer chunks
        size = int(rfile.readline(1024).split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline(1024).strip():  # trailers, up to the empty line
                pass
            return body
        body += rfile.read(size)
        rfile.readline(1024)  # the CRLF after the chunk
    raise ValueError("too many chunks")


def _answer(answer: Answer | int) -> Answer:
    return Answer(answer) if isinstance(answer, int) else answer
