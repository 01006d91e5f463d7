"""requests' adapter and urllib3's connections with jobreport's deadline plugged in (for
``transport``): a new connection's socket comes from ``_deadline.open_socket`` (the host name
looked up within the exchange's deadline) and is watched by it; a kept-alive connection is
watched anew by each exchange that uses it; TLS comes from one context per sink."""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any, cast

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from jobreport.config import SinkSettings
from jobreport.sinks._deadline import Deadline, open_socket

__all__ = ["current", "new_session"]

_KEPT_ALIVE = 4  # idle connections kept per peer


class _Current(threading.local):
    """The deadline of the exchange this thread is in (``Transport.exchange`` sets it)."""

    deadline: Deadline | None = None


current = _Current()


class _Watched:
    """What jobreport adds to urllib3's connections: the socket of a new connection comes
    from ``open_socket`` (the name looked up within the exchange's deadline, each address
    tried within the timeout and the time left) and is watched by the deadline; a
    kept-alive connection is watched anew by each exchange that uses it. Failures are the
    errors urllib3's own ``_new_conn`` raises."""

    host: str
    port: int
    timeout: Any
    sock: socket.socket | None
    _dns_host: str
    watched_by: Deadline | None = None

    def _new_conn(self) -> socket.socket:
        deadline = current.deadline
        if deadline is None:  # only ever used inside Transport.exchange
            raise NewConnectionError(cast(HTTPConnection, self), "no exchange in progress")
        timeout = self.timeout if isinstance(self.timeout, int | float) else None
        try:
            sock = open_socket(self._dns_host, self.port, timeout, deadline)
        except socket.gaierror as e:
            raise NameResolutionError(self.host, cast(HTTPConnection, self), e) from e
        except TimeoutError as e:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from e
        except OSError as e:
            raise NewConnectionError(cast(HTTPConnection, self),
                                     f"Failed to establish a new connection: {e}") from e
        self.watched_by = deadline
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = current.deadline
        if deadline is not None and self.sock is not None and self.watched_by is not deadline:
            deadline.watch(self.sock)
            self.watched_by = deadline
        super().request(*args, **kwargs)  # type: ignore[misc]


class _Connection(_Watched, HTTPConnection):
    pass


class _TLSConnection(_Watched, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection

    def _validate_conn(self, conn: Any) -> None:
        # as urllib3's, without its warning per request when verification is off: that is
        # a setting (JOBREPORT_TLS_VERIFY=false), said once, and it must not fill the job's
        # stderr
        if conn.is_closed:
            conn.connect()


_POOLS = {"http": _Pool, "https": _TLSPool}


class _Adapter(HTTPAdapter):
    """requests' adapter with jobreport's pools, and TLS from one context that holds the
    CA, the verification setting and the client certificate (loaded once, so that a file
    that cannot be read is said before any connection)."""

    def __init__(self, context: ssl.SSLContext | None,
                 proxy_context: ssl.SSLContext | None) -> None:
        self._context = context
        self._proxy_context = proxy_context
        super().__init__(pool_connections=4, pool_maxsize=_KEPT_ALIVE, max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False,
                         **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block, ssl_context=self._context,
                                 **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        fresh = proxy not in self.proxy_manager
        manager = super().proxy_manager_for(proxy, ssl_context=self._context,
                                            proxy_ssl_context=self._proxy_context,
                                            **proxy_kwargs)
        if fresh:
            manager.pool_classes_by_scheme = _POOLS
        return manager

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """Nothing to set per connection: the context carries it all."""

    def build_connection_pool_key_attributes(
            self, request: Any, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return super().build_connection_pool_key_attributes(request, verify, None)


def new_session(settings: SinkSettings, https: bool, https_proxy: bool) -> requests.Session:
    """A session whose connections keep the exchange's deadline (TLS contexts only when
    the peer or its proxy is ``https://``); raises ``OSError`` (``ssl.SSLError``) or
    ``ValueError`` when the certificates cannot be loaded."""
    session = requests.Session()
    # the proxies are read (as requests reads them) by the transport; the rest of what
    # requests takes from the environment (~/.netrc, REQUESTS_CA_BUNDLE) is not a setting
    # of jobreport's and stays out
    session.trust_env = False
    adapter = _Adapter(_tls(settings, client=True) if https else None,
                       _tls(settings, client=False) if https_proxy else None)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _tls(settings: SinkSettings, *, client: bool) -> ssl.SSLContext:
    """The TLS context of the peer (``client``: with the client certificate) or of an
    https:// proxy: the system's CAs or ``ca_bundle``; verification off only when
    ``tls_verify`` is false and no bundle is given."""
    context = ssl.create_default_context(cafile=settings.ca_bundle or None)
    if not settings.tls_verify and not settings.ca_bundle:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client and settings.client_cert:
        context.load_cert_chain(settings.client_cert, settings.client_key or None)
    return context
