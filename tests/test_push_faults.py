"""Fault sequences the real Pushgateway cannot produce on demand, answered by a scripted
loopback peer (``tests.scripted``), with injected sleep and clock so that no test waits
for a retry."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from jobreport.config import load_config
from jobreport.errors import PushError
from jobreport.exposition import registry_for
from jobreport.records import GroupState
from jobreport.sinks.pushgateway import USER_AGENT, Sender
from tests import servers
from tests.scripted import HANG, Answer, Recorded, ScriptedServer

PATH = "/metrics/job/backup/instance/h1"


class FakeClock:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def peer() -> Iterator[ScriptedServer]:
    """The gateway's stand-in; a test queues its answers (200 once they run out)."""
    with ScriptedServer() as server:
        yield server


def make_sender(clock: FakeClock, gateway: str, **settings: object) -> Sender:
    config = load_config(env={}, gateway=gateway, instance="h1", **settings)
    return Sender(config, sleep=clock.sleep, clock=clock)


def registry() -> object:
    return registry_for(GroupState(job="backup", grouping={"job": "backup"}, running=1))


def pushes(peer: ScriptedServer) -> list[Recorded]:
    """The requests the peer saw, each checked to be a push to the group."""
    assert all((r.method, r.path) == ("POST", PATH) for r in peer.requests), peer.requests
    return peer.requests


def test_503_twice_then_200_is_retried(peer: ScriptedServer) -> None:
    """408/429/5xx are retried with growing waits until the gateway takes the push."""
    clock = FakeClock()
    peer.add(503, 503, 200)
    make_sender(clock, peer.url).push(
        "backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert len(pushes(peer)) == 3
    assert len(clock.sleeps) == 2
    assert all(0 < s <= 2.2 for s in clock.sleeps)
    request = peer.requests[0]
    assert request.method == "POST"
    assert request.headers["User-Agent"] == USER_AGENT
    assert b"jobreport_running 1.0" in request.body


@pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
def test_retryable_statuses(peer: ScriptedServer, status: int) -> None:
    """Each retryable status is retried once before the 200."""
    clock = FakeClock()
    peer.add(status, 200)
    make_sender(clock, peer.url).push(
        "backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert len(pushes(peer)) == 2


def test_400_is_not_retried_and_shows_the_gateway_text(peer: ScriptedServer) -> None:
    """Any other 4xx stops at once; the gateway's own error text reaches the user."""
    clock = FakeClock()
    peer.add(Answer(400, body="pushed metrics are invalid or inconsistent"))
    with pytest.raises(PushError) as raised:
        make_sender(clock, peer.url).push(
            "backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert len(pushes(peer)) == 1
    assert clock.sleeps == []
    assert raised.value.status == 400 and not raised.value.retryable
    assert "pushed metrics are invalid or inconsistent" in str(raised.value)
    assert "400" in str(raised.value)


def test_401_names_the_settings_to_check(peer: ScriptedServer) -> None:
    """Refused credentials are not retried and say which settings to check."""
    clock = FakeClock()
    peer.add(401)
    with pytest.raises(PushError) as raised:
        make_sender(clock, peer.url).push(
            "backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert "JOBREPORT_PASSWORD" in str(raised.value)
    assert len(pushes(peer)) == 1


@pytest.mark.integration
def test_timeouts_are_retried_within_the_budget() -> None:
    """A gateway that never answers costs at most the budget, then a clear error."""
    clock = FakeClock()

    def whole_timeout(_request: Recorded) -> None:
        clock.now += 0.3  # each attempt uses its whole timeout (on the fake clock too)

    with ScriptedServer(default=Answer(action=HANG, on_request=whole_timeout)) as peer:
        sender = make_sender(clock, peer.url, timeout="0.3s", budget="1.5s")
        start = clock.now
        with pytest.raises(PushError) as raised:
            sender.push("backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
        assert "did not answer" in str(raised.value)
        assert clock.now - start <= 1.5 + 0.3
        assert 2 <= len(pushes(peer)) <= 6


def test_connection_errors_are_retried_then_reported() -> None:
    """Connection errors are retried; the final error is one line naming the gateway."""
    clock = FakeClock()
    closed = f"http://127.0.0.1:{servers.free_port()}"  # nothing listens there
    with pytest.raises(PushError) as raised:
        make_sender(clock, closed, budget="3s").push(
            "backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert len(clock.sleeps) >= 1  # retried: a wait between attempts
    assert "\n" not in str(raised.value)
    assert "connection refused" in str(raised.value)
    assert closed in str(raised.value)
    assert sum(clock.sleeps) <= 3.0


def test_zero_budget_tries_once(peer: ScriptedServer) -> None:
    """A budget of zero means one attempt and no waiting."""
    clock = FakeClock()
    peer.add(503)
    with pytest.raises(PushError):
        make_sender(clock, peer.url).push(
            "backup", {"instance": "h1"}, registry(), budget=0)  # type: ignore[arg-type]
    assert len(pushes(peer)) == 1 and clock.sleeps == []


def test_auth_headers_and_secret_not_in_errors(peer: ScriptedServer) -> None:
    """Basic auth and bearer tokens are sent; the secret never appears in an error."""
    clock = FakeClock()
    peer.add(Answer(500, body="oops"))
    env = {"JOBREPORT_PASSWORD": "hunter2-secret", "JOBREPORT_USERNAME": "ops"}
    config = load_config(env=env, gateway=peer.url, instance="h1", budget="0")
    with pytest.raises(PushError) as raised:
        Sender(config, sleep=clock.sleep, clock=clock).push(
            "backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert peer.requests[0].headers["Authorization"].startswith("Basic ")
    assert "hunter2" not in str(raised.value)
    assert "hunter2" not in repr(config)

    peer.add(200)
    config = load_config(env={"JOBREPORT_TOKEN": "tok-123"}, gateway=peer.url, instance="h1")
    Sender(config, sleep=clock.sleep, clock=clock).push(
        "backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert peer.requests[-1].headers["Authorization"] == "Bearer tok-123"
    assert len(pushes(peer)) == 2


def test_credentials_in_the_url_are_never_shown(peer: ScriptedServer) -> None:
    """user:password@ in the gateway URL becomes basic auth and is masked in messages."""
    clock = FakeClock()
    peer.add(Answer(400, body="bad"))
    config = load_config(env={}, gateway=f"http://ops:pa55word@127.0.0.1:{peer.port}",
                         instance="h1")
    with pytest.raises(PushError) as raised:
        Sender(config, sleep=clock.sleep, clock=clock).push(
            "backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert "pa55word" not in str(raised.value)
    auth = peer.requests[0].headers["Authorization"]
    assert auth == "Basic " + base64.b64encode(b"ops:pa55word").decode()
    assert "pa55word" not in peer.requests[0].path
