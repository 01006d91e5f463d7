"""jobreport.runs.background: ends handed off a thread keep their group's order, a later end
of a group is known to an earlier one, and the exit waits for them, but only so long."""

from __future__ import annotations

import threading
import time

from jobreport.runs.background import Ends

DEADLINE = 30.0


def test_ends_of_a_group_are_written_in_the_order_handed_over() -> None:
    """Whatever order the threads run in, each end waits for the previous end of its group;
    other groups do not wait for it."""
    ends = Ends()
    written: list[str] = []
    first_may_write = threading.Event()
    turns = [ends.turn("g"), ends.turn("g"), ends.turn("other")]

    def end(name: str, index: int, hold: threading.Event | None = None) -> None:
        turn = turns[index]
        if hold is not None:
            hold.wait(DEADLINE)
        turn.wait(DEADLINE)
        written.append(name)
        turn.done()

    second = ends.submit(lambda: end("g2", 1), within=DEADLINE)
    other = ends.submit(lambda: end("other", 2), within=DEADLINE)
    first = ends.submit(lambda: end("g1", 0, first_may_write), within=DEADLINE)
    other.result(DEADLINE)
    assert written == ["other"]  # g2 waits for g1, which is held
    first_may_write.set()
    first.result(DEADLINE)
    second.result(DEADLINE)
    assert written == ["other", "g1", "g2"]
    assert ends.pending() == 0


def test_an_end_knows_a_later_end_of_its_group_was_handed_over() -> None:
    """done() is True when a later end of the same group exists (it will deliver), False for
    the newest end of a group."""
    ends = Ends()
    early, late = ends.turn("g"), ends.turn("g")
    alone = ends.turn("h")
    assert early.done() is True
    late.wait(DEADLINE)
    assert late.done() is False
    assert alone.done() is False
    assert ends.turn("g").done() is False  # the group's order starts afresh


def test_the_exit_waits_for_ends_but_only_until_their_deadline() -> None:
    """drain() returns True once every end is done; an end that outlives its own deadline
    is given up on (False), without waiting for it."""
    ends = Ends()
    release = threading.Event()
    ends.submit(lambda: None, within=DEADLINE)
    ends.submit(lambda: release.wait(DEADLINE) and None, within=0.2)
    started = time.monotonic()
    assert ends.drain() is False
    assert time.monotonic() - started < DEADLINE / 2
    release.set()
    deadline = time.monotonic() + DEADLINE
    while ends.pending() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ends.pending() == 0
    assert ends.drain() is True


def test_a_failing_end_does_not_stop_the_threads() -> None:
    """An end that raises (a bug) is logged and its future done; the next end runs."""
    ends = Ends(max_threads=1)

    def broken() -> None:
        raise RuntimeError("a bug")

    failed = ends.submit(broken, within=DEADLINE)
    done = threading.Event()
    after = ends.submit(done.set, within=DEADLINE)
    failed.result(DEADLINE)
    after.result(DEADLINE)
    assert done.is_set()
