"""Fault sequences the real Pushgateway cannot produce on demand: status sequences answered
by ``responses`` (requests' own stub: 503, 503, 200; a 400 with a body; 401), and what needs a
real socket (a peer that never answers, nothing listening) by a loopback peer
(``tests.scripted``). Injected sleep and clock: no test waits for a retry."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import responses

from jobreport.config import load_config
from jobreport.errors import DeliveryError
from jobreport.exposition import text
from jobreport.sinks.http import USER_AGENT
from jobreport.sinks.pushgateway import PushgatewaySink
from jobreport.state import GroupState
from tests import servers
from tests.scripted import HANG, Answer, Recorded, ScriptedServer

GATEWAY = "http://gateway.test:9091"
PATH = "/metrics/job/backup/instance/h1"
BODY = text(GroupState(job="backup", grouping={"job": "backup"}, running=1))


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
def stub() -> Iterator[responses.RequestsMock]:
    """requests answered from a queue per URL (the last answer repeats)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def make_sink(clock: FakeClock, gateway: str = GATEWAY, env: dict[str, str] | None = None,
              **settings: object) -> PushgatewaySink:
    config = load_config(env=env or {}, gateway=gateway, instance="h1", **settings)
    return PushgatewaySink(config, sleep=clock.sleep, clock=clock)


def push(sink: PushgatewaySink, clock: FakeClock, budget: float = 10.0) -> None:
    sink.push_text("backup", {"instance": "h1"}, BODY, deadline=clock() + budget)


def answers(stub: responses.RequestsMock, *statuses: int, body: str = "") -> None:
    for status in statuses:
        stub.add(responses.POST, GATEWAY + PATH, status=status, body=body)


def test_503_twice_then_200_is_retried(stub: responses.RequestsMock) -> None:
    """408/429/5xx are retried with growing waits until the gateway takes the push."""
    clock = FakeClock()
    answers(stub, 503, 503, 200)
    push(make_sink(clock), clock)
    assert len(stub.calls) == 3
    assert len(clock.sleeps) == 2
    assert all(0 < s <= 2.2 for s in clock.sleeps)
    request = stub.calls[0].request
    assert request.method == "POST" and request.url == GATEWAY + PATH
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert request.body == BODY


@pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
def test_retryable_statuses(stub: responses.RequestsMock, status: int) -> None:
    """Each retryable status is retried once before the 200."""
    clock = FakeClock()
    answers(stub, status, 200)
    push(make_sink(clock), clock)
    assert len(stub.calls) == 2


def test_400_is_not_retried_and_shows_the_gateway_text(stub: responses.RequestsMock) -> None:
    """Any other 4xx stops at once; the gateway's own error text reaches the user."""
    clock = FakeClock()
    answers(stub, 400, body="pushed metrics are invalid or inconsistent")
    with pytest.raises(DeliveryError) as raised:
        push(make_sink(clock), clock)
    assert len(stub.calls) == 1
    assert clock.sleeps == []
    assert raised.value.status == 400 and not raised.value.retryable
    assert "pushed metrics are invalid or inconsistent" in str(raised.value)
    assert "400" in str(raised.value)


def test_401_names_the_settings_to_check(stub: responses.RequestsMock) -> None:
    """Refused credentials are not retried and say which settings to check."""
    clock = FakeClock()
    answers(stub, 401)
    with pytest.raises(DeliveryError) as raised:
        push(make_sink(clock), clock)
    assert "JOBREPORT_PASSWORD" in str(raised.value)
    assert len(stub.calls) == 1


def test_a_redirect_is_not_followed_and_names_the_setting(stub: responses.RequestsMock) -> None:
    """A 301 is not followed with the body: one line naming where it points and the
    setting to change."""
    clock = FakeClock()
    stub.add(responses.POST, GATEWAY + PATH, status=301,
             headers={"Location": "https://gateway.test/"})
    with pytest.raises(DeliveryError) as raised:
        push(make_sink(clock), clock)
    assert len(stub.calls) == 1
    assert "to https://gateway.test/" in str(raised.value)
    assert "set JOBREPORT_GATEWAY" in str(raised.value)


def test_zero_budget_tries_once(stub: responses.RequestsMock) -> None:
    """A budget of zero means one attempt and no waiting."""
    clock = FakeClock()
    answers(stub, 503)
    with pytest.raises(DeliveryError):
        push(make_sink(clock), clock, budget=0)
    assert len(stub.calls) == 1 and clock.sleeps == []


def test_auth_headers_and_secret_not_in_errors(stub: responses.RequestsMock) -> None:
    """Basic auth and bearer tokens are sent; the secret never appears in an error."""
    clock = FakeClock()
    answers(stub, 500)
    env = {"JOBREPORT_PASSWORD": "hunter2-secret", "JOBREPORT_USERNAME": "ops"}
    with pytest.raises(DeliveryError) as raised:
        push(make_sink(clock, env=env), clock, budget=0)
    assert stub.calls[0].request.headers["Authorization"] == \
        "Basic " + base64.b64encode(b"ops:hunter2-secret").decode()
    assert "hunter2" not in str(raised.value)

    stub.replace(responses.POST, GATEWAY + PATH, status=200)
    push(make_sink(clock, env={"JOBREPORT_TOKEN": "tok-123"}), clock)
    assert stub.calls[-1].request.headers["Authorization"] == "Bearer tok-123"


def test_credentials_in_the_url_are_never_shown(stub: responses.RequestsMock) -> None:
    """user:password@ in the gateway URL becomes basic auth and is masked in messages."""
    clock = FakeClock()
    answers(stub, 400, body="bad")
    with pytest.raises(DeliveryError) as raised:
        push(make_sink(clock, gateway="http://ops:pa55word@gateway.test:9091"), clock)
    assert "pa55word" not in str(raised.value)
    request = stub.calls[0].request
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(
        b"ops:pa55word").decode()
    assert request.url == GATEWAY + PATH


# --- what needs a real socket -------------------------------------------------------------


@pytest.mark.integration
def test_timeouts_are_retried_within_the_budget() -> None:
    """A gateway that never answers costs at most the budget, then a clear error."""
    clock = FakeClock()

    def whole_timeout(_request: Recorded) -> None:
        clock.now += 0.3  # each attempt uses its whole timeout (on the fake clock too)

    with ScriptedServer(default=Answer(action=HANG, on_request=whole_timeout)) as peer:
        sink = make_sink(clock, peer.url, timeout="0.3s")
        start = clock.now
        with pytest.raises(DeliveryError) as raised:
            push(sink, clock, budget=1.5)
        assert "did not answer" in str(raised.value)
        assert clock.now - start <= 1.5 + 0.3
        assert 2 <= len(peer.requests) <= 6
        assert all((r.method, r.path) == ("POST", PATH) for r in peer.requests)


def test_connection_errors_are_retried_then_reported() -> None:
    """Connection errors are retried; the final error is one line naming the gateway."""
    clock = FakeClock()
    closed = f"http://127.0.0.1:{servers.free_port()}"  # nothing listens there
    with pytest.raises(DeliveryError) as raised:
        push(make_sink(clock, closed), clock, budget=3)
    assert len(clock.sleeps) >= 1  # retried: a wait between attempts
    assert "\n" not in str(raised.value)
    assert "connection refused" in str(raised.value)
    assert closed in str(raised.value)
    assert raised.value.unreachable
    assert sum(clock.sleeps) <= 3.0
