"""Fault sequences the real Pushgateway cannot produce on demand, driven with `responses`,
with injected sleep and clock so that no test really waits."""

from __future__ import annotations

import pytest
import requests
import responses

from jobreport.config import load_config
from jobreport.errors import PushError
from jobreport.exposition import registry_for
from jobreport.sinks.pushgateway import USER_AGENT, Sender
from jobreport.records import GroupState

GATEWAY = "http://gateway.test:9091"
URL = f"{GATEWAY}/metrics/job/backup/instance/h1"


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


def make_sender(clock: FakeClock, **settings: object) -> Sender:
    config = load_config(env={}, gateway=GATEWAY, instance="h1", **settings)
    return Sender(config, sleep=clock.sleep, clock=clock)


def registry() -> object:
    return registry_for(GroupState(job="backup", grouping={"job": "backup"}, running=1))


@responses.activate
def test_503_twice_then_200_is_retried() -> None:
    """408/429/5xx are retried with growing waits until the gateway takes the push."""
    clock = FakeClock()
    responses.post(URL, status=503)
    responses.post(URL, status=503)
    responses.post(URL, status=200)
    make_sender(clock).push("backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert len(responses.calls) == 3
    assert len(clock.sleeps) == 2
    assert all(0 < s <= 2.2 for s in clock.sleeps)
    request = responses.calls[0].request
    assert request.method == "POST"
    assert request.headers["User-Agent"] == USER_AGENT
    assert b"jobreport_running 1.0" in request.body  # type: ignore[operator]


@pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
@responses.activate
def test_retryable_statuses(status: int) -> None:
    """Each retryable status is retried once before the 200."""
    clock = FakeClock()
    responses.post(URL, status=status)
    responses.post(URL, status=200)
    make_sender(clock).push("backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert len(responses.calls) == 2


@responses.activate
def test_400_is_not_retried_and_shows_the_gateway_text() -> None:
    """Any other 4xx stops at once; the gateway's own error text reaches the user."""
    clock = FakeClock()
    responses.post(URL, status=400, body="pushed metrics are invalid or inconsistent")
    with pytest.raises(PushError) as raised:
        make_sender(clock).push("backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert len(responses.calls) == 1
    assert clock.sleeps == []
    assert raised.value.status == 400 and not raised.value.retryable
    assert "pushed metrics are invalid or inconsistent" in str(raised.value)
    assert "400" in str(raised.value)


@responses.activate
def test_401_names_the_settings_to_check() -> None:
    """Refused credentials are not retried and say which settings to check."""
    clock = FakeClock()
    responses.post(URL, status=401)
    with pytest.raises(PushError) as raised:
        make_sender(clock).push("backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert "JOBREPORT_PASSWORD" in str(raised.value)
    assert len(responses.calls) == 1


@responses.activate
def test_timeouts_are_retried_within_the_budget() -> None:
    """A gateway that never answers costs at most the budget, then a clear error."""
    clock = FakeClock()

    def slow(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        clock.now += 2.0  # each attempt uses its whole timeout
        raise requests.exceptions.ReadTimeout("read timed out")

    responses.add_callback(responses.POST, URL, callback=slow)
    sender = make_sender(clock, timeout="2s", budget="10s")
    start = clock.now
    with pytest.raises(PushError) as raised:
        sender.push("backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert "did not answer" in str(raised.value)
    assert clock.now - start <= 10.0 + 2.0
    assert 2 <= len(responses.calls) <= 6


@responses.activate
def test_connection_errors_are_retried_then_reported() -> None:
    """Connection errors are retried; the final error is one line naming the gateway."""
    clock = FakeClock()
    responses.post(URL, body=requests.exceptions.ConnectionError("Connection refused"))
    with pytest.raises(PushError) as raised:
        make_sender(clock, budget="3s").push(
            "backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert len(responses.calls) > 1
    assert "\n" not in str(raised.value)
    assert "connection refused" in str(raised.value)
    assert sum(clock.sleeps) <= 3.0


@responses.activate
def test_zero_budget_tries_once() -> None:
    """A budget of zero means one attempt and no waiting."""
    clock = FakeClock()
    responses.post(URL, status=503)
    with pytest.raises(PushError):
        make_sender(clock).push(
            "backup", {"instance": "h1"}, registry(), budget=0)  # type: ignore[arg-type]
    assert len(responses.calls) == 1 and clock.sleeps == []


@responses.activate
def test_auth_headers_and_secret_not_in_errors() -> None:
    """Basic auth and bearer tokens are sent; the secret never appears in an error."""
    clock = FakeClock()
    responses.post(URL, status=500, body="oops")
    env = {"JOBREPORT_PASSWORD": "hunter2-secret", "JOBREPORT_USERNAME": "ops"}
    config = load_config(env=env, gateway=GATEWAY, instance="h1", budget="0")
    with pytest.raises(PushError) as raised:
        Sender(config, sleep=clock.sleep, clock=clock).push(
            "backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert "hunter2" not in str(raised.value)
    assert "hunter2" not in repr(config)

    responses.post(URL, status=200)
    config = load_config(env={"JOBREPORT_TOKEN": "tok-123"}, gateway=GATEWAY, instance="h1")
    Sender(config, sleep=clock.sleep, clock=clock).push(
        "backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer tok-123"


@responses.activate
def test_credentials_in_the_url_are_never_shown() -> None:
    """user:password@ in the gateway URL becomes basic auth and is masked in messages."""
    clock = FakeClock()
    responses.post(URL, status=400, body="bad")
    config = load_config(env={}, gateway="http://ops:pa55word@gateway.test:9091",
                         instance="h1")
    with pytest.raises(PushError) as raised:
        Sender(config, sleep=clock.sleep, clock=clock).push(
            "backup", {"instance": "h1"}, registry())  # type: ignore[arg-type]
    assert "pa55word" not in str(raised.value)
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")
