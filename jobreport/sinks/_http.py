"""The HTTP side of the Pushgateway sink: the session (deadline-aware connections, auth,
TLS, proxies) and what a failed request means (could it connect at all? in one line?)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from jobreport.config import Config

if TYPE_CHECKING:
    import requests

__all__ = ["connection_reason", "could_not_connect", "first_line", "new_session"]

log = logging.getLogger("jobreport")


def new_session(cfg: Config, base: str, user_agent: str,
                credentials_url: str | None = None) -> requests.Session:
    """A requests session for the peer at ``base`` (every HTTP sink's): deadline-aware
    connections, the configured auth and TLS, the environment's proxies read once. A
    ``user:password@`` in ``credentials_url`` (default: the gateway URL) is basic auth
    unless a username is configured."""
    import requests

    from jobreport.sinks._deadline import DeadlineAdapter

    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, DeadlineAdapter())
    # Read the proxy settings of the environment once, not on every request
    # (requests looks them up per request, which costs more than the push itself).
    session.proxies.update(requests.utils.get_environ_proxies(base))
    session.trust_env = False
    session.headers["User-Agent"] = user_agent
    parts = urlsplit(cfg.gateway or "" if credentials_url is None else credentials_url)
    if cfg.username:
        session.auth = (cfg.username, cfg.password or "")
    elif parts.username:
        session.auth = (parts.username, parts.password or "")
    if cfg.token:
        session.headers["Authorization"] = f"Bearer {cfg.token}"
    session.verify = cfg.ca_bundle or cfg.tls_verify
    if not cfg.tls_verify and not cfg.ca_bundle:
        _without_insecure_warning()
    if cfg.client_cert:
        session.cert = (cfg.client_cert, cfg.client_key) if cfg.client_key else cfg.client_cert
    return session


_warned: set[str] = set()


def _without_insecure_warning() -> None:
    """Verification was turned off on purpose: say so once in our own words, and keep
    urllib3's InsecureRequestWarning (one per request) out of the job's stderr."""
    import warnings

    from urllib3.exceptions import InsecureRequestWarning

    # this category only, and only once verification is off: other warnings still show
    warnings.filterwarnings("ignore", category=InsecureRequestWarning)
    if "insecure" not in _warned:
        _warned.add("insecure")
        log.warning("jobreport: TLS verification is off (JOBREPORT_TLS_VERIFY=false): "
                    "the Pushgateway's certificate is not checked")


def could_not_connect(exc: BaseException) -> bool:
    """Whether the request failed before a connection existed (refused, unknown name)."""
    from urllib3.exceptions import NewConnectionError

    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        item = stack.pop()
        if id(item) in seen or item is None:
            continue
        seen.add(id(item))
        if isinstance(item, NewConnectionError):
            return True
        if isinstance(item, BaseException):
            stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None),
                          *item.args])
    return False


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def connection_reason(exc: BaseException) -> str:
    text = str(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host name"),
        ("nodename nor servname", "unknown host name"),
        ("Temporary failure in name resolution", "host name lookup failed"),
        ("host name lookup did not finish in time",
         "the host name lookup did not finish in time"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "the connection closed without an answer"),
    ):
        if needle in text:
            return reason
    return first_line(exc)[:200]
