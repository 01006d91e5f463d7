"""The host name lookup is inside the one wall-clock deadline of an exchange: a resolver that
hangs costs the budget, not longer, and counts as an unreachable gateway (the next runs make
one short attempt). ``socket.getaddrinfo`` is replaced in-process by one that hangs for one
name; the bounds asserted are generous ceilings only."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobreport.config import Config, load_config
from jobreport.errors import DeliveryError
from jobreport.exposition import text
from jobreport.sinks import _deadline
from jobreport.sinks.base import RetryLater
from jobreport.sinks.pushgateway import PushgatewaySink
from jobreport.sinks.remote_write import RemoteWriteSink
from jobreport.state import GroupState
from tests.conftest import Gateway
from tests.test_security import PASSWORD, USER, pki, secure_gateway  # noqa: F401 (fixtures)

SLACK = 5.0  # a generous ceiling on this noisy 2-core machine
HANGING = "hangs.jobreport.test"


class HangingResolver:
    """``getaddrinfo`` that blocks for ``HANGING`` until released (and counts the calls),
    and resolves ``alias.jobreport.test`` to 127.0.0.1 at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.real = socket.getaddrinfo

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == HANGING:
            self.calls += 1
            self.release.wait(120)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if host == "alias.jobreport.test":
            host = "127.0.0.1"
        if host == "multi.jobreport.test":  # an address that refuses, then the gateway's
            return [*self.real("127.0.0.2", port, *args, **kwargs),
                    *self.real("127.0.0.1", port, *args, **kwargs)]
        return self.real(host, port, *args, **kwargs)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[HangingResolver]:
    fake = HangingResolver()
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    try:
        yield fake
    finally:
        fake.release.set()


def config_for(url: str, tmp_path: Path, **settings: str) -> Config:
    return load_config(env={}, gateway=url, db=f"sqlite:///{tmp_path / 's.db'}",
                       instance="h1", **settings)


def push(config: Config, job: str, budget: float) -> None:
    """Push a running state of ``job`` within ``budget`` seconds; raises ``DeliveryError``."""
    PushgatewaySink(config).push_text(
        job, {"instance": "h1"}, text(GroupState(job=job, grouping={"job": job}, running=1)),
        deadline=time.monotonic() + budget)


@pytest.mark.integration  # waits out a budget of seconds
def test_a_hanging_lookup_is_cut_at_the_budget(resolver: HangingResolver,
                                               tmp_path: Path) -> None:
    """A push to a gateway whose name never resolves ends within its budget (plus a
    generous ceiling) as unreachable, saying the lookup did not finish; the next push makes
    one short attempt, and waits on the same lookup instead of starting another."""
    config = config_for(f"http://{HANGING}:9091", tmp_path, timeout="30s")
    start = time.monotonic()
    with pytest.raises(DeliveryError) as raised:
        push(config, "b", budget=2.0)
    assert time.monotonic() - start <= 2 + SLACK  # unbounded, it would wait 120 s
    assert raised.value.unreachable
    assert "the host name lookup did not finish in time" in str(raised.value)
    assert HANGING in str(raised.value)
    start = time.monotonic()
    with pytest.raises(DeliveryError) as again:
        push(config, "b", budget=2.0)
    assert time.monotonic() - start <= 1 + SLACK
    assert "one short attempt" in str(again.value)
    assert resolver.calls == 1, "one lookup in flight, not one per attempt"


@pytest.mark.integration  # waits out a budget of seconds
def test_a_hanging_lookup_is_cut_for_remote_write(resolver: HangingResolver,
                                                  tmp_path: Path) -> None:
    """The remote-write sink shares the bound (same connections)."""
    config = load_config(env={}, remote_write_url=f"http://{HANGING}:8428/api/v1/write",
                         db=f"sqlite:///{tmp_path / 's.db'}", instance="h1", timeout="30s")
    sink = RemoteWriteSink(config)
    start = time.monotonic()
    result = sink.deliver(GroupState(job="b", grouping={"job": "b", "instance": "h1"}),
                          complete=True, deadline=time.monotonic() + 2.0)
    assert time.monotonic() - start <= 2 + SLACK
    assert isinstance(result, RetryLater) and result.unreachable
    assert "the host name lookup did not finish in time" in result.reason


def test_a_name_that_resolves_still_reaches_the_gateway(resolver: HangingResolver,
                                                        gateway: Gateway,
                                                        tmp_path: Path) -> None:
    """A name (not an address) goes through the bounded lookup and the push lands."""
    port = gateway.url.rsplit(":", 1)[1]
    push(config_for(f"http://alias.jobreport.test:{port}", tmp_path), "named", budget=20.0)
    assert gateway.samples("named", instance="h1")["jobreport_running"] == 1


def test_each_address_of_a_name_is_tried(resolver: HangingResolver, gateway: Gateway,
                                         tmp_path: Path) -> None:
    """A name with two addresses, the first refusing: the push reaches the second."""
    port = gateway.url.rsplit(":", 1)[1]
    push(config_for(f"http://multi.jobreport.test:{port}", tmp_path), "multi", budget=20.0)
    assert gateway.samples("multi", instance="h1")["jobreport_running"] == 1


def test_a_lookup_that_fails_fast_is_an_unknown_name(resolver: HangingResolver) -> None:
    """``resolve`` passes on the resolver's own error, and a lookup past its deadline is a
    ``gaierror`` too (what urllib3 turns into an unreachable name)."""
    with pytest.raises(socket.gaierror, match="did not finish in time"):
        _deadline.resolve(HANGING, 80, time.monotonic() + 0.2)
    resolver.release.set()
    # the lookup in flight ends with the resolver's answer, and a new one gives the same
    deadline = time.monotonic() + 30
    while _deadline._lookups and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(socket.gaierror, match="not known"):
        _deadline.resolve(HANGING, 80, time.monotonic() + 30)
    assert _deadline.resolve("alias.jobreport.test", 80, time.monotonic() + 30) == \
        ["127.0.0.1"]


def test_tls_still_checks_the_name_not_the_address(
        resolver: HangingResolver, secure_gateway: str, pki: Path, tmp_path: Path) -> None:
    """The connect goes to the looked-up address, but TLS verifies the name of the URL: a
    name the certificate holds (localhost) is accepted, one it does not hold is refused
    although its address (127.0.0.1) is in the certificate."""
    port = secure_gateway.rsplit(":", 1)[1]

    def secure(host: str) -> Config:
        return load_config(env={"JOBREPORT_PASSWORD": PASSWORD},
                           gateway=f"https://{host}:{port}", instance="h1",
                           db=f"sqlite:///{tmp_path / 's.db'}", username=USER,
                           ca_bundle=str(pki / "ca.crt"), timeout="10s")

    push(secure("localhost"), "tls", budget=30.0)
    with pytest.raises(DeliveryError) as raised:
        push(secure("alias.jobreport.test"), "tls", budget=30.0)
    assert "TLS error" in str(raised.value)
    assert "alias.jobreport.test" in str(raised.value)
