"""A forward HTTP proxy on loopback that records what passes (no tests here).

It handles what a client sends to a proxy named in ``HTTP_PROXY``/``HTTPS_PROXY``: an
absolute-URI request (``PUT http://127.0.0.1:9091/metrics/... HTTP/1.1``), forwarded to its
target and answered with the target's answer, and ``CONNECT host:port``, answered with a
tunnel whose bytes it copies both ways (TLS goes through it untouched). With
``credentials`` set it answers 407 to any request without that ``Proxy-Authorization``.
With ``tls`` (a certificate and its key) it is an https:// proxy: a client must speak TLS to
it before anything else (a plaintext request is never read, so never recorded). Every
request is recorded, its headers looked up case-insensitively.
"""

from __future__ import annotations

import base64
import http.client
import selectors
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from urllib.parse import urlsplit

from tests.scripted import LoopbackHTTP, QuietHandler, read_body

__all__ = ["ForwardProxy", "Passed"]

# headers of the hop between client and proxy, not to be forwarded (RFC 9110 7.6.1)
_HOP = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te",
        "trailer", "transfer-encoding", "upgrade", "proxy-authenticate"}


@dataclass(frozen=True)
class Passed:
    """A request that reached the proxy: ``target`` is the absolute URI, or ``host:port``
    for a CONNECT."""

    method: str
    target: str
    headers: Message
    status: int  # what the proxy answered


class ForwardProxy:
    """The proxy; a context manager. ``url`` is ``http://127.0.0.1:PORT`` (``https://``
    with ``tls``; add ``user:password@`` yourself for ``credentials``)."""

    def __init__(self, credentials: tuple[str, str] | None = None, *,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.passed: list[Passed] = []
        self._expected = None if credentials is None else "Basic " + base64.b64encode(
            f"{credentials[0]}:{credentials[1]}".encode()).decode()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        proxy = self

        class Handler(QuietHandler):

            def _record(self, target: str, status: int) -> None:
                with proxy._lock:
                    proxy.passed.append(Passed(self.command, target, self.headers, status))

            def _refused_auth(self, target: str) -> bool:
                if proxy._expected is None or \
                        self.headers.get("Proxy-Authorization") == proxy._expected:
                    return False
                self._record(target, 407)
                self._reply(407, [("Proxy-Authenticate", 'Basic realm="test proxy"')],
                            b"proxy credentials needed")
                return True

            def _reply(self, status: int, headers: list[tuple[str, str]],
                       body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()

            def _forward(self) -> None:
                body = read_body(self.rfile, self.headers)
                target = self.path
                if self._refused_auth(target):
                    return
                parts = urlsplit(target)
                if parts.scheme != "http" or not parts.hostname:
                    self._record(target, 400)
                    self._reply(400, [], b"not an absolute http URI")
                    return
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                upstream = http.client.HTTPConnection(parts.hostname, parts.port or 80,
                                                      timeout=20)
                try:
                    upstream.request(self.command, path, body=body or None, headers=headers)
                    answer = upstream.getresponse()
                    status, answer_headers, payload = (
                        answer.status, answer.getheaders(), answer.read())
                except (OSError, http.client.HTTPException):
                    status, answer_headers, payload = 502, [], b"upstream unreachable"
                finally:
                    upstream.close()
                self._record(target, status)
                self._reply(status, answer_headers, payload)

            def do_CONNECT(self) -> None:
                target = self.path
                if self._refused_auth(target):
                    return
                host, _, port = target.rpartition(":")
                try:
                    upstream = socket.create_connection((host.strip("[]"), int(port)),
                                                        timeout=20)
                except (OSError, ValueError):
                    self._record(target, 502)
                    self._reply(502, [], b"cannot connect")
                    return
                self._record(target, 200)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                self.close_connection = True
                with upstream:
                    proxy._tunnel(self.connection, upstream)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.http = LoopbackHTTP(Handler)
        self.port, self.url = self.http.port, self.http.url
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            # the handshake happens in the handler's thread, on its first read
            self.http.server.socket = context.wrap_socket(
                self.http.server.socket, server_side=True, do_handshake_on_connect=False)
            self.url = self.url.replace("http://", "https://")

    def __enter__(self) -> ForwardProxy:
        self.http.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.http.stop()

    def _tunnel(self, client: socket.socket, upstream: socket.socket) -> None:
        """Copy bytes both ways until one side closes (or the proxy stops)."""
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.1):
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    try:
                        data = source.recv(65536)
                        if not data:
                            return
                        key.data.sendall(data)
                    except OSError:
                        return
