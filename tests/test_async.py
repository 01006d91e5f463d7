"""job_metrics in async code, against a real Pushgateway: decorated coroutines, ``async with``,
current_job() in tasks, concurrent runs of one function, cancellation and timeouts, and the
event loop never waiting for a store write or a delivery."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from jobreport import JobReportError, current_job, job_metrics
from jobreport.runs.background import ENDS
from jobreport.store.store import Store
from tests.conftest import Gateway
from tests.faults import SilentServer
from tests.instrumented import env, runs  # noqa: F401 - env is a fixture
from tests.isolation import own_dirs

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 60.0  # generous bounds: a loaded machine is slow, a correct run never waits this


# -- decorated coroutines -------------------------------------------------------------------


def test_a_decorated_coroutine_covers_the_awaited_body(env: Gateway, tmp_path: Path) -> None:
    """The run lasts as long as the awaited body, current_job() works in it, and the value
    comes back; the wrapper is still a coroutine function with the function's name."""

    @job_metrics("fetch")
    async def fetch(n: int) -> str:
        await asyncio.sleep(0.3)
        current_job().add_items(n)
        return f"got {n}"

    assert inspect.iscoroutinefunction(fetch)
    assert fetch.__name__ == "fetch" and fetch.__wrapped__ is not None  # type: ignore[attr-defined]
    assert asyncio.run(fetch(4)) == "got 4"
    s = env.samples("fetch")
    assert s["jobreport_last_run_success"] == 1
    assert s["jobreport_last_duration_seconds"] >= 0.3
    assert s["jobreport_last_items"] == 4
    assert s["jobreport_running"] == 0


def test_a_coroutine_that_raises_is_a_failure_and_the_exception_goes_on(
        env: Gateway, tmp_path: Path) -> None:
    """The same exception object reaches the caller with the body's frames in its traceback;
    the run is a failure (exit code 1) and keeps the error's type and first line."""
    error = RuntimeError("the upstream answered 503\nretry-after: 30")

    @job_metrics("flaky")
    async def flaky() -> None:
        await asyncio.sleep(0.2)
        raise error

    with pytest.raises(RuntimeError) as raised:
        asyncio.run(flaky())
    assert raised.value is error
    names = [frame.name for frame in traceback.extract_tb(raised.value.__traceback__)]
    assert names[-1] == "flaky"
    s = env.samples("flaky")
    assert s["jobreport_last_run_success"] == 0
    assert s['jobreport_last_outcome{outcome="failure"}'] == 1
    assert s["jobreport_last_exit_code"] == 1
    assert s["jobreport_last_duration_seconds"] >= 0.2
    [run] = runs(tmp_path, "flaky")
    assert run.result is not None
    assert run.result.error == "RuntimeError: the upstream answered 503"


def test_current_job_reaches_the_tasks_the_body_starts_and_awaits(env: Gateway) -> None:
    """Tasks created inside the body (gather, create_task) and coroutines it awaits see the
    run as current_job(); outside it there is none."""

    async def part(n: int) -> None:
        await asyncio.sleep(0.01)
        current_job().add_items(n)

    @job_metrics("parts")
    async def whole() -> None:
        await asyncio.gather(part(1), part(2))
        await asyncio.create_task(part(3))
        await part(4)

    async def main() -> None:
        await whole()
        with pytest.raises(JobReportError):
            current_job()

    asyncio.run(main())
    assert env.samples("parts")["jobreport_last_items"] == 10


def test_concurrent_tasks_of_one_function_are_separate_runs(
        env: Gateway, tmp_path: Path) -> None:
    """asyncio.gather of one decorated function: one run each, each with its own figures,
    the failing one a failure, the others successes; the counters add up."""

    @job_metrics("download")
    async def download(n: int) -> int:
        current_job().add_items(n)
        await asyncio.sleep(0.05 * n)
        current_job().set_size(n * 100)
        if n == 3:
            raise ConnectionError(f"file {n}: connection reset")
        return n

    async def main() -> list[int | BaseException]:
        return await asyncio.gather(*(download(n) for n in (1, 2, 3, 4)),
                                    return_exceptions=True)

    results = asyncio.run(main())
    assert results[:2] == [1, 2] and results[3] == 4
    assert isinstance(results[2], ConnectionError)
    found = runs(tmp_path, "download")
    assert sorted((r.result.items, r.result.size, r.outcome) for r in found
                  if r.result is not None) == [
        (1.0, 100.0, "success"), (2.0, 200.0, "success"), (3.0, 300.0, "failure"),
        (4.0, 400.0, "success")]
    [failed] = [r for r in found if r.outcome == "failure"]
    assert failed.result is not None
    assert failed.result.error == "ConnectionError: file 3: connection reset"
    s = env.samples("download")
    assert s['jobreport_runs_total{outcome="success"}'] == 3
    assert s['jobreport_runs_total{outcome="failure"}'] == 1
    assert s["jobreport_running"] == 0


def test_a_decorated_method_and_nested_runs(env: Gateway) -> None:
    """A decorated async method gets its instance; a run nested in another is the inner
    current_job() while it lasts, and the outer one again after it."""

    class Mirror:
        def __init__(self) -> None:
            self.copied = 0

        @job_metrics("mirror")
        async def copy(self, n: int) -> int:
            self.copied += n
            async with job_metrics("mirror-verify") as inner:
                assert current_job() is inner
                inner.add_items(1)
            current_job().add_items(n)
            return self.copied

    mirror = Mirror()
    assert asyncio.run(mirror.copy(5)) == 5
    assert env.samples("mirror")["jobreport_last_items"] == 5
    assert env.samples("mirror-verify")["jobreport_last_items"] == 1


def test_asyncio_run_twice_and_a_thread_pool(env: Gateway, tmp_path: Path) -> None:
    """Runs keep being reported across event loops (asyncio.run twice) and from a thread
    pool calling a decorated plain function from a coroutine (each call its own run)."""

    @job_metrics("twice")
    async def once() -> None:
        await asyncio.sleep(0)

    @job_metrics("pooled")
    def pooled(n: int) -> int:
        current_job().add_items(n)
        return n

    async def main() -> list[int]:
        await once()
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(4) as pool:
            return list(await asyncio.gather(
                *(loop.run_in_executor(pool, pooled, n) for n in range(1, 6)),
                asyncio.to_thread(pooled, 6)))

    assert asyncio.run(main()) == [1, 2, 3, 4, 5, 6]
    asyncio.run(once())
    assert env.samples("twice")['jobreport_runs_total{outcome="success"}'] == 2
    assert sorted(r.result.items for r in runs(tmp_path, "pooled")
                  if r.result is not None) == [1, 2, 3, 4, 5, 6]


# -- async with -----------------------------------------------------------------------------


def test_async_with_is_with(env: Gateway, tmp_path: Path) -> None:
    """`async with` reports the block as one run: figures, outcome, the exception goes on."""

    async def main() -> None:
        async with job_metrics("sync-db", expect_every="1h") as job:
            await asyncio.sleep(0.1)
            job.set_size(2048)
            assert current_job() is job
        assert job.outcome == "success" and job.exit_code == 0 and job.error is None
        with pytest.raises(KeyError):
            async with job_metrics("sync-db", expect_every="1h") as failed:
                raise KeyError("orders")
        assert failed.outcome == "failure" and failed.error == "KeyError: 'orders'"

    asyncio.run(main())
    s = env.samples("sync-db")
    assert s['jobreport_runs_total{outcome="success"}'] == 1
    assert s['jobreport_runs_total{outcome="failure"}'] == 1
    assert s["jobreport_expected_interval_seconds"] == 3960
    assert [r.outcome for r in runs(tmp_path, "sync-db")] == ["success", "failure"]


def test_one_job_metrics_object_entered_by_concurrent_blocks(
        env: Gateway, tmp_path: Path) -> None:
    """One job_metrics(...) object used by `async with` in concurrent tasks and by `with` in
    a thread pool: each block is its own run with its own figures (`as job` is its handle,
    and current_job() too)."""
    shared = job_metrics("shared")

    async def task(n: int) -> None:
        async with shared as job:
            assert current_job() is job
            job.add_items(n)
            await asyncio.sleep(0.05)
            assert current_job() is job

    def in_thread(n: int) -> None:
        with shared as job:
            job.add_items(n)
            time.sleep(0.05)
            assert current_job() is job

    async def main() -> None:
        await asyncio.gather(*(task(n) for n in (1, 2, 3)))
        with ThreadPoolExecutor(3) as pool:
            list(pool.map(in_thread, (10, 20, 30)))

    asyncio.run(main())
    assert sorted(r.result.items for r in runs(tmp_path, "shared") if r.result is not None) == [
        1, 2, 3, 10, 20, 30]
    with shared as again:  # free again: the object is its own handle
        pass
    assert again is shared and shared.outcome == "success"


@pytest.mark.parametrize(("exc", "outcome", "code"), [
    (SystemExit(0), "success", 0),
    (SystemExit(3), "failure", 3),
    (KeyboardInterrupt(), "interrupted", 130),
])
def test_system_exit_and_interrupt_in_a_coroutine(
        env: Gateway, tmp_path: Path, exc: BaseException, outcome: str, code: int) -> None:
    """The rules of `with` hold in a coroutine: SystemExit(0) a success, SystemExit(n) a
    failure with code n, KeyboardInterrupt interrupted (130); each goes on unchanged."""

    @job_metrics("exits")
    async def leave() -> None:
        await asyncio.sleep(0)
        raise exc

    with pytest.raises(type(exc)):
        asyncio.run(leave())
    [run] = runs(tmp_path, "exits")
    assert (run.outcome, run.exit_code) == (outcome, code)
    assert s_outcome(env, "exits") == outcome


def s_outcome(gateway: Gateway, job: str) -> str:
    [found] = [k for k, v in gateway.samples(job).items()
               if k.startswith("jobreport_last_outcome{") and v == 1]
    return found.split('"')[1]


# -- cancellation and timeouts --------------------------------------------------------------


def test_a_cancelled_task_is_an_interrupted_run(env: Gateway, tmp_path: Path) -> None:
    """task.cancel() on a decorated coroutine: CancelledError goes on to whoever awaits the
    task, and the run is recorded as interrupted (130), with the error kept."""
    started = asyncio.Event()

    @job_metrics("cancelled")
    async def endless() -> None:
        started.set()
        await asyncio.sleep(3600)

    async def main() -> None:
        task = asyncio.create_task(endless())
        await asyncio.wait_for(started.wait(), DEADLINE)
        task.cancel("shutting down")
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    [run] = runs(tmp_path, "cancelled")
    assert (run.outcome, run.exit_code) == ("interrupted", 130)
    assert run.result is not None
    assert run.result.error == "asyncio.exceptions.CancelledError: shutting down"
    assert s_outcome(env, "cancelled") == "interrupted"


@pytest.mark.parametrize("how", ["timeout", "wait_for", "timeout around async with"])
def test_a_timeout_interrupts_the_run_and_the_caller_sees_timeout_error(
        env: Gateway, tmp_path: Path, how: str) -> None:
    """asyncio.timeout() and wait_for() cancel the run's body: the run is interrupted (it
    did not end on its own), and the caller still gets its TimeoutError."""

    @job_metrics("slow")
    async def slow() -> None:
        await asyncio.sleep(3600)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            if how == "timeout":
                async with asyncio.timeout(0.2):
                    await slow()
            elif how == "wait_for":
                await asyncio.wait_for(slow(), 0.2)
            else:
                async with asyncio.timeout(0.2), job_metrics("slow"):
                    await asyncio.sleep(3600)

    if sys.version_info < (3, 11) and how != "wait_for":
        pytest.skip("asyncio.timeout() is Python 3.11+")
    asyncio.run(main())
    [run] = runs(tmp_path, "slow")
    assert (run.outcome, run.exit_code) == ("interrupted", 130)
    # (the timeout's clock starts before the body does: wait_for's timer runs while the task
    # is being scheduled, so the run may be a little shorter than the 0.2 s)
    assert run.duration is not None and 0.15 <= run.duration < DEADLINE


# -- the event loop never waits for jobreport -------------------------------------------------


@pytest.mark.integration
def test_the_loop_runs_on_while_an_end_waits_for_a_silent_gateway(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A gateway that accepts and never answers: while `async with`'s end waits for it (up to
    the budget), every other task keeps running; a plain `with` in a coroutine returns at
    once and its end is delivered off the loop. Nothing here is timed: the ticker's progress
    while the ends are in flight is the evidence."""
    with SilentServer() as silent:
        monkeypatch.setenv("JOBREPORT_GATEWAY", silent.url)
        monkeypatch.setenv("JOBREPORT_DB", f"sqlite:///{tmp_path / 'store.db'}")
        monkeypatch.setenv("JOBREPORT_BUDGET", "3s")
        monkeypatch.setenv("JOBREPORT_TIMEOUT", "3s")
        ticks: list[float] = []

        async def ticker(stop: asyncio.Event) -> None:
            while not stop.is_set():
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)

        async def main() -> tuple[int, int, int]:
            stop = asyncio.Event()
            tick = asyncio.create_task(ticker(stop))
            with job_metrics("plain-in-loop"):
                pass
            handed_off = ENDS.pending()  # the end is a thread's: this `with` did not wait
            before = len(ticks)
            async with job_metrics("awaited"):
                pass
            during = len(ticks) - before  # ticks while the end waited for the gateway
            stop.set()
            await tick
            return handed_off, during, len(silent.accepted)

        handed_off, during, connections = asyncio.run(main())
        assert handed_off >= 1
        assert connections >= 1  # the gateway was really asked, and never answered
        assert during >= 10, f"only {during} ticks while the end was delivered"
        assert ENDS.drain()
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    assert [r.outcome for r in store.history("plain-in-loop")] == ["success"]
    assert [r.outcome for r in store.history("awaited")] == ["success"]


def test_a_program_that_ends_right_after_its_run_still_reports_it(
        gateway: Gateway, tmp_path: Path) -> None:
    """A plain `with` in a coroutine hands its end to a thread; the program ends at once,
    and the process waits for that end at its exit: the gateway has the run."""
    program = tmp_path / "job.py"
    program.write_text(
        "import asyncio\n"
        "from jobreport import job_metrics\n"
        "async def main():\n"
        "    with job_metrics('quick-exit') as job:\n"
        "        job.add_items(7)\n"
        "asyncio.run(main())\n")
    env = own_dirs(PATH="/usr/bin:/bin", PYTHONPATH=str(ROOT), JOBREPORT_GATEWAY=gateway.url,
                   JOBREPORT_DB=f"sqlite:///{tmp_path}/s.db")
    proc = subprocess.run([sys.executable, str(program)], env=env, capture_output=True,
                          text=True, timeout=DEADLINE, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    s = gateway.samples("quick-exit")
    assert s["jobreport_last_items"] == 7 and s["jobreport_last_run_success"] == 1


def test_ends_of_one_group_are_recorded_in_the_order_they_happened(
        env: Gateway, tmp_path: Path) -> None:
    """Plain `with` blocks in a coroutine hand their ends to threads; the store still
    records them in the order the blocks ended, so the newest run is the last one."""

    async def main() -> None:
        for n in range(6):
            try:
                with job_metrics("ordered") as job:
                    job.add_items(n)
                    if n % 2:
                        raise ValueError(n)
            except ValueError:
                pass

    asyncio.run(main())
    assert [r.result.items for r in runs(tmp_path, "ordered") if r.result is not None] == [
        0, 1, 2, 3, 4, 5]
    assert s_outcome(env, "ordered") == "failure"  # the last one raised


def test_current_job_in_a_copied_context_and_another_thread() -> None:
    """Outside of any run, current_job() raises, in tasks and threads alike."""
    assert contextvars.copy_context().run(_no_current_job)
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(_no_current_job()))
    thread.start()
    thread.join(DEADLINE)
    assert result == [True]


def _no_current_job() -> bool:
    try:
        current_job()
    except JobReportError:
        return True
    return False
