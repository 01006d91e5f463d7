"""Proxies from the environment for the HTTP sinks (``_http``): which proxy names a peer
(read once per client), the ``CONNECT`` tunnel of an ``https://`` peer, and what a 407
means. ``urllib.request`` (for its reading of the variables, ``NO_PROXY`` included) is
loaded only when a proxy variable is set."""

from __future__ import annotations

import base64
import http.client
import os
import socket
from urllib.parse import unquote, urlsplit

from jobreport.sinks._http import ExchangeError, short_reason

__all__ = ["basic", "proxy_for", "proxy_refused", "tunnel"]

_PROXY_AUTH = ("refused its credentials (407 Proxy Authentication Required): check the user "
               "and password in HTTP_PROXY / HTTPS_PROXY")


def proxy_refused(where: str) -> str:
    """The message of a 407 from the proxy in front of ``where``."""
    return f"the proxy in front of {where} {_PROXY_AUTH}"


def basic(user: str, password: str) -> str:
    """The ``Authorization`` (or ``Proxy-Authorization``) value of basic auth."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def proxy_for(base: str) -> tuple[str, int, str] | None:
    """(host, port, Proxy-Authorization value or "") of the proxy the environment names
    for ``base`` (``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``, either case, unless
    ``NO_PROXY`` covers the host), else None."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None  # the common case, without loading urllib.request
    import urllib.request

    parts = urlsplit(base)
    scheme = parts.scheme.lower()
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(scheme) or proxies.get("all")
    if not proxy or not parts.hostname:
        return None
    netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if urllib.request.proxy_bypass_environment(netloc, proxies):  # type: ignore[attr-defined]
        return None
    if "://" not in proxy:
        proxy = "http://" + proxy
    found = urlsplit(proxy)
    try:
        port = found.port or 80
    except ValueError:
        port = 80
    auth = (basic(unquote(found.username), unquote(found.password or ""))
            if found.username else "")
    return (found.hostname or "", port, auth)


def tunnel(sock: socket.socket, host: str, port: int, auth: str) -> None:
    """Ask the proxy on ``sock`` for a tunnel to ``host:port`` (``CONNECT``)."""
    lines = [f"CONNECT {host}:{port} HTTP/1.1", f"Host: {host}:{port}"]
    if auth:
        lines.append(f"Proxy-Authorization: {auth}")
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        answer = http.client.HTTPResponse(sock, method="CONNECT")
        answer.begin()
    except TimeoutError:
        sock.close()
        raise ExchangeError("timeout", "the proxy did not answer in time") from None
    except (OSError, http.client.HTTPException) as e:
        sock.close()
        raise ExchangeError("broken", f"the proxy: {short_reason(e)}") from None
    if answer.status == 407:
        sock.close()
        raise ExchangeError("proxy-auth", "407 Proxy Authentication Required")
    if answer.status != 200:
        sock.close()
        raise ExchangeError("unconnected", f"the proxy answered {answer.status} "
                            f"{answer.reason} to CONNECT {host}:{port}")
