"""``JobMetrics``: one run of a job around a block of Python code (``with``, ``async with``)
or a call of a decorated function, and the handle the body reports its figures through.

Every form goes through the same steps: ``_begin`` (open the run: the start is pushed by a
thread, nothing here waits), ``_end`` / ``_end_async`` (decide the outcome and the error
now, then close the run in the store and deliver it: in this thread, or off it when an
event loop runs here -- ``jobreport.runs.background``). ``current_job()`` reads a context
variable, so it follows the run into the tasks the body starts and never leaks into a
generator's consumer.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from jobreport.config import Config, load_config
from jobreport.errors import ConfigError, JobReportError
from jobreport.heartbeat import STOP_GRACE, Heartbeat
from jobreport.instrument.decorate import decorate
from jobreport.instrument.failure import error_text
from jobreport.instrument.figures import (
    collected_families,
    hand_to_wrapper,
    number,
    wrapper_metrics_file,
)
from jobreport.logger import unexpected as _unexpected
from jobreport.names import DEFAULT_NAMESPACE, check_job, check_labels, check_metric_name
from jobreport.outcomes import SUCCESS, from_exception
from jobreport.result import CustomFamily, RunResult
from jobreport.runs import Recorder, Run
from jobreport.runs.background import DRAIN_MARGIN, ENDS
from jobreport.secrets import config_secrets
from jobreport.spec import JobSpec, SpecError

if TYPE_CHECKING:
    from prometheus_client.registry import Collector
    from typing_extensions import Unpack

    from jobreport.spec import SpecKeywords

__all__ = ["JobMetrics", "current_job", "job_metrics"]

P = ParamSpec("P")
R = TypeVar("R")


class JobMetrics:
    """Report one run of ``job`` to the Pushgateway: a context manager, a decorator, and the
    handle inside the block. Made with ``job_metrics(...)``.

    ``with job_metrics("backup", expect_every="24h") as job: ...`` or, as a decorator,
    ``@job_metrics("nightly")``. The keywords other than ``config`` and ``gateway`` make the
    job's spec: ``labels`` (extra grouping labels) and the fields of
    ``jobreport.spec.FIELDS`` that are keywords (thresholds pushed for the generic alerts,
    a schedule and its zone, a heartbeat pushed that often while the body runs), each held
    to its range (docs/python-api.md). What they leave out comes from the job's section of
    the config file (or ``config``).

    Names and arguments are checked here and raise ``InvalidNameError`` / ``ConfigError``
    (a value out of its range, or two that contradict each other) before the body runs;
    nothing that happens to the store or the gateway ever reaches the body or its caller.
    """

    def __init__(self, job: str, *, config: Config | None = None, gateway: str | None = None,
                 **spec: Unpack[SpecKeywords]) -> None:
        self.job = check_job(job)
        values: dict[str, Any] = dict(spec)
        labels = check_labels(values.pop("labels", None))
        try:
            self.spec = JobSpec.checked(self.job, values, labels=labels)
        except SpecError as e:
            raise ConfigError(e.name, "argument", e.problem) from None
        except TypeError as e:  # a keyword no field has: as a function would say it
            raise TypeError(f"job_metrics() got an {e}") from None
        self._config = config
        self._gateway = gateway
        self._busy = False
        self._reset()

    def _reset(self) -> None:
        self.size: float | None = None
        self.items: float | None = None
        self._gauges: dict[str, CustomFamily] = {}
        self._collectors: list[Collector] = []
        self._run: Run | None = None
        self._reporter: Recorder | None = None
        self._wrapper_file: str | None = None
        self._token: Token[JobMetrics | None] | None = None
        self._heartbeat: Heartbeat | None = None
        self._concluded = False
        #: How the run ended (after the block): an outcome name and an exit code.
        self.outcome: str | None = None
        self.exit_code: int | None = None
        #: The error kept with an unsuccessful run: ``"ValueError: boom"`` (type and first
        #: line of the message, secrets masked, bounded); None after a success.
        self.error: str | None = None

    @property
    def run_id(self) -> int | None:
        """The store's id of this run (None before the start is recorded or without a store)."""
        return self._run.id if self._run is not None else None

    # --- what the body reports ----------------------------------------------------------

    def set_size(self, size_bytes: float) -> None:
        """Bytes the run produced (``jobreport_last_size_bytes``); a later call replaces it."""
        self.size = number("size", size_bytes)

    def add_items(self, n: float = 1) -> None:
        """Add ``n`` to the items the run processed (``jobreport_last_items``); a negative
        ``n`` corrects an earlier count, but the total stays from 0 to 2^63."""
        self.items = number("items", (self.items or 0.0) + number("items increment", n))

    def gauge(self, name: str, value: float, help: str = "") -> None:
        """Push a gauge of your own named ``name`` (not in jobreport's namespace) at the end."""
        namespace = self._config.namespace if self._config else DEFAULT_NAMESPACE
        check_metric_name(name, namespace)
        self._gauges[name] = CustomFamily.gauge(name, number(name, value), help)

    def register(self, collector: Collector) -> Collector:
        """Add any prometheus_client metric (or collector) to the end push; returns it."""
        self._collectors.append(collector)
        return collector

    # --- the run's life: every form goes through these ----------------------------------

    def _begin(self) -> None:
        """Open the run. Quick in any thread, an event loop's too: the store and the start
        push are a thread's work (``Recorder.start`` with ``wait=0``)."""
        self._reset()
        self._wrapper_file = wrapper_metrics_file(self.job)
        if self._wrapper_file is not None:
            return  # `jobreport run` reports this run; we only add our figures to it
        try:
            config = self._config or load_config(strict=False, gateway=self._gateway)
            self._config = config
            self._reporter = Recorder(config)
            self._run = self._reporter.start(self.spec, wait=0.0)
            if self.spec.heartbeat:
                reporter, run = self._reporter, self._run
                self._heartbeat = Heartbeat(lambda: reporter.heartbeat(run),
                                            self.spec.heartbeat, self.job).start()
        except Exception:  # reporting must never stop the job from running
            _unexpected("cannot report job %s", self.job)
            self._run = None

    def _activate(self) -> Token[JobMetrics | None]:
        """Make this run ``current_job()`` in the running context."""
        return _current.set(self)

    @staticmethod
    def _deactivate(token: Token[JobMetrics | None]) -> None:
        _current.reset(token)

    def _conclude(self, exc: BaseException | None) -> Callable[[], None] | None:
        """Decide how the run ended (``outcome``, ``exit_code``, ``error``) and measure it,
        now; returns the rest of its end (close it in the store, deliver it), which may
        take up to the budget, for the caller to run here or hand to a thread. None when
        nothing is left to do."""
        if self._concluded:
            return None  # ended already (a generator still suspended at exit, later closed)
        self._concluded = True
        self.outcome, self.exit_code = from_exception(exc)
        if exc is not None and self.outcome != SUCCESS:
            secrets = config_secrets(self._config) if self._config is not None else ()
            self.error = error_text(exc, secrets)
        if self._wrapper_file is not None:
            self._hand_to_wrapper(self._wrapper_file)
            return None
        run, reporter, heartbeat = self._run, self._reporter, self._heartbeat
        if run is None or reporter is None:
            return None
        try:
            run.stop()  # no start push begins from now on
            if heartbeat is not None:
                heartbeat.stop(timeout=0)  # no heartbeat begins either
            result = RunResult.measured(
                run.monotonic_start, outcome=self.outcome, exit_code=self.exit_code,
                size=self.size, items=self.items, error=self.error,
                custom=(*self._gauges.values(), *self._custom_families()),
            )
            turn = ENDS.turn(run.key)  # the group's ends are recorded in this order
        except Exception:
            _unexpected("the end of job %s was not reported", self.job)
            return None
        job, budget = self.job, reporter.config.budget

        def rest() -> None:
            try:
                if heartbeat is not None:
                    # joined before the end is recorded: no heartbeat follows the end push
                    heartbeat.stop(timeout=budget + STOP_GRACE)
                reporter.finish(run, result, turn=turn)
            except Exception:
                _unexpected("the end of job %s was not reported", job)
            finally:
                turn.done()  # (finish says so too; a second time is harmless)

        return rest

    def _within(self) -> float:
        """How long the program waits at its exit for this run's end, at most."""
        config = self._reporter.config if self._reporter is not None else None
        if config is None:
            return DRAIN_MARGIN
        return config.start_budget + config.budget + DRAIN_MARGIN

    def _end(self, exc: BaseException | None) -> None:
        """End the run from synchronous code: here, or off this thread when an event loop
        runs in it (the loop must not wait for a store or a gateway); then the program
        waits for it at its exit."""
        rest = self._conclude(exc)
        if rest is None:
            return
        if _loop_running():
            ENDS.submit(rest, within=self._within())
        else:
            rest()

    async def _end_async(self, exc: BaseException | None) -> None:
        """End the run from a coroutine: off the loop, always. A run that ended normally or
        with an exception is awaited (its end is recorded and delivered when this returns,
        as with ``with``); a cancelled or interrupted one is not, so that the cancellation
        goes on at once (the program waits for its end at exit)."""
        rest = self._conclude(exc)
        if rest is None:
            return
        future = ENDS.submit(rest, within=self._within())
        # another event loop than asyncio's (trio) cannot await the thread's future: there
        # the end is only handed over, as for a plain `with` in a loop
        if (exc is None or isinstance(exc, Exception)) and _loop_running():
            import asyncio

            await asyncio.shield(asyncio.wrap_future(future))

    # --- context manager: with and async with ---------------------------------------------
    # One job_metrics(...) object may be entered by several blocks at once (tasks of a
    # gather, threads of a pool): the first gets the object itself, each other one a fresh
    # handle of the same settings (``as job`` gives it), and every exit ends the handle its
    # own context entered.

    def __enter__(self) -> JobMetrics:
        handle = self._claim()
        handle._begin()
        handle._token = handle._activate()
        _blocks.set((*_blocks.get(), (self, handle)))
        return handle

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        handle = self._release()
        handle._leave()
        handle._end(exc)
        return False  # the body's exception, if any, goes on unchanged

    async def __aenter__(self) -> JobMetrics:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        handle = self._release()
        handle._leave()
        await handle._end_async(exc)
        return False  # the body's exception, if any, goes on unchanged

    def _claim(self) -> JobMetrics:
        with _claims:
            if self._busy:
                return self._fresh()
            self._busy = True
            return self

    def _release(self) -> JobMetrics:
        """The handle this context's block of ``self`` entered with (the innermost)."""
        blocks = _blocks.get()
        for i in range(len(blocks) - 1, -1, -1):
            owner, handle = blocks[i]
            if owner is self:
                _blocks.set(blocks[:i] + blocks[i + 1:])
                break
        else:
            handle = self  # an exit without its enter here (a misuse): end what self holds
        if handle is self:
            with _claims:
                self._busy = False
        return handle

    def _leave(self) -> None:
        if self._token is not None:
            token, self._token = self._token, None
            # left in another context than entered (a misuse): forget it
            with contextlib.suppress(ValueError):
                self._deactivate(token)

    def _hand_to_wrapper(self, path: str) -> None:
        """Append this block's figures to the wrapping ``jobreport run``'s metrics file."""
        # what the output is held to (min_size=...): the wrapper's flags still win
        held = [CustomFamily.gauge(f"{DEFAULT_NAMESPACE}_{metric}", value)
                for metric, value in self.spec.output_gauges()]
        hand_to_wrapper(path, [*self._gauges.values(), *self._custom_families(), *held],
                        size=self.size, items=self.items)

    def _custom_families(self) -> list[CustomFamily]:
        namespace = self._config.namespace if self._config else DEFAULT_NAMESPACE
        return collected_families(self._collectors, namespace)

    # --- decorator ----------------------------------------------------------------------

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Report every call of ``func`` as one run, each with its own fresh state.

        A coroutine function's run covers the awaited body; a generator's or an async
        generator's covers its iteration (docs/python-api.md says what a generator closed
        early, or never iterated, records). The signature is kept, for mypy too."""
        return decorate(func, self._fresh)

    def _fresh(self) -> JobMetrics:
        fresh = JobMetrics.__new__(JobMetrics)
        fresh.__dict__.update({k: v for k, v in self.__dict__.items()
                               if k in _SETTINGS})
        fresh._busy = False
        fresh._reset()
        return fresh


_current: ContextVar[JobMetrics | None] = ContextVar("jobreport_current_job", default=None)
#: The blocks entered in this context and not left yet: (the object entered, its handle).
_blocks: ContextVar[tuple[tuple[JobMetrics, JobMetrics], ...]] = ContextVar(
    "jobreport_blocks", default=())
_claims = threading.Lock()


def current_job() -> JobMetrics:
    """The handle of the innermost ``job_metrics`` block or decorated call running now.

    For the decorator form, where the function has no ``as job``::

        @job_metrics("train")
        def train():
            current_job().gauge("train_accuracy", 0.93)

    Raises ``JobReportError`` outside of one.
    """
    job = _current.get()
    if job is None:
        raise JobReportError("current_job() is only available inside a job_metrics block "
                             "or a function decorated with @job_metrics")
    return job


_SETTINGS = frozenset({"job", "spec", "_config", "_gateway"})


def _loop_running() -> bool:
    """Whether an asyncio event loop runs in this thread (without loading asyncio: no loop
    runs where it was never imported)."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and asyncio._get_running_loop() is not None


#: ``job_metrics(...)`` is how the API is written: the class is its own factory.
job_metrics = JobMetrics
