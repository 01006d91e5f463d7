"""@job_metrics on generators and async generators, against a real Pushgateway: the run
covers the iteration; what exhaustion, an exception, an early close, a generator dropped
without closing and one never iterated record; current_job() inside the steps only."""

from __future__ import annotations

import asyncio
import gc
import inspect
import time
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from jobreport import JobReportError, current_job, job_metrics
from tests.conftest import Gateway
from tests.instrumented import env, runs  # noqa: F401 - env is a fixture
from tests.isolation import own_dirs


def outcome(gateway: Gateway, job: str) -> str:
    [found] = [k for k, v in gateway.samples(job).items()
               if k.startswith("jobreport_last_outcome{") and v == 1]
    return found.split('"')[1]


# -- generators -----------------------------------------------------------------------------


def test_a_generator_run_covers_its_iteration(env: Gateway, tmp_path: Path) -> None:
    """From the first next() to exhaustion: the duration covers the iteration, current_job()
    works inside, the return value comes back through `yield from`, and the wrapper is a
    generator function still."""

    @job_metrics("rows")
    def rows(n: int) -> Generator[int, None, str]:
        for i in range(n):
            time.sleep(0.05)
            current_job().add_items(1)
            yield i
        return "all read"

    assert inspect.isgeneratorfunction(rows)

    def consume() -> Generator[int, None, str]:
        return (yield from rows(4))

    consumer = consume()
    assert list(consumer) == [0, 1, 2, 3]
    s = env.samples("rows")
    assert s["jobreport_last_run_success"] == 1
    assert s["jobreport_last_items"] == 4
    assert s["jobreport_last_duration_seconds"] >= 0.2
    collected = rows(1)
    assert next(collected) == 0
    with pytest.raises(StopIteration) as stop:
        next(collected)
    assert stop.value.value == "all read"


def test_current_job_is_the_generators_in_its_steps_only(env: Gateway) -> None:
    """The consumer's own code between two steps does not see the generator's run."""

    @job_metrics("steps")
    def steps() -> Iterator[int]:
        assert current_job().job == "steps"
        yield 1
        assert current_job().job == "steps"
        yield 2

    for _ in steps():
        with pytest.raises(JobReportError):
            current_job()
    with job_metrics("outer") as outer:
        for _ in steps():
            assert current_job() is outer


def test_a_generator_that_raises_is_a_failure(env: Gateway, tmp_path: Path) -> None:
    """An exception in the body goes on to the consumer unchanged; the run is a failure with
    the error kept."""
    error = ValueError("row 3 is malformed")

    @job_metrics("parse")
    def parse() -> Iterator[int]:
        yield 1
        yield 2
        raise error

    with pytest.raises(ValueError) as raised:
        list(parse())
    assert raised.value is error
    [run] = runs(tmp_path, "parse")
    assert (run.outcome, run.exit_code) == ("failure", 1)
    assert run.result is not None and run.result.error == "ValueError: row 3 is malformed"


def test_send_and_throw_reach_the_body(env: Gateway, tmp_path: Path) -> None:
    """send() and throw() go to the decorated generator as without the decorator: a thrown
    exception it handles is no failure, one it does not handle is."""

    @job_metrics("echo")
    def echo() -> Generator[str, str, None]:
        received = yield "ready"
        while True:
            try:
                received = yield f"got {received}"
            except KeyError:
                received = "a handled KeyError"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("a") == "got a"
    assert gen.throw(KeyError("k")) == "got a handled KeyError"
    with pytest.raises(OSError):
        gen.throw(OSError("disk gone"))
    [run] = runs(tmp_path, "echo")
    assert run.outcome == "failure"
    assert run.result is not None and run.result.error == "OSError: disk gone"


def test_a_consumer_that_breaks_is_a_success(env: Gateway, tmp_path: Path) -> None:
    """Leaving the loop early (break, then the generator is closed) is the consumer's
    choice, not the generator's failure: success, with the body's finally run."""
    cleaned: list[str] = []

    @job_metrics("early")
    def numbers() -> Iterator[int]:
        try:
            n = 0
            while True:
                current_job().add_items(1)
                yield n
                n += 1
        finally:
            cleaned.append(current_job().job)

    for n in numbers():
        if n == 2:
            break
    gen = numbers()
    next(gen)
    gen.close()
    assert cleaned == ["early", "early"]
    found = runs(tmp_path, "early")
    assert [(r.outcome, r.result.items if r.result else None) for r in found] == [
        ("success", 3.0), ("success", 1.0)]


def test_a_generator_that_fails_to_close_is_a_failure(env: Gateway, tmp_path: Path) -> None:
    """An exception raised while the generator closes goes on, and fails the run."""

    @job_metrics("stubborn")
    def stubborn() -> Iterator[int]:
        try:
            yield 1
        finally:
            raise RuntimeError("could not flush the output")

    gen = stubborn()
    next(gen)
    with pytest.raises(RuntimeError, match="could not flush"):
        gen.close()
    [run] = runs(tmp_path, "stubborn")
    assert run.outcome == "failure"


def test_a_dropped_generator_is_recorded_when_collected(env: Gateway, tmp_path: Path) -> None:
    """A generator abandoned mid-way without close() (held in a reference cycle, so that only
    the garbage collector finds it) is closed then, and its run recorded as a success."""

    @job_metrics("dropped")
    def endless() -> Iterator[int]:
        while True:
            yield 1

    class Holder:
        pass

    holder = Holder()
    holder.gen = endless()  # type: ignore[attr-defined]
    holder.self = holder  # type: ignore[attr-defined]
    next(holder.gen)  # type: ignore[attr-defined]
    del holder
    gc.collect()
    [run] = runs(tmp_path, "dropped")
    assert run.outcome == "success"


def test_a_generator_never_iterated_is_no_run(env: Gateway, tmp_path: Path) -> None:
    """Its body never ran: nothing is recorded, nothing pushed."""

    @job_metrics("never")
    def never() -> Iterator[int]:
        yield 1

    gen = never()
    del gen
    gc.collect()
    assert runs(tmp_path, "never") == []
    assert [g for g in env.groups() if g["labels"]["job"] == "never"] == []


def test_a_generator_iterated_in_a_coroutine(env: Gateway, tmp_path: Path) -> None:
    """A plain generator consumed inside an event loop: its end goes to a thread (the loop
    does not wait), and is recorded all the same."""

    @job_metrics("in-loop")
    def chunks() -> Iterator[bytes]:
        yield b"a"
        yield b"b"

    async def main() -> bytes:
        return b"".join(chunks())

    assert asyncio.run(main()) == b"ab"
    assert [r.outcome for r in runs(tmp_path, "in-loop")] == ["success"]


# -- async generators -----------------------------------------------------------------------


def test_an_async_generator_run_covers_its_iteration(env: Gateway, tmp_path: Path) -> None:
    """async for over a decorated async generator: one run over the whole iteration,
    current_job() inside, the wrapper an async generator function."""

    @job_metrics("pages")
    async def pages(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0.05)
            current_job().add_items(1)
            yield i

    assert inspect.isasyncgenfunction(pages)

    async def main() -> list[int]:
        return [i async for i in pages(4)]

    assert asyncio.run(main()) == [0, 1, 2, 3]
    s = env.samples("pages")
    assert s["jobreport_last_run_success"] == 1
    assert s["jobreport_last_items"] == 4
    assert s["jobreport_last_duration_seconds"] >= 0.2


def test_an_async_generator_that_raises_and_one_closed_early(
        env: Gateway, tmp_path: Path) -> None:
    """Raising: a failure, the exception goes on. Closed early (break then aclose(), or left
    to asyncio.run's shutdown of unfinished async generators): a success each."""
    cleaned: list[str] = []

    @job_metrics("feed")
    async def feed(fail: bool) -> AsyncIterator[int]:
        try:
            for i in range(100):
                await asyncio.sleep(0)
                if fail and i == 2:
                    raise ConnectionResetError("feed closed by peer")
                yield i
        finally:
            cleaned.append(current_job().job)

    async def main() -> None:
        with pytest.raises(ConnectionResetError):
            async for _ in feed(True):
                pass
        gen = feed(False)
        async for i in gen:
            if i == 1:
                break
        await gen.aclose()
        left = feed(False)
        await left.__anext__()  # left unfinished: asyncio.run closes it at the end

    asyncio.run(main())
    assert cleaned == ["feed", "feed", "feed"]
    found = runs(tmp_path, "feed")
    assert [r.outcome for r in found] == ["failure", "success", "success"]
    assert found[0].result is not None
    assert found[0].result.error == "ConnectionResetError: feed closed by peer"


def test_an_async_generator_cancelled_mid_iteration(env: Gateway, tmp_path: Path) -> None:
    """A task iterating a decorated async generator is cancelled: interrupted (130)."""
    started = asyncio.Event()

    @job_metrics("ticks")
    async def ticks() -> AsyncIterator[int]:
        started.set()
        while True:
            await asyncio.sleep(3600)
            yield 1

    async def main() -> None:
        async def consume() -> None:
            async for _ in ticks():
                pass

        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    [run] = runs(tmp_path, "ticks")
    assert (run.outcome, run.exit_code) == ("interrupted", 130)
    assert outcome(env, "ticks") == "interrupted"


def test_a_with_block_inside_a_generator_closed_early(env: Gateway, tmp_path: Path) -> None:
    """A `with job_metrics(...)` around a generator's yields sees GeneratorExit when the
    consumer stops early: the same rule, a success."""

    def numbers() -> Iterator[int]:
        with job_metrics("with-in-gen") as job:
            for n in range(10):
                job.add_items(1)
                yield n

    for n in numbers():
        if n == 1:
            break
    [run] = runs(tmp_path, "with-in-gen")
    assert (run.outcome, run.exit_code) == ("success", 0)
    assert run.result is not None and run.result.items == 2


def test_a_generator_suspended_when_the_program_ends(gateway: Gateway, tmp_path: Path) -> None:
    """A decorated generator still suspended at exit (never closed, never collected before
    the interpreter tears down) has its run ended at exit, as closed early."""
    import subprocess
    import sys

    program = tmp_path / "job.py"
    program.write_text(
        "from jobreport import job_metrics\n"
        "@job_metrics('left-open')\n"
        "def lines():\n"
        "    while True:\n"
        "        yield 'x'\n"
        "kept = lines()\n"
        "next(kept)\n")
    env = own_dirs(PATH="/usr/bin:/bin", PYTHONPATH=str(Path(__file__).resolve().parents[1]),
                   JOBREPORT_GATEWAY=gateway.url, JOBREPORT_DB=f"sqlite:///{tmp_path}/s.db")
    proc = subprocess.run([sys.executable, str(program)], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert gateway.samples("left-open")["jobreport_last_run_success"] == 1
