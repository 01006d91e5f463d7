"""Delivery to the Pushgateway: the body in the text format (``jobreport.exposition``), the
group's URL path (``group_path``), and one exchange at a time (``_http``) with bounded retries.

``group_path`` escapes the grouping key the way prometheus_client does (``@base64`` for
``/`` and empty values) and every value a URL path would rewrite (``.``, ``..``, ``%``...),
so that no input can make a push land in another group. Each request has one wall-clock
deadline for the whole exchange (``_deadline``) and retries go on within a total time
budget (tenacity); a gateway that could not be reached moments ago gets one short attempt
(``_peers``).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from jobreport._version import __version__
from jobreport.config import Config
from jobreport.errors import NotConfiguredError, PushError
from jobreport.secrets import config_secrets, mask, mask_url, remember
from jobreport.sinks._http import Client, ExchangeError, Response, describe
from jobreport.sinks._proxy import proxy_refused
from jobreport.sinks.base import RETRY_STATUSES, DeliveryOutcome, judge_error, judge_status

if TYPE_CHECKING:
    from prometheus_client.registry import Collector
    from tenacity import RetryCallState

    from jobreport.sinks._peers import PeerMemory
    from jobreport.state import GroupState

__all__ = ["QUICK_ATTEMPT", "Sender", "UnreachableError", "group_path"]

log = logging.getLogger("jobreport")

MAX_ATTEMPTS = 20
USER_AGENT = f"jobreport/{__version__}"
#: What a push says its body is (the text format 0.0.4, as prometheus_client's push sends).
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
#: The one attempt given to a gateway that could not be reached moments ago, in seconds.
QUICK_ATTEMPT = 1.0

# Sent as they are: values no URL path rewrites. Anything else (".", "..", "%", "/",
# non-ASCII, ":" ...) goes @base64, which the Pushgateway decodes back exactly.
_PLAIN = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9_.~-]*")


class UnreachableError(PushError):
    """The gateway could not be connected to at all (refused, unknown name, connect
    timeout): the next pushes to it would fail the same way, so callers stop early."""


def _segment(name: str, value: str) -> str:
    if _PLAIN.fullmatch(value) and value not in (".", ".."):
        return f"/{name}/{value}"
    # anything a URL path would clean, decode or split ("/", ".", "..", "%", "") goes
    # @base64 (the empty value as "=", as prometheus_client sends it), which the gateway
    # decodes back exactly
    encoded = base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii") or "="
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
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        peers: PeerMemory | None = None,
    ) -> None:
        if not config.gateway:
            raise NotConfiguredError("no Pushgateway configured (set JOBREPORT_GATEWAY)")
        self.config = config
        self._base = _without_userinfo(config.gateway).rstrip("/")
        #: The gateway's URL as every message shows it.
        self.gateway = mask_url(self._base)
        self._secrets = config_secrets(config)
        remember(config)
        self._client: Client | None = None
        self._sleep = sleep
        self._clock = clock
        self._peers = peers

    @property
    def peers(self) -> PeerMemory:
        if self._peers is None:
            from jobreport.sinks._peers import memory_for

            self._peers = memory_for(self.config.db)
        return self._peers

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.config, self._base, USER_AGENT)
        return self._client

    # --- the Sink protocol (jobreport.sinks.base) ---------------------------------------

    #: Keys this sink's delivered mark in the store.
    name = "pushgateway"

    def deliver(self, state: GroupState, *, complete: bool,
                budget: float | None = None) -> DeliveryOutcome:
        """Push ``state``: a PUT that replaces the group when it is ``complete``, else a POST
        that only adds to it."""
        from jobreport.exposition import text

        try:
            self.push_text(state.job, state.grouping, text(state, self.config.namespace),
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

    def held_state(self, grouping: Mapping[str, str], *,
             budget: float | None = None) -> GroupState | None:
        """The counters and last success/failure the gateway holds for the group (a store
        that has just been created adopts them, so its first push does not lower them);
        raises ``PushError`` when the gateway cannot say."""
        from jobreport.sinks.base import parse_held_group

        response = self.get("/api/v1/metrics", budget=budget)
        try:
            data = response.json()["data"]
            if not isinstance(data, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise PushError(f"the Pushgateway at {self.gateway} answered /api/v1/metrics "
                            "with something else than its groups", retryable=False,
                            url=self.gateway) from None
        for group in data:
            if isinstance(group, dict) and group.get("labels") == dict(grouping):
                return parse_held_group(group, dict(grouping), self.config.namespace)
        return None

    def record_failure(self, grouping: Mapping[str, str], *,
                       budget: float | None = None) -> None:
        """Have the gateway record a failed push for the group (``push_failure_time_seconds``,
        which ``JobreportPushFailing`` reads) without changing what it holds: one sample
        with a timestamp, which the Pushgateway always refuses and never stores (also with
        ``--push.disable-consistency-check``). Used after a push that had to leave families
        out, whose own rejection (a parse error) the gateway does not record."""
        stamp = int(time.time() * 1000)
        body = f"{self.config.namespace}_left_out_families 1 {stamp}\n".encode()
        with contextlib.suppress(PushError):  # the refusal is the point
            self._send("POST", group_path(grouping["job"], grouping),
                       [("Content-Type", TEXT_FORMAT)], body,
                       budget, patient=False)

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
        from prometheus_client.exposition import generate_latest

        self.push_text(job, grouping, generate_latest(registry), budget=budget,
                       replace=replace)

    def push_text(self, job: str, grouping: Mapping[str, str], body: bytes, *,
                  budget: float | None = None, replace: bool = False) -> None:
        """``push`` of a body already in the text format."""
        self._send("PUT" if replace else "POST", group_path(job, grouping),
                   [("Content-Type", TEXT_FORMAT)], body, budget)

    def delete(self, job: str, grouping: Mapping[str, str], *,
               budget: float | None = None, patient: bool = False) -> None:
        """Remove the group ``job`` + ``grouping`` from the gateway."""
        self._send("DELETE", group_path(job, grouping), [], b"", budget, patient=patient)

    def get(self, path: str, *, budget: float | None = None,
            patient: bool = False) -> Response:
        """GET ``path`` (e.g. ``/api/v1/metrics``) from the gateway, with the same retries;
        unless ``patient``, the first unreachable answer ends them (``status`` and ``check``
        answer a person, who should hear "refused" at once, not after the budget)."""
        return self._send("GET", path, [], b"", budget, patient=patient)

    # --- one exchange with bounded retries -----------------------------------------------

    def _send(self, method: str, path: str, headers: Sequence[tuple[str, str]], data: bytes,
              budget: float | None, *, patient: bool = True) -> Response:
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
        response: Response | None = None
        try:
            for attempt in retrying:
                with attempt:
                    remaining = max(0.05, deadline - self._clock())
                    response = self._attempt(method, self._base + path, dict(headers), data,
                                             timeout=min(self.config.timeout, remaining),
                                             remaining=remaining)
        except UnreachableError as e:
            if recent is None:
                raise
            raise UnreachableError(
                f"{e} (also unreachable {_ago(time.time() - recent[0])}: one short attempt "
                "per run until it answers again)", url=e.url) from None
        assert response is not None
        return response

    def _attempt(self, method: str, url: str, headers: dict[str, str], data: bytes, *,
                 timeout: float, remaining: float) -> Response:
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
        if status == 407:
            raise self._error(proxy_refused(f"the Pushgateway at {self.gateway}"),
                              status=status, retryable=False, url=shown)
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
                  timeout: float, remaining: float) -> Response:
        """One request and its whole answer, within ``remaining`` seconds of wall time."""
        try:
            return self.client.request(method, url, headers, data, timeout=timeout,
                                       within=remaining)
        except ExchangeError as e:
            message, retryable, unreachable = describe(
                e, f"the Pushgateway at {self.gateway}", timeout, remaining)
            raise self._error(message, retryable=retryable, url=mask_url(url),
                              unreachable=unreachable) from None

    def _error(self, message: str, *, status: int | None = None, retryable: bool = True,
               url: str | None = None, unreachable: bool = False) -> PushError:
        cls = UnreachableError if unreachable else PushError
        return cls(mask(message, self._secrets), status=status, retryable=retryable, url=url)


def _ago(seconds: float) -> str:
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"
