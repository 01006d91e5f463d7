"""HTTP for the sinks: requests, with jobreport's own wall-clock deadline per exchange and
the bounded host-name lookup plugged into urllib3's connection class.

requests brings what users' networks rely on: proxies from ``HTTP_PROXY``/``HTTPS_PROXY``/
``ALL_PROXY`` (either case; http:// and https:// proxies, a ``CONNECT`` tunnel with IPv6
literals bracketed), ``NO_PROXY`` with host suffixes and CIDR ranges, TLS, kept-alive
connections. Two things it does not have are plugged in (``_deadline``, through the
adapter and connection classes of ``_adapter``):

- every socket of an exchange is watched by the exchange's ``Deadline``, which shuts it
  down when the deadline passes: a peer that drips one byte a second, or never answers
  after accepting, costs at most the deadline. A new connection is watched from its
  ``connect``; a kept-alive one anew by each exchange that uses it;
- the host-name lookup runs in a thread that the exchange waits for only until its deadline.

What an exchange comes to is an ``Answer`` (a status, whole) or a ``NoAnswer`` (how it
failed, in a short line); ``jobreport.sinks.http`` judges both. One ``requests.Session``
per transport and process (a forked child makes its own). Loaded only when an HTTP sink is
made, never before a job's command has started.
"""

from __future__ import annotations

import base64
import errno
import http.client
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

import requests
import requests.exceptions as rx
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from jobreport.config import SinkSettings
from jobreport.logger import log, notice_once
from jobreport.secrets import mask_url
from jobreport.sinks._adapter import current, new_session
from jobreport.sinks._deadline import Deadline

__all__ = ["MAX_ANSWER_BYTES", "Answer", "NoAnswer", "Transport", "basic"]

#: The most of an answer read: no answer jobreport needs is near this; a peer that streams
#: without end is cut off here rather than filling the memory.
MAX_ANSWER_BYTES = 128 * 1024 * 1024


#: What reads a 2xx answer's body as it streams in (instead of holding it whole): given
#: the body's chunks, it returns what it made of them, or raises ``ValueError`` when the
#: body is not what it expects.
Reader = Callable[[Iterator[bytes]], object]


# NamedTuples (immutable, compared by value) rather than frozen dataclasses: a dataclass's
# generated methods cost about 0.5 ms to make at every run's end (benchmarks/README.md).
class Answer(NamedTuple):
    """A whole answer: its status, reason, headers and body (or, when a ``Reader`` read
    the body as it came, what it made of it: ``read``, with an empty ``content``)."""

    status: int
    reason: str
    headers: Mapping[str, str]
    content: bytes
    read: object = None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class NoAnswer(NamedTuple):
    """An exchange that got no whole answer. ``kind`` says how it failed:

    - ``unconnected``: no connection at all (refused, unknown name, no route, a proxy that
      would not open a tunnel): the peer is unreachable;
    - ``connect-timeout``: no connection within the timeout (unreachable too);
    - ``timeout``: connected, but no whole answer in time (``expired``: the exchange's
      deadline shut it down);
    - ``tls``: the TLS handshake, a certificate or the certificate files failed;
    - ``broken``: the connection broke (reset, closed without an answer, not HTTP);
    - ``proxy-auth``: the proxy refused its credentials (407 to the ``CONNECT``);
    - ``unusable``: the request cannot be sent as the settings are.
    """

    kind: str
    reason: str
    expired: bool = False


def basic(user: str, password: str) -> str:
    """The ``Authorization`` value of basic auth (UTF-8, as the Pushgateway reads it)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class Transport:
    """Requests to one peer (``base``) with the configured auth and TLS, through the proxy
    the environment names for it (read once: the environment does not change). A
    ``user:password@`` in ``credentials_url`` is basic auth unless a username is
    configured; basic auth wins over a token. Safe to use from several threads."""

    def __init__(self, settings: SinkSettings, base: str, user_agent: str,
                 credentials_url: str) -> None:
        self._settings = settings
        self._https = base.lower().startswith("https:")
        self.headers, self.problem = _headers(settings, user_agent, credentials_url)
        self.proxies: dict[str, str] = {}
        self.proxy: str | None = None
        found = _proxy_for(base)
        if isinstance(found, NoAnswer):
            self.problem = self.problem or found
        elif found is not None:
            self.proxy, self.proxies = found
        self._session: requests.Session | None = None
        self._pid = 0
        self._lock = threading.Lock()
        if self._https and not settings.tls_verify and not settings.ca_bundle \
                and notice_once("insecure"):
            log.warning("jobreport: TLS verification is off (JOBREPORT_TLS_VERIFY=false): "
                        "the certificates of the sinks are not checked")

    def session(self) -> requests.Session:
        """This process's session (a forked child does not use its parent's connections);
        raises ``ssl.SSLError`` or ``OSError`` when the certificates cannot be loaded."""
        with self._lock:
            if self._session is None or self._pid != os.getpid():
                self._session = new_session(self._settings, self._https,
                                             (self.proxy or "").lower().startswith("https:"))
                self._pid = os.getpid()
            return self._session

    def exchange(self, method: str, url: str, headers: Mapping[str, str], body: bytes, *,
                 timeout: float, deadline: float,
                 reader: Reader | None = None) -> Answer | NoAnswer:
        """One request and its whole answer by ``deadline`` (``time.monotonic()``), each
        socket operation within ``timeout`` seconds. With ``reader``, the body of a 2xx
        answer is given to it as it streams in, never held whole (a ``ValueError`` it
        raises is raised here)."""
        if self.problem is not None:
            return self.problem
        try:
            session = self.session()
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            return NoAnswer("tls", f"cannot load the certificates: {short_reason(e)}")
        with Deadline(deadline) as watch:
            current.deadline = watch
            try:
                response = session.request(
                    method, url, data=body or None, headers={**self.headers, **headers},
                    timeout=timeout, allow_redirects=False, stream=True,
                    proxies=self.proxies, verify=self._settings.tls_verify
                    or bool(self._settings.ca_bundle))
                try:
                    if reader is not None and 200 <= response.status_code < 300:
                        try:
                            read = reader(response.iter_content(65536))
                        except ValueError as e:
                            raise _Unreadable(e) from None
                        return Answer(response.status_code, response.reason or "",
                                      response.headers, b"", read)
                    content = _read(response)
                finally:
                    # read to its end: the connection goes back to the pool; else closed
                    response.close()
            except _Unreadable as e:
                raise e.error from None
            except Exception as e:  # whatever requests raises: one line, never a traceback
                return _no_answer(e, watch, self.proxy)
            finally:
                current.deadline = None
        if content is None:
            return NoAnswer("broken", f"the answer is larger than "
                            f"{MAX_ANSWER_BYTES // 2**20} MiB")
        return Answer(response.status_code, response.reason or "", response.headers, content)


class _Unreadable(Exception):
    """A ``Reader``'s ``ValueError``, carried past the handling of requests' errors."""

    def __init__(self, error: ValueError) -> None:
        super().__init__(str(error))
        self.error = error


def _read(response: requests.Response) -> bytes | None:
    """The whole body (None: more than ``MAX_ANSWER_BYTES``, left unread)."""
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
        return None
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_content(65536):
        total += len(chunk)
        if total > MAX_ANSWER_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _headers(settings: SinkSettings, user_agent: str,
             credentials_url: str) -> tuple[dict[str, str], NoAnswer | None]:
    """The headers every request carries, and what makes them unsendable (a line break or
    a character outside Latin-1 in a setting), said without showing the value."""
    headers = {"User-Agent": user_agent}
    parts = urlsplit(credentials_url)
    if settings.username:
        headers["Authorization"] = basic(settings.username, settings.password or "")
        source = "JOBREPORT_USERNAME"
    elif parts.username:
        headers["Authorization"] = basic(unquote(parts.username), unquote(parts.password or ""))
        source = "the URL's credentials"
    elif settings.token:
        headers["Authorization"] = f"Bearer {settings.token}"
        source = "JOBREPORT_TOKEN(_FILE)"
    else:
        return headers, None
    value = headers["Authorization"]
    try:
        value.encode("latin-1")
        sendable = "\r" not in value and "\n" not in value
    except UnicodeEncodeError:
        sendable = False
    if sendable:
        return headers, None
    return headers, NoAnswer("unusable", "a header cannot be sent as it is: a line break or a "
                             f"character outside Latin-1 in {source}")


# --- proxies ------------------------------------------------------------------------------


def _proxy_for(base: str) -> tuple[str, dict[str, str]] | NoAnswer | None:
    """(the proxy, the proxies to give requests) the environment names for ``base`` as
    requests reads them (``NO_PROXY`` with host suffixes and CIDR ranges applied), None
    without one, or why the named proxy cannot be used."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None  # the common case
    from requests.utils import get_environ_proxies, select_proxy

    proxy = select_proxy(base, get_environ_proxies(base))
    if not proxy:
        return None
    named = _variable_of(proxy)
    if "://" not in proxy:
        proxy = "http://" + proxy  # as requests takes it
    parts = urlsplit(proxy)
    shown = mask_url(proxy)
    scheme = parts.scheme.lower()
    if scheme.startswith("socks"):
        return NoAnswer("unusable", f"the proxy {shown} ({named}) is a SOCKS proxy, which "
                        "jobreport does not use: name an http:// or https:// proxy there, or "
                        "the sink's host in NO_PROXY")
    if scheme not in ("http", "https"):
        return NoAnswer("unusable", f"the proxy {shown} ({named}) is not an http:// or "
                        f"https:// URL: fix {named}")
    try:
        usable = parts.port is not None or ":" not in parts.netloc.rpartition("@")[2] \
            .rpartition("]")[2]
    except ValueError:  # not a number, or out of range: never taken as port 80
        usable = False
    if not usable or not parts.hostname:
        return NoAnswer("unusable", f"the proxy {shown} ({named}) has no usable "
                        f"{'port' if parts.hostname else 'host'}: fix {named}")
    return proxy, {urlsplit(base).scheme.lower(): proxy}


def _variable_of(proxy: str) -> str:
    """The environment variable that names ``proxy``."""
    for name, value in os.environ.items():
        if name.lower().endswith("_proxy") and name.lower() != "no_proxy" and value == proxy:
            return name
    return "the proxy variables"


# --- what a failed exchange was --------------------------------------------------------------


def _chain(e: BaseException) -> list[BaseException]:
    """``e`` and what it wraps (requests wraps urllib3's errors, which wrap the socket's)."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [e]
    while todo and len(seen) < 20:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo.extend([getattr(item, "reason", None) if isinstance(
            getattr(item, "reason", None), BaseException) else None,
            item.__cause__, item.__context__,
            *(a for a in item.args if isinstance(a, BaseException))])
    return seen


def _no_answer(e: Exception, deadline: Deadline, proxy: str | None) -> NoAnswer:
    chain = _chain(e)

    def found(*kinds: type[BaseException]) -> BaseException | None:
        # (requests' own errors are OSErrors too: the socket's is the one wanted)
        return next((c for c in chain if isinstance(c, kinds)
                     and not isinstance(c, rx.RequestException)), None)

    via = "" if proxy is None else f" (the proxy {mask_url(proxy)})"
    tunnel = next((c for c in chain if str(c).startswith("Tunnel connection failed")), None)
    if tunnel is not None:
        if " 407" in str(tunnel):
            return NoAnswer("proxy-auth", "407 Proxy Authentication Required")
        return NoAnswer("unconnected", f"the proxy {mask_url(proxy or '')} answered "
                        f"{str(tunnel).partition(': ')[2]} to the CONNECT")
    lookup = found(socket.gaierror)
    if lookup is not None:
        return NoAnswer("unconnected", short_reason(lookup) + via)
    if found(NewConnectionError) is not None:  # (a ConnectTimeoutError too, in urllib3 2)
        return NoAnswer("unconnected", short_reason(found(OSError) or e) + via)
    if found(ConnectTimeoutError) is not None or isinstance(e, rx.ConnectTimeout):
        return NoAnswer("connect-timeout", "no connection in time" + via)
    if deadline.expired:
        return NoAnswer("timeout", "timed out", expired=True)
    tls = found(ssl.SSLError)
    if tls is not None or isinstance(e, rx.SSLError):
        return NoAnswer("tls", _tls_reason(tls or e))
    if found(TimeoutError) is not None or isinstance(e, rx.Timeout):
        return NoAnswer("timeout", "timed out")
    if isinstance(e, rx.ConnectionError | rx.ChunkedEncodingError | rx.ContentDecodingError):
        broke = found(http.client.HTTPException, OSError)
        return NoAnswer("broken", short_reason(broke or e))
    if isinstance(e, rx.InvalidURL | rx.InvalidSchema | rx.MissingSchema | UnicodeError):
        return NoAnswer("unusable", f"the URL cannot be used ({type(e).__name__})")
    return NoAnswer("unusable", f"the request cannot be sent ({type(e).__name__})")


def short_reason(e: BaseException) -> str:
    """One short line for a socket or protocol error."""
    if isinstance(e, socket.gaierror):
        if e.errno == socket.EAI_AGAIN:
            return ("the host name lookup did not finish in time" if "in time" in str(e)
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


def _tls_reason(e: BaseException) -> str:
    text = str(getattr(e, "verify_message", "") or "") or str(e)
    line = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return line[:300]
