"""Helpers of the reliability and security suite (no tests here): a loopback server that
accepts and never answers, a fault-injecting proxy in front of a real Pushgateway, and a
way to run the installed ``jobreport`` command.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
JOBREPORT = str(Path(sys.executable).parent / "jobreport")


class SilentServer:
    """Accepts TCP connections on loopback and never answers nor closes them."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        for conn in self.accepted:
            conn.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted.append(conn)


class FaultProxy:
    """An HTTP server on loopback that answers the first requests from a script and forwards
    the rest to ``upstream`` (a real Pushgateway).

    Each script entry is a status code (answered with ``body``), ``"drop"`` (the connection
    is closed without an answer, as when the gateway dies mid-push) or ``"forward"``.
    ``requests`` records (method, path, entry) of every request that arrived. With
    ``delay``, every answer leaves that many seconds after its request arrived (a gateway
    that is slow to answer).
    """

    def __init__(self, upstream: str, script: Sequence[int | str] = (),
                 body: str = "", *, delay: float = 0.0) -> None:
        self.upstream = upstream
        self.delay = delay
        self.script = list(script)
        self.body = body
        self.requests: list[tuple[str, str, int | str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                with proxy._lock:
                    entry = proxy.script.pop(0) if proxy.script else "forward"
                    proxy.requests.append((self.command, self.path, entry))
                if proxy.delay:
                    time.sleep(proxy.delay)  # the slow gateway itself, not a wait
                if entry == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(entry, int):
                    payload = proxy.body.encode()
                    self.send_response(entry)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                status, headers, payload = proxy.forward(self.command, self.path,
                                                         dict(self.headers), data)
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def forward(self, method: str, path: str, headers: Mapping[str, str],
                data: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        keep = {k: v for k, v in headers.items()
                if k.lower() in ("content-type", "authorization", "user-agent", "accept")}
        req = urllib.request.Request(self.upstream + path,  # noqa: S310 (loopback)
                                     data=data or None, method=method, headers=keep)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
                return r.status, list(r.headers.items()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, list(e.headers.items()), e.read()
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            return 502, [], b"upstream unreachable"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(2)


def cli_env(**settings: str) -> dict[str, str]:
    """The test process's environment (already isolated by conftest) plus ``settings``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JOBREPORT_") and k != "PUSHGATEWAY_URL"}
    env.update(settings)
    return env


def run_cli(args: Sequence[str], env: Mapping[str, str], *, timeout: float = 60,
            stdin: Any = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """Run ``jobreport ARGS`` as cron would (no terminal), with a hard time limit."""
    return subprocess.run([JOBREPORT, *args], env=dict(env), capture_output=True, text=True,
                          timeout=timeout, stdin=stdin, check=False)


def assert_no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback (most recent call last)" not in text, text
