"""The remote-write sink: Prometheus remote write 1.0, a snappy-compressed protobuf
``WriteRequest``.

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
and 429 are retried (by the deadline), every other 4xx (408 too) is permanent: the sender
must not retry it, so the group stays pending with the error recorded.

protobuf (the generated module in ``_prompb``) and cramjam are the ``remote-write`` extra
(``pip install 'jobreport[remote-write]'``): they are imported only when a delivery is built,
never on the way to starting a job's command, and without them the sink rejects each
delivery with one line naming the extra (the group stays pending for it).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from jobreport.config import Config, SinkSettings
from jobreport.errors import DeliveryError, NotConfiguredError
from jobreport.names import DEFAULT_NAMESPACE
from jobreport.sinks.base import Delivered, DeliveryResult, Probes
from jobreport.sinks.http import HttpSink, settings_of
from jobreport.state import GroupState

if TYPE_CHECKING:
    from jobreport.sinks._peers import PeerMemory

__all__ = ["EXTRA", "RemoteWriteSink", "encode", "preload", "series", "write_request"]

HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
#: What a plain install lacks for this sink, and how to get it.
EXTRA = "pip install 'jobreport[remote-write]'"

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


def _codec() -> tuple[Any, Any]:
    """(the generated protobuf module, cramjam); raises ``DeliveryError`` naming the extra
    when they cannot be imported (a plain install, or a protobuf pinned too old)."""
    try:
        import cramjam

        from jobreport.sinks._prompb import prompb_pb2
    except ImportError as e:
        missing = e.name or "protobuf or cramjam"
        raise DeliveryError(f"remote write needs the remote-write extra ({missing} cannot be "
                            f"imported): {EXTRA}", retryable=False) from None
    return prompb_pb2, cramjam


def write_request(items: Iterable[tuple[Labels, float]], timestamp_ms: int) -> bytes:
    """The serialized (uncompressed) ``WriteRequest`` of ``items``, one sample each at
    ``timestamp_ms``. Series are written in label order; a NaN stays a NaN. Raises
    ``DeliveryError`` without the remote-write extra."""
    generated: Any = _codec()[0]  # generated code, no type stubs
    request = generated.WriteRequest()
    for labels, value in sorted(items):
        ts = request.timeseries.add()
        for name, label_value in labels:
            ts.labels.add(name=name, value=label_value)
        ts.samples.add(value=value, timestamp=timestamp_ms)
    return bytes(request.SerializeToString())


def encode(state: GroupState, namespace: str = DEFAULT_NAMESPACE, *,
           now: float | None = None) -> bytes:
    """The body of one delivery of ``state``: the snappy (block format) ``WriteRequest``.
    Raises ``DeliveryError`` without the remote-write extra."""
    stamp = time.time() if now is None else now
    raw = write_request(series(state, namespace), math.floor(stamp * 1000))
    return bytes(_codec()[1].snappy.compress_raw(raw))


def preload() -> None:
    """Import what encoding a delivery needs (protobuf, the generated module, cramjam):
    a run's recorder calls it while the command runs, not after. Never raises: without
    the extra, each delivery says so."""
    with contextlib.suppress(DeliveryError):
        _codec()


class RemoteWriteSink(HttpSink, Probes):
    """Writes group states to a remote-write receiver at ``url`` (a ``Sink``).

    The gateway's auth and TLS settings (basic auth, bearer token, CA bundle, client
    certificate) apply; a ``user:password@`` in the URL is basic auth.
    """

    name = "remote-write"
    what = "the remote-write receiver"
    setting = "JOBREPORT_REMOTE_WRITE_URL"
    not_there = ("is the URL the receiver's write path? (/api/v1/write for Prometheus, "
                 "VictoriaMetrics and vmagent; Prometheus needs "
                 "--web.enable-remote-write-receiver): fix JOBREPORT_REMOTE_WRITE_URL")
    #: The spec: "5xx and 429 MUST be retried"; every other 4xx "MUST NOT" be (408 too).
    retry_statuses = frozenset({429}) | frozenset(range(500, 600))

    def __init__(self, config: Config | SinkSettings, url: str | None = None, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 peers: PeerMemory | None = None) -> None:
        settings = settings_of(config)
        url = url or settings.remote_write_url
        if not url:
            raise NotConfiguredError("no remote-write receiver configured (set "
                                     "JOBREPORT_REMOTE_WRITE_URL)",
                                     setting="JOBREPORT_REMOTE_WRITE_URL")
        super().__init__(settings, url, sleep=sleep, clock=clock, peers=peers)

    def deliver(self, state: GroupState, *, complete: bool, deadline: float) -> DeliveryResult:
        """Write ``state`` (whole or not: a receiver keeps no group to add to)."""
        return self.result(lambda: self.write(state, deadline=deadline))

    def remove(self, grouping: Mapping[str, str], *, deadline: float) -> DeliveryResult:
        """Nothing to do: a receiver has no group to delete; the last samples age out of the
        rules' lookback window (docs/sinks.md)."""
        return Delivered()

    def probe(self, *, deadline: float) -> str:
        """Write an empty ``WriteRequest`` (reachability and credentials, no sample)."""
        body = bytes(_codec()[1].snappy.compress_raw(write_request((), 0)))
        self.send("POST", self.url, body, HEADERS, deadline=deadline, patient=False)
        return f"{self.shown} takes writes"

    def write(self, state: GroupState, *, deadline: float, now: float | None = None) -> None:
        """Deliver ``state`` (stamped ``now``, default the current time); raises
        ``DeliveryError`` (``retryable`` False for a permanent rejection)."""
        body = encode(state, self.settings.namespace, now=now)
        self.send("POST", self.url, body, HEADERS, deadline=deadline)

