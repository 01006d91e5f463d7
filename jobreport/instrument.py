"""``job_metrics``: report a block of Python code, or a function, as one run of a job."""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from jobreport.config import Config, load_config
from jobreport.errors import ConfigError, InvalidNameError, JobReportError
from jobreport.heartbeat import STOP_GRACE, Heartbeat
from jobreport.logger import unexpected as _unexpected
from jobreport.names import DEFAULT_NAMESPACE, check_job, check_labels, check_metric_name
from jobreport.outcomes import from_exception
from jobreport.result import CustomFamily, RunResult
from jobreport.runs import Recorder, Run
from jobreport.spec import JobSpec, SpecError

if TYPE_CHECKING:
    from prometheus_client.registry import Collector
    from typing_extensions import Unpack

    from jobreport.spec import SpecKeywords

__all__ = ["JobMetrics", "current_job", "job_metrics"]

log = logging.getLogger("jobreport")
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


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
        #: How the run ended (after the block): an outcome name and an exit code.
        self.outcome: str | None = None
        self.exit_code: int | None = None

    @property
    def run_id(self) -> int | None:
        """The store's id of this run (None before the start is recorded or without a store)."""
        return self._run.id if self._run is not None else None

    # --- what the body reports ----------------------------------------------------------

    def set_size(self, size_bytes: float) -> None:
        """Bytes the run produced (``jobreport_last_size_bytes``); a later call replaces it."""
        self.size = _number("size", size_bytes)

    def add_items(self, n: float = 1) -> None:
        """Add ``n`` to the items the run processed (``jobreport_last_items``)."""
        self.items = (self.items or 0.0) + _number("items", n)

    def gauge(self, name: str, value: float, help: str = "") -> None:
        """Push a gauge of your own named ``name`` (not in jobreport's namespace) at the end."""
        namespace = self._config.namespace if self._config else DEFAULT_NAMESPACE
        check_metric_name(name, namespace)
        self._gauges[name] = CustomFamily.gauge(name, _number(name, value), help)

    def register(self, collector: Collector) -> Collector:
        """Add any prometheus_client metric (or collector) to the end push; returns it."""
        self._collectors.append(collector)
        return collector

    # --- context manager ----------------------------------------------------------------

    def __enter__(self) -> JobMetrics:
        self._reset()
        self._token = _current.set(self)
        self._wrapper_file = _wrapper_metrics_file(self.job)
        if self._wrapper_file is not None:
            return self  # `jobreport run` reports this run; we only add our figures to it
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
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        self.outcome, self.exit_code = from_exception(exc)
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        if self._wrapper_file is not None:
            self._hand_to_wrapper(self._wrapper_file)
            return False
        if self._run is None or self._reporter is None:
            return False
        try:
            if self._heartbeat is not None:
                # joined before the end is recorded: no heartbeat follows the end push
                self._heartbeat.stop(timeout=self._reporter.config.budget + STOP_GRACE)
            self._reporter.finish(self._run, RunResult.measured(
                self._run.monotonic_start, outcome=self.outcome, exit_code=self.exit_code,
                size=self.size, items=self.items,
                custom=(*self._gauges.values(), *self._custom_families()),
            ))
        except Exception:
            _unexpected("the end of job %s was not reported", self.job)
        return False  # the body's exception, if any, goes on unchanged

    def _hand_to_wrapper(self, path: str) -> None:
        """Append this block's figures to the wrapping ``jobreport run``'s metrics file."""
        from jobreport.exposition import families_text

        families = [*self._gauges.values(), *self._custom_families()]
        if self.size is not None:
            families.append(CustomFamily.gauge(f"{DEFAULT_NAMESPACE}_last_size_bytes",
                                               self.size))
        if self.items is not None:
            families.append(CustomFamily.gauge(f"{DEFAULT_NAMESPACE}_last_items", self.items))
        try:
            with open(path, "ab") as f:
                f.write(families_text(families))
        except OSError as e:
            log.warning("jobreport: cannot add figures to %s: %s", path, e.strerror)

    def _custom_families(self) -> list[CustomFamily]:
        namespace = self._config.namespace if self._config else DEFAULT_NAMESPACE
        out = []
        for collector in self._collectors:
            try:
                metrics = list(collector.collect())
            except Exception as e:  # a broken collector costs its own families, not the run
                log.warning("jobreport: a collector given to register() failed (%s: %s); "
                            "its metrics are left out", type(e).__name__, e)
                continue
            for metric in metrics:
                try:
                    check_metric_name(metric.name, namespace)
                except InvalidNameError as e:
                    log.warning("jobreport: not pushing %s", e)
                    continue
                out.append(CustomFamily(
                    name=metric.name, help=metric.documentation, type=metric.type,
                    samples=tuple(
                        (s.name, tuple(sorted(s.labels.items())), float(s.value))
                        for s in metric.samples
                    ),
                ))
        return out

    # --- decorator ----------------------------------------------------------------------

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Report every call of ``func`` as one run, each with its own fresh state."""

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with self._fresh():
                return func(*args, **kwargs)

        return wrapper

    def _fresh(self) -> JobMetrics:
        fresh = JobMetrics.__new__(JobMetrics)
        fresh.__dict__.update({k: v for k, v in self.__dict__.items()
                               if k in _SETTINGS})
        fresh._reset()
        return fresh


_current: ContextVar[JobMetrics | None] = ContextVar("jobreport_current_job", default=None)


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


def _wrapper_metrics_file(job: str) -> str | None:
    """The metrics file of a ``jobreport run --job <job>`` that started this process, if any.

    A script that reports itself with ``job_metrics`` and is also wrapped by ``jobreport
    run`` for the same job (for ``--timeout``, ``--lock``, resources) must not record two
    runs: its block then adds its figures to the wrapper's run instead.
    """
    if os.environ.get("JOBREPORT_JOB") != job:
        return None
    return os.environ.get("JOBREPORT_METRICS_FILE") or None


_SETTINGS = frozenset({"job", "spec", "_config", "_gateway"})


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidNameError("value of", name, f"{value!r} is not a number")
    number = float(value)
    if math.isnan(number) and name in ("size", "items"):
        raise InvalidNameError("value of", name, "must not be NaN")
    return number


#: ``job_metrics(...)`` is how the API is written: the class is its own factory.
job_metrics = JobMetrics
