"""The one retry policy of the sinks, composed from tenacity's stop, wait and retry objects:
stop at the deadline, or after ``MAX_ATTEMPTS``, or (a person waiting) at the first
unreachable answer; exponential waits with jitter; retry what was judged retryable
(``DeliveryError.retryable``). ``sleep`` and ``clock`` are injectable, so tests never wait.

An exchange's first attempt is made before this module is loaded (``HttpSink.send``): most
succeed at once, and the end of a run should not load tenacity for them (4-6 ms). A first
attempt that failed is handed to ``retry_after``, which runs the policy as if tenacity had
made that attempt itself: the same attempts, waits and stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from jobreport.errors import DeliveryError

__all__ = ["MAX_ATTEMPTS", "retry_after", "retrying", "stop_at", "stop_if_unreachable"]

MAX_ATTEMPTS = 20

T = TypeVar("T")


class stop_at(stop_base):  # (named as tenacity names its stops)
    """Stop when the next attempt could not start before ``deadline`` (``clock()``'s
    time)."""

    def __init__(self, deadline: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline = deadline
        self.clock = clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.clock() + (retry_state.upcoming_sleep or 0.0) >= self.deadline


class stop_if_unreachable(stop_base):
    """Stop once an attempt could not even connect: the next ones would fail the same way,
    and whoever waits should hear it now."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        error = outcome.exception()
        return isinstance(error, DeliveryError) and error.unreachable


def _retryable(error: BaseException) -> bool:
    return isinstance(error, DeliveryError) and error.retryable


def retrying(deadline: float, *, attempts: int = MAX_ATTEMPTS, patient: bool = True,
             sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic) -> Retrying:
    """The policy for attempts that must be over by ``deadline``; unless ``patient``, the
    first unreachable answer ends them. The last attempt's error is raised as it is."""
    stop = stop_at(deadline, clock) | stop_after_attempt(attempts)
    if not patient:
        stop = stop | stop_if_unreachable()
    return Retrying(stop=stop,
                    wait=wait_exponential(multiplier=0.2, max=2.0) + wait_random(0, 0.2),
                    retry=retry_if_exception(_retryable), sleep=sleep, reraise=True)


def retry_after(first: DeliveryError, call: Callable[[], T], deadline: float, *,
                attempts: int | None = None, patient: bool = True,
                sleep: Callable[[float], None] = time.sleep,
                clock: Callable[[], float] = time.monotonic) -> T:
    """``call``'s result under the policy (``retrying``), its first attempt having failed
    with ``first``: tenacity is given that failure as its own first attempt (raised again,
    no request made), then retries ``call`` as it would have. The last error is raised."""
    failed = [first]

    def attempt() -> T:
        if failed:
            raise failed.pop()
        return call()

    policy = retrying(deadline, attempts=MAX_ATTEMPTS if attempts is None else attempts,
                      patient=patient, sleep=sleep, clock=clock)
    return policy(attempt)
