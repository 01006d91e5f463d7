"""The HTTP side of every HTTP sink, on the standard library's ``http.client``: a ``Client``
per peer (kept-alive connections, auth, TLS, the environment's proxies read once), each
exchange bounded by one wall-clock deadline (``_deadline``), and what a failed exchange
means to the user (``describe``).

Not requests: its import (with urllib3, charset_normalizer and idna) cost about a third of
the end of a short ``jobreport run``, while ``http.client`` is the one prometheus_client's
own push uses. ``ssl`` is loaded only for an ``https://`` peer.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import logging
import socket
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from jobreport.config import Config
from jobreport.sinks._deadline import Deadline, open_socket

if TYPE_CHECKING:
    import ssl
    from email.message import Message

__all__ = ["Client", "ExchangeError", "Response", "describe", "short_reason"]

log = logging.getLogger("jobreport")

#: The most of an answer read: no answer jobreport needs is near this; a peer that streams
#: without end is cut off here rather than filling the memory.
MAX_ANSWER_BYTES = 128 * 1024 * 1024
_KEPT_ALIVE = 4  # idle connections kept per peer
class Response:
    """A whole answer: its status, reason, headers and body."""

    __slots__ = ("content", "headers", "reason", "status_code")

    def __init__(self, status: int, reason: str, headers: Message, content: bytes) -> None:
        self.status_code = status
        self.reason = reason
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        import json

        return json.loads(self.content)


class ExchangeError(Exception):
    """An exchange that got no whole answer. ``kind`` says how it failed:

    - ``unconnected``: no connection at all (refused, unknown name, no route): the peer is
      unreachable, and the next runs make one short attempt;
    - ``connect-timeout``: no connection within the connect timeout (unreachable too);
    - ``timeout``: connected, but no whole answer within the timeout;
    - ``tls``: the TLS handshake or a certificate failed (not retried);
    - ``broken``: the connection broke (reset, closed without an answer, not HTTP);
    - ``proxy-auth``: the proxy refused its credentials (407 to the ``CONNECT``; not
      retried);
    - ``unusable``: the request cannot be sent at all (not retried).

    ``expired`` is whether the exchange's deadline had passed when it failed.
    """

    def __init__(self, kind: str, reason: str, *, expired: bool = False) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.expired = expired


def describe(e: ExchangeError, where: str, timeout: float,
             remaining: float) -> tuple[str, bool, bool]:
    """(message, retryable, unreachable) of a failed exchange with ``where`` ("the
    Pushgateway at URL"), the same for every sink."""
    if e.kind == "unconnected":
        return f"cannot reach {where}: {e.reason}", True, True
    if e.kind == "connect-timeout":
        return f"cannot reach {where}: no connection within {timeout:.3g}s", True, True
    if e.expired:
        return f"{where} did not answer within {remaining:.3g}s", True, False
    if e.kind == "timeout":
        return f"{where} did not answer within {timeout:.3g}s", True, False
    if e.kind == "proxy-auth":
        from jobreport.sinks._proxy import proxy_refused

        return proxy_refused(where), False, False
    if e.kind == "tls":
        return (f"TLS error talking to {where}: {e.reason} "
                "(set JOBREPORT_CA_BUNDLE for a private CA)", False, False)
    if e.kind == "broken":
        return f"cannot reach {where}: {e.reason}", True, False
    return f"cannot talk to {where}: {e.reason}", False, False


def short_reason(e: BaseException) -> str:
    """One short line for a socket or protocol error."""
    if isinstance(e, socket.gaierror):
        if e.errno == socket.EAI_AGAIN:
            text = str(e)
            return ("the host name lookup did not finish in time" if "in time" in text
                    else "host name lookup failed")
        return "unknown host name"
    if isinstance(e, http.client.RemoteDisconnected | BrokenPipeError):
        return "the connection closed without an answer"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ConnectionResetError):
        return "connection reset"
    if isinstance(e, OSError) and e.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[e.errno]
    if isinstance(e, http.client.IncompleteRead):
        return "the connection closed in the middle of the answer"
    if isinstance(e, http.client.HTTPException):
        return f"the answer is not HTTP ({type(e).__name__})"
    text = (e.strerror if isinstance(e, OSError) and e.strerror else str(e)).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line[:1].lower() + line[1:200]


_ERRNO_REASONS = {errno.EHOSTUNREACH: "no route to host",
                  errno.ENETUNREACH: "network unreachable"}


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle kept-alive connection was closed by the peer (or has bytes nobody
    asked for): it is not used again."""
    import select

    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Client:
    """Requests to one peer (``base``) with the configured auth and TLS and the proxy the
    environment names for it. A ``user:password@`` in ``credentials_url`` (default: the
    gateway URL) is basic auth unless a username is configured; basic auth wins over a
    token, as it did with requests. Safe to use from several threads."""

    def __init__(self, cfg: Config, base: str, user_agent: str,
                 credentials_url: str | None = None) -> None:
        self._cfg = cfg
        self._headers = {"User-Agent": user_agent}
        from jobreport.sinks._proxy import basic, proxy_for

        parts = urlsplit(cfg.gateway or "" if credentials_url is None else credentials_url)
        if cfg.username:
            self._headers["Authorization"] = basic(cfg.username, cfg.password or "")
        elif parts.username:
            self._headers["Authorization"] = basic(unquote(parts.username),
                                                    unquote(parts.password or ""))
        elif cfg.token:
            self._headers["Authorization"] = f"Bearer {cfg.token}"
        self._proxy = proxy_for(base)  # read once: the environment does not change
        self._tls: ssl.SSLContext | None = None
        self._idle: dict[tuple[str, str, int], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        if not cfg.tls_verify and not cfg.ca_bundle and base.startswith("https:"):
            _warn_insecure()

    def request(self, method: str, url: str, headers: dict[str, str], body: bytes, *,
                timeout: float, within: float) -> Response:
        """One request and its whole answer within ``within`` seconds of wall time, each
        socket operation within ``timeout``; raises ``ExchangeError``."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            host = parts.hostname or ""
            port = parts.port or (443 if scheme == "https" else 80)
        except ValueError as e:
            raise ExchangeError("unusable", f"bad URL ({e})") from None
        if scheme not in ("http", "https") or not host:
            raise ExchangeError("unusable", f"not an http(s) URL: {scheme}://")
        key = (scheme, host, port)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        sent = {**self._headers, **headers}
        if self._proxy is not None and scheme == "http":
            target = f"http://{parts.netloc.rpartition('@')[2]}{target}"  # absolute, to the proxy
            if self._proxy[2]:
                sent["Proxy-Authorization"] = self._proxy[2]
        with Deadline(time.monotonic() + within) as limit:
            conn = self._take(key)
            phase = "connect"
            try:
                if conn is None:
                    conn = self._connect(scheme, host, port, timeout, limit)
                else:
                    limit.watch(conn.sock)
                    if conn.sock is not None:
                        conn.sock.settimeout(timeout)
                phase = "exchange"
                conn.request(method, target, body=body or None, headers=sent)
                answer = conn.getresponse()
                if answer.length is not None and answer.length <= MAX_ANSWER_BYTES:
                    content = answer.read()  # all of Content-Length, or IncompleteRead
                else:
                    content = answer.read(MAX_ANSWER_BYTES + 1)
                if len(content) > MAX_ANSWER_BYTES or (answer.length or 0) > MAX_ANSWER_BYTES:
                    raise ExchangeError("broken", "the answer is larger than "
                                        f"{MAX_ANSWER_BYTES // 2**20} MiB")
            except ExchangeError as e:
                _close(conn)
                e.expired = limit.expired and e.kind != "unconnected"
                raise
            except Exception as e:
                _close(conn)
                raise _failure(e, phase, limit) from None
            if answer.will_close:
                _close(conn)
            else:
                self._give(key, conn)
            return Response(answer.status, answer.reason or "", answer.headers, content)

    # --- connections ---------------------------------------------------------------------

    def _take(self, key: tuple[str, str, int]) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                conn = idle.pop()
                if not _dropped(conn):
                    return conn
                _close(conn)
        return None

    def _give(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < _KEPT_ALIVE:
                idle.append(conn)
                return
        _close(conn)

    def _connect(self, scheme: str, host: str, port: int, timeout: float,
                 limit: Deadline) -> http.client.HTTPConnection:
        proxy = self._proxy
        via = (proxy[0], proxy[1]) if proxy is not None else (host, port)
        try:
            sock: socket.socket = open_socket(via[0], via[1], timeout, limit)
        except TimeoutError:
            raise ExchangeError("connect-timeout", "no connection in time") from None
        except OSError as e:
            where = "" if proxy is None else f" (the proxy {via[0]}:{via[1]})"
            raise ExchangeError("unconnected", short_reason(e) + where) from None
        if scheme == "https":
            if proxy is not None:
                from jobreport.sinks._proxy import tunnel

                tunnel(sock, host, port, proxy[2])
            sock = self._handshake(sock, host, limit)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, port, timeout=timeout, context=self._context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.sock = sock
        return conn

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            import ssl

            cfg = self._cfg
            try:
                context = ssl.create_default_context(cafile=cfg.ca_bundle or None)
                if not cfg.tls_verify and not cfg.ca_bundle:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                if cfg.client_cert:
                    context.load_cert_chain(cfg.client_cert, cfg.client_key or None)
            except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
                raise ExchangeError("tls", f"cannot load the certificates: {short_reason(e)}") \
                    from None
            self._tls = context
        return self._tls

    def _handshake(self, sock: socket.socket, host: str, limit: Deadline) -> socket.socket:
        import ssl

        try:
            context = self._context()
        except ExchangeError:
            sock.close()
            raise
        tls: ssl.SSLSocket | None = None
        try:
            # wrap_socket takes over sock's descriptor: on failure, tls is what to close
            tls = context.wrap_socket(sock, server_hostname=host,
                                      do_handshake_on_connect=False)
            limit.watch(tls)  # the handshake can be dripped too
            tls.do_handshake()
        except (OSError, ValueError) as e:  # ssl.SSLError and TimeoutError are OSErrors
            (tls or sock).close()
            if isinstance(e, ssl.SSLError):
                raise ExchangeError("tls", _tls_reason(e)) from None
            if isinstance(e, TimeoutError):
                raise ExchangeError("timeout", "no TLS handshake in time") from None
            raise ExchangeError("broken", short_reason(e)) from None
        return tls


def _failure(e: Exception, phase: str, limit: Deadline) -> ExchangeError:
    import ssl

    if isinstance(e, ssl.SSLError):
        return ExchangeError("tls", _tls_reason(e), expired=limit.expired)
    if isinstance(e, TimeoutError):
        kind = "connect-timeout" if phase == "connect" else "timeout"
        return ExchangeError(kind, "timed out", expired=limit.expired)
    if isinstance(e, OSError | http.client.HTTPException):
        return ExchangeError("broken", short_reason(e), expired=limit.expired)
    # http.client refuses what it cannot send; its text would quote the value (a token)
    if isinstance(e, http.client.InvalidURL):
        reason = "the URL holds characters a request line cannot carry (spaces, controls)"
    elif isinstance(e, ValueError):
        reason = ("a header cannot be sent as it is: a line break or a character outside "
                  "Latin-1 in a setting (JOBREPORT_TOKEN, JOBREPORT_USERNAME...)")
    else:
        reason = type(e).__name__
    return ExchangeError("unusable", reason, expired=limit.expired)


def _tls_reason(e: BaseException) -> str:
    text = str(getattr(e, "verify_message", "") or "") or str(e)
    line = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return line[:300]


def _close(conn: http.client.HTTPConnection | None) -> None:
    if conn is not None:
        with contextlib.suppress(OSError):
            conn.close()


_warned: set[str] = set()


def _warn_insecure() -> None:
    """Verification was turned off on purpose: say so once."""
    if "insecure" not in _warned:
        _warned.add("insecure")
        log.warning("jobreport: TLS verification is off (JOBREPORT_TLS_VERIFY=false): "
                    "the Pushgateway's certificate is not checked")
