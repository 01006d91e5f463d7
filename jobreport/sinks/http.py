"""What every HTTP sink shares: the transport (``transport``), one retry policy, the memory
of unreachable peers (``_peers``), one judgement of an answer and one error for a failed
exchange (``DeliveryError``).

The judgement (``judge``): a 2xx is done; no connection, no answer in time, a broken
connection, and the sink's retry statuses (408, 429 and 5xx; remote write's spec retries
429 and 5xx only) are retried; every other answer (3xx: a redirect we must not follow with
the body; 4xx: a wrong path, a rejected family, credentials; TLS trouble, a setting that
cannot be sent) keeps the group pending with the error recorded.

The attempts of an exchange follow the one retry policy (``jobreport.sinks.retry``); a peer
that could not be reached moments ago gets one short attempt (``QUICK_ATTEMPT``) instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from jobreport._version import __version__
from jobreport.config import Config, SinkSettings
from jobreport.errors import DeliveryError
from jobreport.secrets import config_secrets, mask, mask_url, remember, url_secrets
from jobreport.sinks.base import Delivered, DeliveryResult, budget_of, failed
from jobreport.sinks.transport import Answer, NoAnswer, Reader, Transport

if TYPE_CHECKING:
    from jobreport.sinks._peers import PeerMemory

__all__ = ["QUICK_ATTEMPT", "RETRY_STATUSES", "HttpSink", "judge", "proxy_refused"]

USER_AGENT = f"jobreport/{__version__}"
#: The one attempt given to a peer that could not be reached moments ago, in seconds.
QUICK_ATTEMPT = 1.0
#: The shortest attempt: even a spent deadline gets one try (a budget of 0 tries once).
_LEAST = 0.05
#: Answers that mean "not now": the request may well succeed later unchanged.
RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
#: How a failed exchange without an answer is judged.
_RETRIED_FAILURES = frozenset({"unconnected", "connect-timeout", "timeout", "broken"})

DONE, RETRY, PENDING = "done", "retry", "pending"


def judge(answer: Answer | NoAnswer, retry_statuses: frozenset[int] = RETRY_STATUSES) -> str:
    """What an answer (or its absence) means: ``DONE``, ``RETRY`` or ``PENDING``."""
    if isinstance(answer, NoAnswer):
        return RETRY if answer.kind in _RETRIED_FAILURES else PENDING
    if 200 <= answer.status < 300:
        return DONE
    return RETRY if answer.status in retry_statuses else PENDING


def without_userinfo(url: str) -> str:
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


def settings_of(config: Config | SinkSettings) -> SinkSettings:
    """The sink settings of ``config`` (a whole ``Config`` or its ``sinks``)."""
    return config.sinks if isinstance(config, Config) else config


class HttpSink:
    """The HTTP side of a sink at ``url``: ``send`` one request with the retry policy and
    judge its answer. A subclass says what the peer is called (``what``), which setting
    names its URL (``setting``) and which statuses it retries (``retry_statuses``).

    ``sleep`` and ``clock`` (a monotonic clock: deadlines are in its terms) can be injected
    so that tests never wait; ``peers`` is the memory of unreachable peers (by default a
    file beside the store)."""

    what = "the peer"
    setting = "the URL"
    #: What a 404 or 405 most likely means: the URL names another server or path.
    not_there = ""
    retry_statuses = RETRY_STATUSES

    def __init__(self, settings: SinkSettings, url: str, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 peers: PeerMemory | None = None) -> None:
        self.settings = settings
        self.url = without_userinfo(url)
        #: The peer as every message shows it.
        self.shown = mask_url(self.url)
        remember(settings)
        self.transport = Transport(settings, self.url, USER_AGENT, url)
        # the URL's credentials travel as basic auth (and the proxies' are among
        # config_secrets): a peer may echo them
        self._secrets = tuple(dict.fromkeys(s for s in (
            *config_secrets(settings), *url_secrets(url)) if s))
        self._sleep = sleep
        self._clock = clock
        self._peers = peers

    @property
    def peers(self) -> PeerMemory:
        if self._peers is None:
            from jobreport.sinks._peers import memory_for

            self._peers = memory_for(self.settings.db)
        return self._peers

    @property
    def where(self) -> str:
        return f"{self.what} at {self.shown}"

    def result(self, call: Callable[[], object]) -> DeliveryResult:
        """What ``call`` (a raising exchange) comes to as a delivery result."""
        try:
            call()
        except DeliveryError as e:
            return failed(e)
        return Delivered()

    def send(self, method: str, url: str, body: bytes = b"",
             headers: Mapping[str, str] | None = None, *, deadline: float,
             patient: bool = True, reader: Reader | None = None) -> Answer:
        """``method`` ``url`` (under this sink's URL) with retries by ``deadline``; the
        whole answer of an attempt that is done (with ``reader``: what it read of the body
        as it came, ``Answer.read``), else ``DeliveryError`` for the last one. Unless
        ``patient``, the first unreachable answer ends the retries (``status`` and
        ``check`` answer a person, who should hear "refused" at once)."""
        attempts = None  # the policy's own number
        recent = self.peers.unreachable_since(self.url)
        if recent is not None:
            # down moments ago: one short attempt, not the whole deadline again
            deadline, attempts = min(deadline, self._clock() + QUICK_ATTEMPT), 1
        # the whole time given, for messages: an attempt cut short by the deadline did not
        # get an answer within this (not within what was left of it)
        given = budget_of(deadline) or max(0.0, deadline - self._clock())

        def attempt() -> Answer:
            return self._attempt(method, url, body, dict(headers or {}), deadline,
                                 given=given, reader=reader)

        try:
            try:
                answer = attempt()
            except DeliveryError as first:
                from jobreport.sinks.retry import retry_after  # tenacity: only when needed

                answer = retry_after(first, attempt, deadline, attempts=attempts,
                                     patient=patient, sleep=self._sleep, clock=self._clock)
        except DeliveryError as e:
            if recent is None or not e.unreachable:
                raise
            raise DeliveryError(
                f"{e} (also unreachable {_ago(time.time() - recent[0])}: one short attempt "
                "per run until it answers again)", url=e.url, unreachable=True) from None
        return answer

    def _attempt(self, method: str, url: str, body: bytes, headers: dict[str, str],
                 deadline: float, *, given: float, reader: Reader | None = None) -> Answer:
        now = self._clock()
        # this attempt: the per-attempt timeout and the deadline, whichever comes first,
        # on the real clock (the exchange's sockets are watched in real time); a reading
        # (a GET) grows with what the peer holds (a Pushgateway of 10,000 groups takes
        # seconds to say them all), and may take until the deadline: each socket operation
        # is still held to the timeout, and a cut-off reading would only start again
        reading = reader is not None or method == "GET"
        length = max(_LEAST, deadline - now if reading
                     else min(self.settings.timeout, deadline - now))
        # the limit a message names: the timeout when it cut the attempt, else all the
        # time the exchange was given
        limit = self.settings.timeout if not reading and length >= self.settings.timeout \
            else max(given, length)
        answer = self.transport.exchange(method, url, headers, body,
                                         timeout=self.settings.timeout,
                                         deadline=time.monotonic() + length,
                                         reader=reader)
        if isinstance(answer, NoAnswer) and answer.kind in ("unconnected", "connect-timeout"):
            error = self.error(self._no_answer(answer, limit), unreachable=True)
            self.peers.unreachable(self.url, str(error))
            raise error
        self.peers.reachable(self.url)
        verdict = judge(answer, self.retry_statuses)
        if verdict == DONE:
            assert isinstance(answer, Answer)
            return answer
        if isinstance(answer, NoAnswer):
            raise self.error(self._no_answer(answer, limit), retryable=verdict == RETRY)
        raise self.error(self._refusal(method, answer), status=answer.status,
                         retryable=verdict == RETRY)

    def _no_answer(self, failure: NoAnswer, limit: float) -> str:
        where = self.where
        if failure.kind == "unconnected":
            return f"cannot reach {where}: {failure.reason}"
        if failure.kind == "connect-timeout":
            return f"cannot reach {where}: no connection within {_seconds(limit)}"
        if failure.expired or failure.kind == "timeout":
            return f"{where} did not answer within {_seconds(limit)}"
        if failure.kind == "proxy-auth":
            return proxy_refused(where)
        if failure.kind == "tls":
            return (f"TLS error talking to {where}: {failure.reason} "
                    "(set JOBREPORT_CA_BUNDLE for a private CA)")
        if failure.kind == "broken":
            return f"cannot reach {where}: {failure.reason}"
        return f"cannot talk to {where}: {failure.reason}"

    def _refusal(self, method: str, answer: Answer) -> str:
        where = self.where
        status = answer.status
        what = f"{status} {answer.reason}".strip()
        # masked before it is squeezed and cut: a secret cut in half, or one holding
        # spaces, would no longer be found
        text = " ".join(mask(answer.text, self._secrets).split())[:500]
        if status in (401, 403):
            return (f"{where} refused the credentials ({what}); check JOBREPORT_USERNAME "
                    "and JOBREPORT_PASSWORD(_FILE) or JOBREPORT_TOKEN(_FILE)")
        if status == 407:
            return proxy_refused(where)
        if status in self.retry_statuses:
            return f"{where} answered {what}" + (f": {text}" if text else "")
        if 300 <= status < 400:
            location = answer.headers.get("Location", "")
            return (f"{where} answered {what}"
                    + (f" to {mask_url(location)}" if location else "")
                    + f": set {self.setting} to the URL it redirects to")
        refused = f"{where} rejected the {method} ({what})" + (f": {text}" if text else "")
        if status in (404, 405) and self.not_there:
            refused += f"; {self.not_there}"
        return refused

    def error(self, message: str, *, status: int | None = None, retryable: bool = True,
              unreachable: bool = False) -> DeliveryError:
        """The one error of this sink, secrets masked."""
        return DeliveryError(mask(message, self._secrets), status=status, retryable=retryable,
                             url=self.shown, unreachable=unreachable)


def proxy_refused(where: str) -> str:
    """The message of a 407 from the proxy in front of ``where``."""
    return (f"the proxy in front of {where} refused its credentials (407 Proxy "
            "Authentication Required): check the user and password in HTTP_PROXY / "
            "HTTPS_PROXY")


def _seconds(limit: float) -> str:
    """A time limit as the settings write it: ``5s``, ``10s``, ``0.5s`` (the deadline of
    an exchange is set a few milliseconds before its first attempt: ``9.997`` is 10s)."""
    return f"{float(f'{limit:.2g}') if limit < 10 else round(limit):g}s"


def _ago(seconds: float) -> str:
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"
