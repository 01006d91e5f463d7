"""Delivery by Prometheus remote write 1.0: a snappy-compressed protobuf ``WriteRequest``.

Every delivery writes the group's whole state as one sample per series, stamped with the
delivery time, so that a receiver (Prometheus ``--web.enable-remote-write-receiver``,
VictoriaMetrics, vmagent, Mimir, Thanos Receive, Cortex) holds the same series the
Pushgateway would expose. The series carry ``job``, ``instance`` (unless ``--no-instance``)
and the grouping labels. A receiver keeps no state between writes: a job that does not run
has no fresh sample, and its series go stale after 5 minutes, which is why this sink has its
own rule variant (``jobreport rules --sink remote-write``).

The protocol (https://prometheus.io/docs/specs/remote_write_spec/): POST, body a
``prometheus.WriteRequest`` compressed with snappy's *block* format, headers
``Content-Encoding: snappy``, ``Content-Type: application/x-protobuf`` and
``X-Prometheus-Remote-Write-Version: 0.1.0``; labels sorted by name with ``__name__``; 5xx
and 429 are retried (within the budget), every other 4xx is permanent: the sender must not
retry it, so the group stays pending with the error recorded.

protobuf (the generated module in ``_prompb``) and cramjam are imported only when a delivery
is built, never on the way to starting a job's command.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from jobreport._version import __version__
from jobreport.config import Config
from jobreport.errors import PushError
from jobreport.names import DEFAULT_NAMESPACE
from jobreport.state import GroupState

if TYPE_CHECKING:
    from tenacity import RetryCallState

    from jobreport.sinks._http import Client, Response
    from jobreport.sinks._peers import PeerMemory
    from jobreport.sinks.base import DeliveryOutcome

__all__ = ["RemoteWriter", "encode", "preload", "series", "write_request"]

USER_AGENT = f"jobreport/{__version__}"
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": USER_AGENT,
}
#: The spec: "5xx and 429 MUST be retried"; every other 4xx "MUST NOT" be.
MAX_ATTEMPTS = 20

Labels = tuple[tuple[str, str], ...]


def series(state: GroupState, namespace: str = DEFAULT_NAMESPACE) -> Iterator[tuple[Labels, float]]:
    """Each series of ``state`` as (labels sorted by name with ``__name__``, value).

    The families are those of a push (``jobreport.exposition``): counters keep their
    ``_total`` sample name, a custom family's samples keep their own names and labels. The
    group's labels (job, instance, grouping) come first and win over a sample's own label of
    the same name, as the Pushgateway's grouping key does.
    """
    from jobreport.exposition import families

    group = {k: v for k, v in state.grouping.items()}
    group["job"] = state.job
    for family in families(state, namespace):
        for name, sample_labels, value in family.samples:
            if name.endswith("_created"):
                continue  # a creation time is not a value a rule reads
            labels = dict(sample_labels)
            labels.update(group)
            labels["__name__"] = name
            yield tuple(sorted(labels.items())), float(value)


def write_request(items: Iterable[tuple[Labels, float]], timestamp_ms: int) -> bytes:
    """The serialized (uncompressed) ``WriteRequest`` of ``items``, one sample each at
    ``timestamp_ms``. Series are written in label order; a NaN stays a NaN."""
    from jobreport.sinks._prompb import prompb_pb2

    generated: Any = prompb_pb2  # generated code, no type stubs
    request = generated.WriteRequest()
    for labels, value in sorted(items):
        ts = request.timeseries.add()
        for name, label_value in labels:
            ts.labels.add(name=name, value=label_value)
        ts.samples.add(value=value, timestamp=timestamp_ms)
    return bytes(request.SerializeToString())


def encode(state: GroupState, namespace: str = DEFAULT_NAMESPACE, *,
           now: float | None = None) -> bytes:
    """The body of one delivery of ``state``: the snappy (block format) ``WriteRequest``."""
    import cramjam

    stamp = time.time() if now is None else now
    raw = write_request(series(state, namespace), math.floor(stamp * 1000))
    return bytes(cramjam.snappy.compress_raw(raw))


def preload() -> None:
    """Import what encoding a delivery needs (protobuf, the generated module, cramjam):
    the reporter calls it while the job's command runs, not after."""
    import cramjam  # noqa: F401

    from jobreport.sinks._prompb import prompb_pb2  # noqa: F401


class RemoteWriter:
    """Writes group states to a remote-write receiver at ``url`` (a ``Sink``).

    The gateway's auth and TLS settings (basic auth, bearer token, CA bundle, client
    certificate) apply. The delivery rules are the Pushgateway's and use its pieces: one
    wall-clock deadline per exchange (``_deadline``), and a receiver that could not be
    reached moments ago gets one short attempt (``_peers``, keyed by the URL). ``sleep``,
    ``clock`` and ``peers`` can be injected so that tests never wait.
    """

    name = "remote-write"

    def __init__(
        self,
        config: Config,
        url: str | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        peers: PeerMemory | None = None,
    ) -> None:
        url = url or config.remote_write_url
        if not url:
            raise PushError("no remote-write receiver configured "
                            "(set JOBREPORT_REMOTE_WRITE_URL)", retryable=False)
        from jobreport.secrets import config_secrets, mask_url, remember

        self.config = config
        self.url = url
        self.shown = mask_url(url)
        self._secrets = (*config_secrets(config), *_url_secret(url))
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
            from jobreport.sinks._http import Client

            self._client = Client(self.config, self.url, USER_AGENT, credentials_url=self.url)
        return self._client

    # --- the Sink seam -------------------------------------------------------------------

    def deliver(self, state: GroupState, *, complete: bool,
                budget: float | None = None) -> DeliveryOutcome:
        """Write ``state`` (whole or not: a receiver keeps no group to add to)."""
        from jobreport.sinks.base import Delivered, judge_error

        try:
            self.write(state, budget=budget)
        except PushError as e:
            return judge_error(e)
        return Delivered()

    def remove(self, grouping: Mapping[str, str], *,
               budget: float | None = None) -> DeliveryOutcome:
        """Nothing to do: a receiver has no group to delete; the last samples age out of the
        rules' lookback window (docs/sinks.md)."""
        from jobreport.sinks.base import Delivered

        return Delivered()

    def probe(self, *, budget: float | None = None) -> None:
        """Write an empty ``WriteRequest`` (reachability and credentials, no sample);
        raises ``PushError``."""
        import cramjam

        self._send(bytes(cramjam.snappy.compress_raw(write_request((), 0))),
                   self.config.budget if budget is None else budget, patient=False)

    # --- the exchange --------------------------------------------------------------------

    def write(self, state: GroupState, *, budget: float | None = None,
              now: float | None = None) -> None:
        """Deliver ``state`` (stamped ``now``, default the current time); raises
        ``PushError`` (``retryable`` False for a permanent rejection)."""
        body = encode(state, self.config.namespace, now=now)
        self._send(body, self.config.budget if budget is None else budget)

    def _send(self, body: bytes, budget: float, *, patient: bool = True) -> None:
        from tenacity import Retrying, retry_if_exception, wait_exponential, wait_random

        from jobreport.sinks.pushgateway import QUICK_ATTEMPT, UnreachableError

        attempts = MAX_ATTEMPTS
        if self.peers.unreachable_since(self.url) is not None:
            budget, attempts = min(budget, QUICK_ATTEMPT), 1  # down moments ago
        deadline = self._clock() + budget

        def stop(state: RetryCallState) -> bool:
            outcome = state.outcome
            if (not patient and outcome is not None and outcome.failed
                    and isinstance(outcome.exception(), UnreachableError)):
                return True
            upcoming = state.upcoming_sleep or 0.0
            return state.attempt_number >= attempts or self._clock() + upcoming >= deadline

        retrying = Retrying(
            stop=stop,
            wait=wait_exponential(multiplier=0.2, max=2.0) + wait_random(0, 0.2),
            retry=retry_if_exception(lambda e: isinstance(e, PushError) and e.retryable),
            sleep=self._sleep,
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                remaining = max(0.05, deadline - self._clock())
                self._attempt(body, min(self.config.timeout, remaining), remaining)

    def _attempt(self, body: bytes, timeout: float, remaining: float) -> None:
        from jobreport.sinks.pushgateway import UnreachableError

        try:
            response = self._exchange(body, timeout, remaining)
        except UnreachableError as e:
            self.peers.unreachable(self.url, str(e))
            raise
        self.peers.reachable(self.url)
        status = response.status_code
        if status < 300:
            return
        where = f"the remote-write receiver at {self.shown}"
        text = " ".join(response.text.split())[:500]
        what = f"{status} {response.reason}".strip() + (f": {text}" if text else "")
        if status in (401, 403):
            raise self._error(f"{where} refused the credentials ({what}); check "
                              "JOBREPORT_USERNAME and JOBREPORT_PASSWORD(_FILE) or "
                              "JOBREPORT_TOKEN(_FILE)", status=status, retryable=False)
        if status == 407:
            from jobreport.sinks._proxy import proxy_refused

            raise self._error(proxy_refused(where), status=status, retryable=False)
        if status == 429 or status >= 500:  # the spec: retry these, and only these
            raise self._error(f"{where} answered {what}", status=status)
        raise self._error(f"{where} rejected the write ({what})", status=status,
                          retryable=False)

    def _exchange(self, body: bytes, timeout: float, remaining: float) -> Response:
        """One POST and its whole answer within ``remaining`` seconds of wall time."""
        from jobreport.sinks._http import ExchangeError, describe

        try:
            return self.client.request("POST", self.url, dict(HEADERS), body,
                                       timeout=timeout, within=remaining)
        except ExchangeError as e:
            message, retryable, unreachable = describe(
                e, f"the remote-write receiver at {self.shown}", timeout, remaining)
            raise self._error(message, retryable=retryable, unreachable=unreachable) from None

    def _error(self, message: str, *, status: int | None = None, retryable: bool = True,
               unreachable: bool = False) -> PushError:
        from jobreport.secrets import mask
        from jobreport.sinks.pushgateway import UnreachableError

        cls = UnreachableError if unreachable else PushError
        return cls(mask(message, self._secrets), status=status, retryable=retryable,
                   url=self.shown)


def _url_secret(url: str) -> tuple[str, ...]:
    from urllib.parse import urlsplit

    password = urlsplit(url).password
    return (password,) if password else ()
