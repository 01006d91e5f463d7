"""The Pushgateway sink: the body in the text format (``jobreport.exposition``), the group's
URL path (``group_path``), and what only the Pushgateway can do: say what it holds (every
group, or one: its ``/metrics`` as it streams in, read by ``pushgateway_api``), record a
failed push, be probed (``/api/v1/status``).

``group_path`` escapes the grouping key the way prometheus_client does (``@base64`` for
``/`` and empty values) and every value a URL path would rewrite (``.``, ``..``, ``%``...),
so that no input can make a push land in another group. The exchanges, their deadline and
retries are every HTTP sink's (``jobreport.sinks.http``).
"""

from __future__ import annotations

import base64
import contextlib
import re
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING

from jobreport.config import Config, SinkSettings
from jobreport.errors import DeliveryError, NotConfiguredError
from jobreport.sinks.base import (
    DeliveryResult,
    ListsGroups,
    Probes,
    RecordsFailure,
    SaysWhatItHolds,
)
from jobreport.sinks.http import HttpSink, settings_of

if TYPE_CHECKING:
    from jobreport.held import HeldGroup
    from jobreport.sinks._peers import PeerMemory
    from jobreport.state import GroupState

__all__ = ["TEXT_FORMAT", "PushgatewaySink", "group_path"]

#: What a push says its body is (the text format 0.0.4, as prometheus_client's push sends).
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"

# Sent as they are: values no URL path rewrites. Anything else (".", "..", "%", "/",
# non-ASCII, ":" ...) goes @base64, which the Pushgateway decodes back exactly.
_PLAIN = re.compile(r"[A-Za-z0-9_~-][A-Za-z0-9_.~-]*")


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


class PushgatewaySink(HttpSink, SaysWhatItHolds, ListsGroups, RecordsFailure, Probes):
    """Pushes to, deletes from and reads the configured Pushgateway (a ``Sink``)."""

    name = "pushgateway"
    what = "the Pushgateway"
    setting = "JOBREPORT_GATEWAY"
    not_there = ("is this a Pushgateway? Prometheus (port 9090) and other servers answer "
                 "404 to its paths; the Pushgateway listens on 9091 by default: fix "
                 "JOBREPORT_GATEWAY")

    def __init__(self, config: Config | SinkSettings, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 peers: PeerMemory | None = None) -> None:
        settings = settings_of(config)
        if not settings.gateway:
            raise NotConfiguredError("no Pushgateway configured (set JOBREPORT_GATEWAY)")
        super().__init__(settings, settings.gateway.rstrip("/"), sleep=sleep, clock=clock,
                         peers=peers)

    # --- the Sink protocol ------------------------------------------------------------------

    def deliver(self, state: GroupState, *, complete: bool, deadline: float) -> DeliveryResult:
        """Push ``state``: a PUT that replaces the group when it is ``complete``, else a POST
        that only adds to it."""
        from jobreport.exposition import text

        body = text(state, self.settings.namespace)
        return self.result(lambda: self.push_text(state.job, state.grouping, body,
                                                  deadline=deadline, replace=complete))

    def remove(self, grouping: Mapping[str, str], *, deadline: float) -> DeliveryResult:
        """DELETE the group."""
        return self.result(lambda: self.delete(grouping, deadline=deadline))

    # --- its capabilities -------------------------------------------------------------------

    def groups(self, *, deadline: float,
               keep: Collection[str] | None = None) -> list[HeldGroup]:
        """Every group the gateway holds, each with the gauges of jobreport's namespace
        named in ``keep`` (None: every one), read by ``deadline`` from its ``/metrics`` as
        it streams in (what is kept grows with the groups, never with the answer). Raises
        ``DeliveryError`` (at once when the gateway is unreachable: a person is waiting)."""
        return self._read(deadline, keep=keep)

    def held(self, grouping: Mapping[str, str], *, deadline: float) -> HeldGroup | None:
        """What the gateway holds for the group (every gauge of jobreport's and the
        counters; None: nothing), read from its ``/metrics`` as it streams in, keeping only
        that group's samples, by ``deadline``. A new store adopts it before its first push
        of the group, so that the push lowers nothing. Raises ``DeliveryError`` when the
        gateway cannot say (retryable: not now)."""
        found = self._read(deadline, only=grouping)
        return next((group for group in found if not group.empty), None)

    def _read(self, deadline: float, *, keep: Collection[str] | None = None,
              only: Mapping[str, str] | None = None) -> list[HeldGroup]:
        """The one reading of what the gateway holds (``pushgateway_api.read_groups``)."""
        from jobreport.sinks.pushgateway_api import read_groups

        namespace = self.settings.namespace

        def reader(chunks: Iterator[bytes]) -> list[HeldGroup]:
            return read_groups(chunks, namespace, keep=keep, only=only)

        try:
            answer = self.send("GET", self.url + "/metrics", b"", {"Accept": TEXT_FORMAT},
                               deadline=deadline, patient=False, reader=reader)
        except ValueError:
            raise self.error(f"{self.shown}/metrics did not answer with a Pushgateway's "
                             f"metrics in the text format; {self.not_there}",
                             retryable=False) from None
        return answer.read if isinstance(answer.read, list) else []

    def record_failure(self, grouping: Mapping[str, str], *, deadline: float) -> None:
        """Have the gateway record a failed push for the group (``push_failure_time_seconds``,
        which ``JobreportPushFailing`` reads) without changing what it holds: one sample
        with a timestamp, which the Pushgateway always refuses and never stores (also with
        ``--push.disable-consistency-check``). Used after a push that had to leave families
        out, whose own rejection (a parse error) the gateway does not record."""
        stamp = int(time.time() * 1000)
        body = f"{self.settings.namespace}_left_out_families 1 {stamp}\n".encode()
        with contextlib.suppress(DeliveryError):  # the refusal is the point
            self.send("POST", self.url + group_path(grouping["job"], grouping), body,
                      {"Content-Type": TEXT_FORMAT}, deadline=deadline, patient=False)

    def probe(self, *, deadline: float) -> str:
        """``Pushgateway VERSION at URL`` (the credentials accepted), or ``DeliveryError``."""
        from jobreport.sinks.pushgateway_api import parse_version

        answer = self.send("GET", self.url + "/api/v1/status", deadline=deadline,
                           patient=False)
        version = parse_version(answer.content)
        if version is None:
            return f"{self.shown} answers, but /api/v1/status says no version: is this a " \
                   "Pushgateway?"
        return f"Pushgateway {version} at {self.shown}"

    # --- what the commands use ------------------------------------------------------------

    def push_text(self, job: str, grouping: Mapping[str, str], body: bytes, *,
                  deadline: float, replace: bool = False) -> None:
        """Send ``body`` (the text format) to the group ``job`` + ``grouping``: a POST that
        adds to the group, or with ``replace`` a PUT that becomes the group. Retries no
        answer, 408, 429 and 5xx until ``deadline``; raises ``DeliveryError``."""
        self.send("PUT" if replace else "POST", self.url + group_path(job, grouping), body,
                  {"Content-Type": TEXT_FORMAT}, deadline=deadline)

    def delete(self, grouping: Mapping[str, str], *, deadline: float) -> None:
        """Remove the group ``grouping`` (job included) from the gateway; raises
        ``DeliveryError``."""
        self.send("DELETE", self.url + group_path(grouping["job"], grouping),
                  deadline=deadline, patient=False)
