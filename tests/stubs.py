"""A misbehaving HTTP peer on loopback, for the answers a real Pushgateway cannot give (no
tests here): it answers each request the way its current ``mode`` says, and forwards to a
real Pushgateway in ``"forward"`` mode.

Modes: an HTTP status (``301`` comes with a Location), ``"hang"`` (read the request, never
answer), ``"drip"`` (a valid answer, one byte every ``drip_every`` seconds), ``"reset"``
(close with a TCP reset, no answer), ``"forward"``, or ``"503-then-200"`` (a 503 to the
first request, then forward). Every request is recorded as (method, path, mode).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping

HANG, DRIP, RESET, FORWARD, FLAKY = "hang", "drip", "reset", "forward", "503-then-200"

_REASONS = {301: "Moved Permanently", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 409: "Conflict", 413: "Payload Too Large",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable"}


class Stub:
    """The peer. Use as a context manager; set ``mode`` at any time."""

    def __init__(self, upstream: str | None = None, mode: int | str = FORWARD, *,
                 drip_every: float = 0.3) -> None:
        self.upstream = upstream
        self.mode: int | str = mode
        self.drip_every = drip_every
        self.requests: list[tuple[str, str, int | str]] = []
        self._flaky_used = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Stub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        buf = b""
        try:
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:])}
                length = int(headers.get("content-length") or 0)
                while len(buf) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                body, buf = buf[:length], buf[length:]
                if not self._answer(conn, method, path, headers, body):
                    return
        except OSError:
            return

    def _answer(self, conn: socket.socket, method: str, path: str,
                headers: Mapping[str, str], body: bytes) -> bool:
        with self._lock:
            mode = self.mode
            if mode == FLAKY:
                mode = FORWARD if self._flaky_used else 503
                self._flaky_used = True
            self.requests.append((method, path, self.mode))
        if mode == HANG:
            self._stop.wait(120)
            return False
        if mode == RESET:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            return False
        if mode == DRIP:
            payload = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000
            for byte in payload:
                if self._stop.wait(self.drip_every):
                    return False
                conn.sendall(bytes([byte]))
            return False
        if isinstance(mode, int):
            text = f"stub says {mode}".encode()
            extra = "Location: https://127.0.0.1:1/elsewhere\r\n" if 300 <= mode < 400 else ""
            conn.sendall(
                f"HTTP/1.1 {mode} {_REASONS.get(mode, 'Status')}\r\n{extra}"
                f"Content-Type: text/plain\r\nContent-Length: {len(text)}\r\n\r\n".encode()
                + text)
            return True
        status, payload = self._forward(method, path, headers, body)
        conn.sendall(f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
                     f"Content-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        return True

    def _forward(self, method: str, path: str, headers: Mapping[str, str],
                 body: bytes) -> tuple[int, bytes]:
        if self.upstream is None:
            return 502, b"no upstream"
        keep = {k: v for k, v in headers.items() if k in ("content-type", "authorization")}
        req = urllib.request.Request(self.upstream + path,  # noqa: S310 (loopback)
                                     data=body or None, method=method, headers=keep)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            return 502, b"upstream unreachable"
