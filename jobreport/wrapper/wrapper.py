"""The wrapper core of ``jobreport run``: run one command as one run of a job, report it, and
return the command's own exit code.

The child starts before anything heavy is loaded: the reporter opens the run in the store
and loads SQLAlchemy, requests and prometheus_client in a background thread while the child
runs. Whatever happens to the store or the gateway, the exit code is the child's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from jobreport import logger
from jobreport.config import Config
from jobreport.logger import log
from jobreport.outcomes import INTERRUPTED, SIGNAL
from jobreport.wrapper import child as process

TYPE_CHECKING = False  # not typing's: importing typing costs every `jobreport run`
if TYPE_CHECKING:
    from typing import Any

    from jobreport.protocols import RunReporter
    from jobreport.records import RunResult

__all__ = ["EXIT_SKIPPED", "RunRequest", "path_size", "run_job"]


#: Exit code of ``jobreport run --lock`` when another run of the group holds the lock and
#: the command was not started (EX_TEMPFAIL from sysexits.h: "try again later").
EXIT_SKIPPED = 75


@dataclass(frozen=True)
class RunRequest:
    """What ``jobreport run`` was asked to do (durations in seconds)."""

    argv: tuple[str, ...]
    job: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    expect_every: float | None = None
    max_runtime: float | None = None
    grace: float | None = None
    heartbeat: float | None = None
    timeout: float | None = None
    kill_after: float = process.DEFAULT_KILL_AFTER
    size_paths: tuple[str, ...] = ()
    lock: bool = False
    tail_lines: int = process.DEFAULT_TAIL_LINES
    # schedules (jobreport.schedule; checked, the deadlines are the reporter's business)
    schedule: str | None = None
    timezone: str | None = None
    min_runtime: float | None = None
    alert_after_failures: int | None = None

    @property
    def job_name(self) -> str:
        """``job``, by default the command's base name (``pg_dump`` for ``/usr/bin/pg_dump``)."""
        if self.job:
            return self.job
        return os.path.basename(self.argv[0].rstrip("/")) or self.argv[0]


def run_job(request: RunRequest, config: Config, reporter: RunReporter | None = None) -> int:
    """Run ``request.argv`` as one run of its job and return the exit code to exit with:
    the child's own (124 timeout, 126/127 not started, 128+N signal N), or
    ``EXIT_SKIPPED`` when ``--lock`` found another run in progress."""
    if not request.argv:
        raise ValueError("no command given")
    job = request.job_name
    lock = _take_lock(request, config, job)
    if lock is False:
        _report_skipped(reporter or _new_reporter(config), request, job)
        return EXIT_SKIPPED
    try:
        return _Wrapper(request, config, reporter, job).run()
    finally:
        if lock is not None and lock is not False:
            lock.release()


class _Wrapper:
    """One wrapped run: start, supervise, gather, finish."""

    def __init__(self, request: RunRequest, config: Config, reporter: RunReporter | None,
                 job: str) -> None:
        self.request = request
        self.config = config
        self._reporter = reporter
        self.job = job
        self.run_: Any = None
        self.stop_heartbeat = threading.Event()
        self.uid: str | None = None

    @property
    def reporter(self) -> RunReporter:
        # made once the command has started: its module is not worth delaying the start for
        if self._reporter is None:
            self._reporter = _new_reporter(self.config)
        return self._reporter

    def run(self) -> int:
        metrics_path = _new_metrics_file()
        env = dict(os.environ)
        env["JOBREPORT_JOB"] = self.job
        self.uid = env["JOBREPORT_RUN_ID"] = _run_token()
        if metrics_path is not None:
            env["JOBREPORT_METRICS_FILE"] = metrics_path
        else:
            env.pop("JOBREPORT_METRICS_FILE", None)
        with _deferred_signals() as early:
            if early:
                # told to stop before the command started: do not start it
                sig = early[0]
                outcome = INTERRUPTED if sig == signal.SIGINT else SIGNAL
                self._start()
                from jobreport.records import RunResult

                self._finish_quietly(RunResult(ended=time.time(), duration=0.0,
                                               outcome=outcome, exit_code=128 + sig))
                return 128 + sig
            try:
                result = process.run(
                    self.request.argv, env=env, timeout=self.request.timeout,
                    kill_after=self.request.kill_after, tail_lines=self.request.tail_lines,
                    on_started=self._on_started, subreaper=True,
                )
            finally:
                self.stop_heartbeat.set()
            if result.error:
                log.error("jobreport: %s", result.error)
            self._report(result, metrics_path)
        return result.exit_code

    def _on_started(self, _pid: int) -> None:
        self._start()
        if self.request.heartbeat and self.run_ is not None:
            threading.Thread(target=self._heartbeat_loop, args=(self.run_,),
                             name="jobreport-heartbeat", daemon=True).start()

    def _start(self) -> None:
        if self.run_ is not None:
            return
        try:
            self.run_ = self.reporter.start(
                self.job, labels=self.request.labels, expect_every=self.request.expect_every,
                max_runtime=self.request.max_runtime, grace=self.request.grace,
                command=_command_text(self.request.argv), wait=0.0, uid=self.uid,
                schedule=self.request.schedule, timezone=self.request.timezone,
                min_runtime=self.request.min_runtime,
                alert_after_failures=self.request.alert_after_failures,
            )
        except Exception as e:  # reporting must never stop the job
            log.warning("jobreport: the start of job %s was not reported: %s", self.job, e)

    def _heartbeat_loop(self, run: Any) -> None:
        interval = self.request.heartbeat or 60.0
        while not self.stop_heartbeat.wait(interval):
            try:
                self.reporter.heartbeat(run)
            except Exception as e:
                log.warning("jobreport: heartbeat of job %s failed: %s", self.job, e)

    def _report(self, result: process.ProcessResult, metrics_path: str | None) -> None:
        try:
            from jobreport.records import RunResult  # only needed once the command is over
            from jobreport.wrapper import metricsfile

            parsed = metricsfile.ParsedMetrics()
            if metrics_path is not None:
                parsed = metricsfile.read_file(metrics_path, self.config.namespace)
                for problem in parsed.problems:
                    log.warning("jobreport: metrics file, %s (skipped)", problem)
            # --size-path, when given, is what the user asked to be measured
            size = path_size(self.request.size_paths) if self.request.size_paths else None
            self._start()
            self._finish_quietly(RunResult(
                ended=result.ended_at, duration=result.duration, outcome=result.outcome,
                exit_code=result.exit_code,
                size=size if size is not None else parsed.size, items=parsed.items,
                cpu_seconds=result.cpu_seconds, max_rss_bytes=result.max_rss_bytes,
                tail=result.tail, custom=tuple(parsed.families),
            ))
        finally:
            if metrics_path is not None:
                _unlink(metrics_path)

    def _finish_quietly(self, result: RunResult) -> None:
        if self.run_ is None:
            return
        try:
            self.reporter.finish(self.run_, result)
        except Exception as e:  # the exit code is the child's, whatever happens here
            log.warning("jobreport: the end of job %s was not reported: %s", self.job, e)


def _new_reporter(config: Config) -> RunReporter:
    logger.load()  # before the reporter's modules, which log through logging directly
    from jobreport.reporter import Reporter

    return Reporter(config)


def path_size(paths: tuple[str, ...] | list[str]) -> float | None:
    """Bytes in ``paths`` (files, or directory trees; symlinks are not followed). A path
    that does not exist is warned about and left out; None when none exists."""
    total = 0
    found = False
    for path in paths:
        try:
            total += _tree_size(path)
            found = True
        except FileNotFoundError:
            log.warning("jobreport: --size-path %s does not exist; not counted", path)
        except OSError as e:
            log.warning("jobreport: --size-path %s: %s; not counted", path, e.strerror)
    return float(total) if found else None


def _tree_size(path: str) -> int:
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path):
        return st.st_size
    total = 0
    for root, _dirs, files in os.walk(path, onerror=None):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # removed while we walk
    return total


def _take_lock(request: RunRequest, config: Config, job: str) -> Any:
    """The held lock, None when no lock is wanted or possible, False when it is busy."""
    if not request.lock:
        return None
    from jobreport.wrapper.lock import JobLock, LockBusy, lock_path

    lock = JobLock(lock_path(config.grouping(job, request.labels)))
    try:
        lock.acquire()
    except LockBusy as e:
        log.warning("jobreport: job %s is already running (%s); not starting it (--lock)",
                    job, e)
        return False
    except OSError as e:
        log.warning("jobreport: cannot lock %s (%s); running without --lock", lock.path, e)
        return None
    return lock


def _report_skipped(reporter: RunReporter, request: RunRequest, job: str) -> None:
    try:
        reporter.record_skipped(job, labels=request.labels,
                                command=_command_text(request.argv))
    except Exception as e:
        log.warning("jobreport: the skipped run of job %s was not reported: %s", job, e)


@contextmanager
def _deferred_signals() -> Iterator[list[int]]:
    """Record SIGTERM/SIGHUP/SIGINT instead of dying from them while the run is reported;
    the list holds what arrived. (While the child runs, process.run forwards them.)"""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def record(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in process.FORWARDED_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _new_metrics_file() -> str | None:
    """An empty owner-only file the child may write metrics to (None when none can be made)."""
    directory = os.environ.get("TMPDIR") or "/tmp"  # noqa: S108 - O_EXCL, mode 0600
    for _ in range(5):
        path = os.path.join(directory, f"jobreport-metrics-{os.getpid()}-{os.urandom(6).hex()}")
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            continue
        except OSError as e:
            log.warning("jobreport: cannot create the metrics file in %s: %s", directory,
                        e.strerror)
            return None
        os.close(fd)
        return path
    return None


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _run_token() -> str:
    return os.urandom(8).hex()


def _command_text(argv: tuple[str, ...]) -> str:
    import shlex  # only needed once the command has started

    return shlex.join(argv)
