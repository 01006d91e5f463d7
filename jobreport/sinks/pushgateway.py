"""Delivery to the Pushgateway: a requests session behind prometheus_client's push ``handler``.

prometheus_client builds the body and escapes the grouping key (``@base64`` for ``/``,
spaces and empty values); ``group_path`` extends that escaping to every value a URL path
would rewrite (``.``, ``..``, ``%``...), so that no input can make a push land in another
group. This module sends each request with one wall-clock deadline for the whole exchange
(``_deadline``) and retries within a total time budget (tenacity); a gateway that could not
be reached moments ago gets one short attempt (``_peers``).
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from jobreport._version import __version__
from jobreport.config import Config, state_dir
from jobreport.errors import PushError
from jobreport.secrets import config_secrets, mask, mask_url, remember

if TYPE_CHECKING:
    import requests
    from prometheus_client.registry import Collector
    from tenacity import RetryCallState

    from jobreport.sinks._peers import PeerMemory

__all__ = ["QUICK_ATTEMPT", "Sender", "UnreachableError", "group_path"]

log = logging.getLogger("jobreport")

RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
MAX_ATTEMPTS = 20
USER_AGENT = f"jobreport/{__version__}"
#: The one attempt given to a gateway that could not be reached moments ago, in seconds.
QUICK_ATTEMPT = 1.0

# Sent as they are: values no URL path rewrites. Anything else (".", "..", "%", "/",
# non-ASCII, ":" ...) goes @base64, which the Pushgateway decodes back exactly.
_PLAIN = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9_.~-]*")


class UnreachableError(PushError):
    """The gateway could not be connected to at all (refused, unknown name, connect
    timeout): the next pushes to it would fail the same way, so callers stop early."""


def _segment(name: str, value: str) -> str:
    from prometheus_client.exposition import _escape_grouping_key

    key, text = _escape_grouping_key(name, value)  # type: ignore[no-untyped-call]
    if key.endswith("@base64") or (_PLAIN.fullmatch(value) and value not in (".", "..")):
        return f"/{key}/{text}"
    # prometheus_client leaves "." / ".." / "%" to the URL, where the path is cleaned or
    # decoded once more: send them the way it sends "/", so the gateway sees them exactly
    encoded = base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii")
    return f"/{name}@base64/{encoded}"


def group_path(job: str, grouping: Mapping[str, str]) -> str:
    """The URL path of a group: ``/metrics/job/<job>`` and each other grouping label,
    sorted, each escaped so that the Pushgateway reads back exactly these values."""
    path = "/metrics" + _segment("job", job)
    for name, value in sorted((k, v) for k, v in grouping.items() if k != "job"):
        path += _segment(str(name), str(value))
    return path


def _without_userinfo(url: str) -> str:
    """``url`` to send requests to: credentials travel as basic auth, not in the URL."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class Sender:
    """Pushes to, deletes from and reads the configured Pushgateway.

    ``sleep`` and ``clock`` can be injected so that tests never really wait; ``peers`` is
    the memory of unreachable gateways (by default a file beside the store).
    """

    def __init__(
        self,
        config: Config,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        peers: PeerMemory | None = None,
    ) -> None:
        if not config.gateway:
            raise PushError("no Pushgateway configured (set JOBREPORT_GATEWAY)",
                            retryable=False)
        self.config = config
        self._base = _without_userinfo(config.gateway).rstrip("/")
        #: The gateway's URL as every message shows it.
        self.gateway = mask_url(self._base)
        self._secrets = config_secrets(config)
        remember(config)
        self._session = session
        self._sleep = sleep
        self._clock = clock
        self._peers = peers

    @property
    def peers(self) -> PeerMemory:
        if self._peers is None:
            from jobreport.sinks._peers import PeerMemory, memory_dir

            self._peers = PeerMemory(memory_dir(self.config.db, state_dir()))
        return self._peers

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = _new_session(self.config, self._base)
        return self._session

    # --- what callers use ----------------------------------------------------------------

    def push(
        self,
        job: str,
        grouping: Mapping[str, str],
        registry: Collector,
        *,
        budget: float | None = None,
        replace: bool = False,
    ) -> None:
        """Send ``registry``'s metrics to the group ``job`` + ``grouping`` (job excluded):
        a POST that adds to the group, or with ``replace`` a PUT that becomes the group.

        Retries connection errors, timeouts, 408, 429 and 5xx until ``budget`` seconds
        (default: the configured end-push budget) have passed; raises ``PushError``
        (``UnreachableError`` when the gateway could not be connected to).
        """
        from prometheus_client.exposition import push_to_gateway, pushadd_to_gateway

        send = push_to_gateway if replace else pushadd_to_gateway
        send(self._base, job=job, registry=registry, grouping_key={},
             timeout=self.config.timeout, handler=self._handler(job, grouping, budget))

    def delete(self, job: str, grouping: Mapping[str, str], *,
               budget: float | None = None, patient: bool = False) -> None:
        """Remove the group ``job`` + ``grouping`` from the gateway."""
        from prometheus_client.exposition import delete_from_gateway

        delete_from_gateway(self._base, job=job, grouping_key={},
                            timeout=self.config.timeout,
                            handler=self._handler(job, grouping, budget, patient=patient))

    def get(self, path: str, *, budget: float | None = None,
            patient: bool = False) -> requests.Response:
        """GET ``path`` (e.g. ``/api/v1/metrics``) from the gateway, with the same retries;
        unless ``patient``, the first unreachable answer ends them (``status`` and ``check``
        answer a person, who should hear "refused" at once, not after the budget)."""
        return self._send("GET", path, [], b"", budget, patient=patient)

    def _handler(self, job: str, grouping: Mapping[str, str], budget: float | None, *,
                 patient: bool = True) -> Callable[..., Callable[[], None]]:
        path = group_path(job, grouping)

        def handler(url: str, method: str, timeout: float | None,
                    headers: Sequence[tuple[str, str]], data: bytes) -> Callable[[], None]:
            # prometheus_client made the body and headers; the path is group_path's
            def send() -> None:
                self._send(method, path, headers, data, budget, patient=patient)
            return send
        return handler

    # --- one exchange with bounded retries -----------------------------------------------

    def _send(self, method: str, path: str, headers: Sequence[tuple[str, str]], data: bytes,
              budget: float | None, *, patient: bool = True) -> requests.Response:
        from tenacity import Retrying, retry_if_exception, wait_exponential, wait_random

        budget = self.config.budget if budget is None else budget
        attempts = MAX_ATTEMPTS
        recent = self.peers.unreachable_since(self._base)
        if recent is not None:
            # down moments ago: one short attempt, not the budget again
            budget, attempts = min(budget, QUICK_ATTEMPT), 1
        deadline = self._clock() + budget

        def stop(state: RetryCallState) -> bool:
            outcome = state.outcome
            if (not patient and outcome is not None and outcome.failed
                    and isinstance(outcome.exception(), UnreachableError)):
                return True  # an interactive command: say so now, not after the budget
            upcoming = state.upcoming_sleep or 0.0
            return state.attempt_number >= attempts or self._clock() + upcoming >= deadline

        retrying = Retrying(
            stop=stop,
            wait=wait_exponential(multiplier=0.2, max=2.0) + wait_random(0, 0.2),
            retry=retry_if_exception(lambda e: isinstance(e, PushError) and e.retryable),
            sleep=self._sleep,
            reraise=True,
        )
        response: requests.Response | None = None
        for attempt in retrying:
            with attempt:
                remaining = max(0.05, deadline - self._clock())
                response = self._attempt(method, self._base + path, dict(headers), data,
                                         timeout=min(self.config.timeout, remaining),
                                         remaining=remaining)
        assert response is not None
        return response

    def _attempt(self, method: str, url: str, headers: dict[str, str], data: bytes, *,
                 timeout: float, remaining: float) -> requests.Response:
        try:
            response = self._exchange(method, url, headers, data, timeout=timeout,
                                      remaining=remaining)
        except UnreachableError as e:
            self.peers.unreachable(self._base, str(e))
            raise
        self.peers.reachable(self._base)
        status = response.status_code
        if status < 300:
            return response
        text = " ".join(response.text.split())[:500]
        what = f"{response.status_code} {response.reason}".strip()
        shown = mask_url(url)
        if status in (401, 403):
            raise self._error(
                f"the Pushgateway at {self.gateway} refused the credentials ({what}); check "
                "JOBREPORT_USERNAME and JOBREPORT_PASSWORD(_FILE) or JOBREPORT_TOKEN(_FILE)",
                status=status, retryable=False, url=shown,
            )
        if status in RETRY_STATUSES:
            raise self._error(f"the Pushgateway at {self.gateway} answered {what}"
                              + (f": {text}" if text else ""), status=status, url=shown)
        if 300 <= status < 400:
            where = response.headers.get("Location", "")
            raise self._error(
                f"the Pushgateway at {self.gateway} answered {what}"
                + (f" to {mask_url(where)}" if where else "")
                + ": set JOBREPORT_GATEWAY to the URL it redirects to",
                status=status, retryable=False, url=shown)
        raise self._error(
            f"the Pushgateway at {self.gateway} rejected the {method} ({what})"
            + (f": {text}" if text else ""), status=status, retryable=False, url=shown,
        )

    def _exchange(self, method: str, url: str, headers: dict[str, str], data: bytes, *,
                  timeout: float, remaining: float) -> requests.Response:
        """One request and its whole answer, within ``remaining`` seconds of wall time."""
        import requests

        from jobreport.sinks._deadline import deadline

        shown = mask_url(url)
        with deadline(time.monotonic() + remaining) as limit:
            try:
                response = self.session.request(
                    method, url, headers=headers, data=data or None, timeout=timeout,
                    allow_redirects=False,
                )
                response.content  # noqa: B018  (read the whole answer within the deadline)
                return response
            except requests.exceptions.SSLError as e:
                if limit.expired:
                    raise self._timeout(remaining, shown) from None
                raise self._error(
                    f"TLS error talking to the Pushgateway at {self.gateway}: "
                    f"{_first_line(e)} (set JOBREPORT_CA_BUNDLE for a private CA)",
                    retryable=False, url=shown) from None
            except requests.exceptions.ConnectTimeout:
                raise self._error(
                    f"cannot reach the Pushgateway at {self.gateway}: no connection within "
                    f"{timeout:.3g}s", url=shown, unreachable=True) from None
            except requests.exceptions.Timeout:
                raise self._timeout(timeout, shown) from None
            except requests.exceptions.RequestException as e:
                if limit.expired:
                    raise self._timeout(remaining, shown) from None
                if isinstance(e, requests.exceptions.ConnectionError):
                    raise self._error(
                        f"cannot reach the Pushgateway at {self.gateway}: "
                        f"{_connection_reason(e)}", url=shown,
                        unreachable=_could_not_connect(e)) from None
                raise self._error(f"cannot talk to the Pushgateway at {self.gateway}: "
                                  f"{_first_line(e)}", retryable=False, url=shown) from None

    def _timeout(self, seconds: float, shown: str) -> PushError:
        return self._error(
            f"the Pushgateway at {self.gateway} did not answer within {seconds:.3g}s",
            url=shown)

    def _error(self, message: str, *, status: int | None = None, retryable: bool = True,
               url: str | None = None, unreachable: bool = False) -> PushError:
        cls = UnreachableError if unreachable else PushError
        return cls(mask(message, self._secrets), status=status, retryable=retryable, url=url)


def _new_session(cfg: Config, base: str) -> requests.Session:
    import requests

    from jobreport.sinks._deadline import DeadlineAdapter

    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, DeadlineAdapter())
    # Read the proxy settings of the environment once, not on every request
    # (requests looks them up per request, which costs more than the push itself).
    session.proxies.update(requests.utils.get_environ_proxies(base))
    session.trust_env = False
    session.headers["User-Agent"] = USER_AGENT
    parts = urlsplit(cfg.gateway or "")
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


def _could_not_connect(exc: BaseException) -> bool:
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connection_reason(exc: BaseException) -> str:
    text = str(exc)
    for needle, reason in (
        ("Connection refused", "connection refused"),
        ("Name or service not known", "unknown host name"),
        ("nodename nor servname", "unknown host name"),
        ("Temporary failure in name resolution", "host name lookup failed"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "the connection closed without an answer"),
    ):
        if needle in text:
            return reason
    return _first_line(exc)[:200]
