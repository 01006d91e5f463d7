"""Delivery to the Pushgateway: a requests session behind prometheus_client's push ``handler``.

prometheus_client builds the URL and escapes the grouping key (``@base64`` for ``/``, spaces
and empty values); this module sends the request with retries bounded by a total time budget
(tenacity). A push of a group's complete state (from a healthy store) is a PUT, which
replaces the group; without a store it is a POST (pushadd), which never removes anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from jobreport._version import __version__
from jobreport.config import Config
from jobreport.errors import NotConfiguredError, PushError
from jobreport.sinks.base import RETRY_STATUSES, DeliveryOutcome, judge_error, judge_status

if TYPE_CHECKING:
    import requests
    from prometheus_client.registry import Collector
    from tenacity import RetryCallState

    from jobreport.records import GroupState

__all__ = ["Sender", "redact_url"]

MAX_ATTEMPTS = 20
USER_AGENT = f"jobreport/{__version__}"


def redact_url(url: str) -> str:
    """``url`` without any user:password part."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class Sender:
    """Pushes to, deletes from and reads the configured Pushgateway.

    ``sleep`` and ``clock`` can be injected so that tests never really wait.
    """

    def __init__(
        self,
        config: Config,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not config.gateway:
            raise NotConfiguredError("no Pushgateway configured (set JOBREPORT_GATEWAY)")
        self.config = config
        self.gateway = redact_url(config.gateway)
        self._session = session
        self._sleep = sleep
        self._clock = clock

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            import requests

            cfg = self.config
            session = requests.Session()
            # Read the proxy settings of the environment once, not on every request
            # (requests looks them up per request, which costs more than the push itself).
            session.proxies.update(requests.utils.get_environ_proxies(self.gateway))
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
            if cfg.client_cert:
                session.cert = (
                    (cfg.client_cert, cfg.client_key) if cfg.client_key else cfg.client_cert
                )
            self._session = session
        return self._session

    # --- the Sink protocol (jobreport.sinks.base) ---------------------------------------

    #: Keys this sink's delivered mark in the store.
    name = "pushgateway"

    def deliver(self, state: GroupState, *, complete: bool,
                budget: float | None = None) -> DeliveryOutcome:
        """Push ``state``: a PUT that replaces the group when it is ``complete``, else a POST
        that only adds to it."""
        from jobreport.exposition import registry_for

        try:
            self.push(state.job, state.grouping, registry_for(state, self.config.namespace),
                      budget=budget, replace=complete)
        except PushError as e:
            return judge_error(e)
        return judge_status(200)

    def remove(self, grouping: Mapping[str, str], *,
               budget: float | None = None) -> DeliveryOutcome:
        """DELETE the group."""
        try:
            self.delete(grouping["job"], grouping, budget=budget)
        except PushError as e:
            return judge_error(e)
        return judge_status(200)

    # --- the prometheus_client seam -----------------------------------------------------

    def push(
        self,
        job: str,
        grouping: Mapping[str, str],
        registry: Collector,
        *,
        budget: float | None = None,
        replace: bool = False,
    ) -> None:
        """POST ``registry``'s metrics to the group ``job`` + ``grouping`` (job excluded), or
        PUT them (``replace``: the group then holds exactly these metrics).

        Retries connection errors, timeouts, 408, 429 and 5xx until ``budget`` seconds
        (default: the configured end-push budget) have passed; raises ``PushError``.
        """
        from prometheus_client.exposition import push_to_gateway, pushadd_to_gateway

        send = push_to_gateway if replace else pushadd_to_gateway
        send(
            self.gateway, job=job, registry=registry,
            grouping_key={k: v for k, v in grouping.items() if k != "job"},
            timeout=self.config.timeout, handler=self._handler(budget),
        )

    def delete(self, job: str, grouping: Mapping[str, str], *,
               budget: float | None = None) -> None:
        """Remove the group ``job`` + ``grouping`` from the gateway."""
        from prometheus_client.exposition import delete_from_gateway

        delete_from_gateway(
            self.gateway, job=job,
            grouping_key={k: v for k, v in grouping.items() if k != "job"},
            timeout=self.config.timeout, handler=self._handler(budget),
        )

    def get(self, path: str, *, budget: float | None = None) -> requests.Response:
        """GET ``path`` (e.g. ``/api/v1/metrics``) from the gateway, with the same retries."""
        return self._send("GET", self.gateway + path, [], b"", budget)

    def _handler(self, budget: float | None) -> Callable[..., Callable[[], None]]:
        def handler(url: str, method: str, timeout: float | None,
                    headers: Sequence[tuple[str, str]], data: bytes) -> Callable[[], None]:
            def send() -> None:
                self._send(method, url, headers, data, budget)
            return send
        return handler

    # --- one request with bounded retries ------------------------------------------------

    def _send(self, method: str, url: str, headers: Sequence[tuple[str, str]], data: bytes,
              budget: float | None) -> requests.Response:
        from tenacity import Retrying, retry_if_exception, wait_exponential, wait_random

        budget = self.config.budget if budget is None else budget
        start = self._clock()
        deadline = start + budget

        def stop(state: RetryCallState) -> bool:
            upcoming = state.upcoming_sleep or 0.0
            return (state.attempt_number >= MAX_ATTEMPTS
                    or self._clock() + upcoming >= deadline)

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
                response = self._attempt(method, url, dict(headers), data,
                                         min(self.config.timeout, remaining))
        assert response is not None
        return response

    def _attempt(self, method: str, url: str, headers: dict[str, str], data: bytes,
                 timeout: float) -> requests.Response:
        import requests

        shown = redact_url(url)
        try:
            response = self.session.request(
                method, url, headers=headers, data=data or None, timeout=timeout,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as e:
            raise PushError(
                f"TLS error talking to the Pushgateway at {self.gateway}: {_first_line(e)} "
                "(set JOBREPORT_CA_BUNDLE for a private CA)", retryable=False, url=shown,
            ) from None
        except requests.exceptions.Timeout:
            raise PushError(
                f"the Pushgateway at {self.gateway} did not answer within {timeout:.3g}s",
                url=shown,
            ) from None
        except requests.exceptions.ConnectionError as e:
            raise PushError(
                f"cannot reach the Pushgateway at {self.gateway}: {_connection_reason(e)}",
                url=shown,
            ) from None
        except requests.exceptions.RequestException as e:
            raise PushError(f"cannot talk to the Pushgateway at {self.gateway}: "
                            f"{_first_line(e)}", retryable=False, url=shown) from None
        status = response.status_code
        if status < 300:
            return response
        text = " ".join(response.text.split())[:500]
        what = f"{response.status_code} {response.reason}".strip()
        if status in (401, 403):
            raise PushError(
                f"the Pushgateway at {self.gateway} refused the credentials ({what}); check "
                "JOBREPORT_USERNAME and JOBREPORT_PASSWORD(_FILE) or JOBREPORT_TOKEN(_FILE)",
                status=status, retryable=False, url=shown,
            )
        if status in RETRY_STATUSES:
            raise PushError(f"the Pushgateway at {self.gateway} answered {what}"
                            + (f": {text}" if text else ""), status=status, url=shown)
        raise PushError(
            f"the Pushgateway at {self.gateway} rejected the {method} ({what})"
            + (f": {text}" if text else ""), status=status, retryable=False, url=shown,
        )


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


