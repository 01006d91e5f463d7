"""An exchange's first attempt is made before tenacity is loaded (``HttpSink.send``), and a
failed one is handed to ``retry_after``: the policy must then make the same attempts, wait
the same waits and stop at the same point as ``retrying`` does when tenacity makes every
attempt itself. Compared on fake clocks (nothing waits), for any run of answers; and a
delivery that succeeds at once does not load tenacity at all."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobreport.errors import DeliveryError
from jobreport.sinks.retry import retry_after, retrying
from tests.conftest import Gateway

#: What one attempt does: answer, fail so that it is retried, fail for good, or not connect.
KINDS = ("ok", "retry", "reject", "unreachable")


class Peer:
    """A scripted peer on a fake clock: each attempt takes a second; sleeping moves time."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.now = 0.0
        self.log: list[tuple[str, float]] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.log.append(("sleep", round(seconds, 9)))
        self.now += seconds

    def call(self) -> str:
        self.now += 1.0
        kind = self.script.pop(0) if self.script else "retry"
        self.log.append((kind, self.now))
        if kind == "ok":
            return "answer"
        raise DeliveryError(kind, retryable=kind != "reject",
                            unreachable=kind == "unreachable")


def outcome(call: Callable[[], str]) -> str:
    try:
        return call()
    except DeliveryError as e:
        return f"error: {e}"


def all_by_tenacity(peer: Peer, deadline: float, attempts: int, patient: bool) -> str:
    policy = retrying(deadline, attempts=attempts, patient=patient, sleep=peer.sleep,
                      clock=peer.clock)
    return outcome(lambda: policy(peer.call))


def first_outside(peer: Peer, deadline: float, attempts: int, patient: bool) -> str:
    def send() -> str:  # as HttpSink.send does it
        try:
            return peer.call()
        except DeliveryError as first:
            return retry_after(first, peer.call, deadline, attempts=attempts,
                               patient=patient, sleep=peer.sleep, clock=peer.clock)
    return outcome(send)


@settings(max_examples=300, deadline=None)
@given(script=st.lists(st.sampled_from(KINDS), min_size=1, max_size=25),
       deadline=st.floats(min_value=0.5, max_value=60.0),
       attempts=st.integers(min_value=1, max_value=20), patient=st.booleans(),
       seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_the_first_attempt_outside_tenacity_changes_nothing(
        script: list[str], deadline: float, attempts: int, patient: bool, seed: int) -> None:
    one, other = Peer(script), Peer(script)
    random.seed(seed)  # the waits' jitter: the same draws on both sides
    expected = all_by_tenacity(one, deadline, attempts, patient)
    random.seed(seed)
    got = first_outside(other, deadline, attempts, patient)
    assert got == expected
    assert other.log == one.log


def test_a_first_failure_is_retried_and_a_later_answer_returned() -> None:
    peer = Peer(["retry", "retry", "ok"])
    assert first_outside(peer, 60.0, 20, True) == "answer"
    assert [kind for kind, _ in peer.log if kind != "sleep"] == ["retry", "retry", "ok"]
    assert sum(1 for kind, _ in peer.log if kind == "sleep") == 2


@pytest.mark.integration  # a child process
def test_a_delivery_that_lands_at_once_does_not_load_tenacity(gateway: Gateway) -> None:
    program = textwrap.dedent(f"""
        import sys, time
        from jobreport.config import load_config
        from jobreport.sinks.pushgateway import PushgatewaySink
        from jobreport.state import GroupState
        sink = PushgatewaySink(load_config(gateway={gateway.url!r}))
        result = sink.deliver(GroupState(job="quick", grouping={{"job": "quick"}}),
                              complete=True, deadline=time.monotonic() + 10)
        print(type(result).__name__, "tenacity" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.split() == ["Delivered", "False"], out.stdout + out.stderr
