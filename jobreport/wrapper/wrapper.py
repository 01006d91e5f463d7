"""The wrapper core of ``jobreport run``: run one command as one run of a job, report it, and
return the command's own exit code.

The child starts before anything heavy is loaded: the run's recorder (``jobreport.runs``)
opens the run in the store and loads what reporting needs in a background thread while the
child runs. Whatever happens to the store or the gateway, the exit code is the child's.
What the run is held to and limited by is its ``JobSpec``, made by the command line and
carried whole.
"""

from __future__ import annotations

import gc
import os
import signal
import stat
import time

from jobreport import logger
from jobreport.liveness import process_start
from jobreport.logger import log
from jobreport.marker import RunMarker, new_marker
from jobreport.outcomes import INTERRUPTED, SIGNAL
from jobreport.wrapper import child as process
from jobreport.wrapper import streams

# not typing's: this module is on the path of `jobreport run` before its command starts
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, Literal, ParamSpec

    from jobreport.config import Config
    from jobreport.heartbeat import Heartbeat
    from jobreport.protocols import RunReporter
    from jobreport.result import CustomFamily, RunResult
    from jobreport.spec import JobSpec
    from jobreport.wrapper.exit_status import ProcessResult
    from jobreport.wrapper.lock import JobLock

    P = ParamSpec("P")

__all__ = ["EXIT_SKIPPED", "SECRET_VARIABLES", "child_environment", "mask_secrets", "run_job"]

#: jobreport's secrets: never passed on to the command. (Their ``*_FILE`` variants name a
#: file, not a secret, and stay, so that a nested jobreport can still authenticate.)
SECRET_VARIABLES = frozenset({"JOBREPORT_PASSWORD", "JOBREPORT_TOKEN"})


#: Exit code of ``jobreport run --lock`` when another run of the group holds the lock and
#: the command was not started (EX_TEMPFAIL from sysexits.h: "try again later").
EXIT_SKIPPED = 75


def run_job(argv: Sequence[str], spec: JobSpec, config: Config | Callable[[], Config],
            reporter: RunReporter | None = None) -> int:
    """Run ``argv`` as one run held to ``spec`` and return the exit code to exit with: the
    child's own (124 timeout, 126/127 not started, 128+N signal N), or ``EXIT_SKIPPED``
    when ``spec.lock`` found another run in progress.

    ``config`` may be a function that resolves the settings: it is then called once the
    command runs (``jobreport run`` does so: the settings and what they import are not worth
    delaying the command for), or before, when ``--lock`` needs the group."""
    argv = tuple(argv)
    if not argv:
        raise ValueError("no command given")
    streams.plug_closed_streams()
    settings = _Settings(config)
    lock: JobLock | Literal[False] | None = None
    if spec.lock:
        from jobreport.wrapper.lock import take_lock

        lock = take_lock(spec, settings.get())
    if lock is False:
        _report_skipped(reporter or _new_reporter(settings.get()), argv, spec,
                        settings.get())
        return EXIT_SKIPPED
    try:
        return _Wrapper(argv, spec, settings, reporter, lock).run()
    finally:
        if lock is not None:
            lock.release()


def _loading(method: Callable[P, None]) -> Callable[P, None]:
    """``method`` loads what the run needs (the settings, the store, the sinks, requests):
    it runs without cyclic garbage collection, and what it loaded then joins the oldest
    generation (``gc.freeze()`` and ``unfreeze()``). Those objects live as long as the
    process: collecting while they load walked them over and over (6 ms of a short run)."""
    def loading(*args: P.args, **kwargs: P.kwargs) -> None:
        collecting = gc.isenabled()
        gc.disable()
        try:
            method(*args, **kwargs)
        finally:
            if collecting:
                gc.freeze()
                gc.unfreeze()
                gc.enable()

    return loading


class _Settings:
    """The run's ``Config``, resolved on first use."""

    def __init__(self, config: Config | Callable[[], Config]) -> None:
        self._source = config
        self._config: Config | None = None if callable(config) else config

    @property
    def resolved(self) -> bool:
        return self._config is not None

    def get(self) -> Config:
        if self._config is None:
            source = self._source
            assert callable(source)
            try:
                self._config = source()
            except Exception as e:  # the command runs already: it must not pay for this
                from jobreport.config import Config, default_db_url

                log.warning("jobreport: the settings could not be loaded (%s); using the "
                            "defaults", e)
                self._config = Config(db=default_db_url())
        return self._config


class _Wrapper:
    """One wrapped run: start, supervise, gather, finish."""

    def __init__(self, argv: tuple[str, ...], spec: JobSpec, settings: _Settings,
                 reporter: RunReporter | None, lock: JobLock | None) -> None:
        self.argv = argv
        self.spec = spec
        self.settings = settings
        self._reporter = reporter
        self.job = spec.job
        self.lock = lock
        self.run_: Any = None
        self.heartbeat: Heartbeat | None = None
        self.uid = os.urandom(8).hex()  # the run's id, before the store gives it one
        self.marker: RunMarker | None = None
        self.child_start: float | None = None
        self._command: str | None = None

    @property
    def config(self) -> Config:
        return self.settings.get()

    @property
    def command(self) -> str:
        """The command line as the marker and the store keep it (made once the settings
        are resolved: their secrets masked)."""
        if self._command is None:
            self._command = _command_text(self.argv, self.config)
        return self._command

    @property
    def reporter(self) -> RunReporter:
        # made once the command has started: its module is not worth delaying the start for
        if self._reporter is None:
            self._reporter = _new_reporter(self.config)
        return self._reporter

    def run(self) -> int:
        metrics_path = _new_metrics_file()
        env = child_environment(os.environ, self.job, self.uid, metrics_path)
        received: list[int] = []
        with process.signals_handled(lambda signum, _frame: received.append(signum)):
            if received:
                # told to stop before the command started: do not start it
                sig = received[0]
                outcome = INTERRUPTED if sig == signal.SIGINT else SIGNAL
                self._start()
                from jobreport.result import RunResult

                self._finish_quietly(RunResult(ended=time.time(), duration=0.0,
                                               outcome=outcome, exit_code=128 + sig))
                return 128 + sig
            # durable before the command starts: a wrapper killed from here on leaves a
            # trace that the next run of the group records as abandoned
            self.marker = new_marker(self.uid, self.job, self._grouping(), self.spec.labels)
            if not self.marker.write():
                self.marker = None
            if self.lock is not None:
                self.lock.share_with_child(True)
            try:
                result = process.run(
                    self.argv, env=env, timeout=self.spec.timeout,
                    kill_after=self.spec.kill_after, tail_lines=self.spec.tail_lines,
                    on_spawned=self._on_spawned, on_started=self._on_started, subreaper=True,
                )
            finally:
                if self.lock is not None:
                    self.lock.share_with_child(False)
                if self.heartbeat is not None:
                    from jobreport.heartbeat import STOP_GRACE

                    # joined before the end is recorded: no heartbeat follows the end push
                    self.heartbeat.stop(timeout=self.config.budget + STOP_GRACE)
            if result.error:
                log.error("jobreport: %s", result.error)
            else:
                from jobreport.wrapper.exit_status import say_outcome

                say_outcome(self.job, result, self.spec.timeout)
            self._report(result, metrics_path)
            if self.marker is not None:
                self.marker.remove()
        return result.exit_code

    def _on_spawned(self, pid: int) -> None:
        # the command's pid in the marker at once: a run is not abandoned while its command
        # lives, also when the wrapper is killed a moment after the start
        self.child_start = process_start(pid)
        if self.marker is not None:
            self.marker = self.marker.with_child(pid, self.child_start, None)
            self.marker.write()

    @_loading
    def _on_started(self, pid: int) -> None:
        child_start = self.child_start
        if self.lock is not None:
            self.lock.share_with_child(False)  # later helpers of ours must not hold it
            self.lock.note_holder(pid)
        if self.marker is not None:
            # its command line and, once the settings are resolved, its group
            self.marker = self.marker.with_child(
                pid, child_start, self.command,
                self.config.grouping(self.job, self.spec.labels))
            self.marker.write()
        self._start(child=(pid, child_start))
        if self.spec.heartbeat and self.run_ is not None:
            from jobreport.heartbeat import Heartbeat

            reporter, run = self.reporter, self.run_
            self.heartbeat = Heartbeat(lambda: reporter.heartbeat(run), self.spec.heartbeat,
                                       self.job).start()

    def _grouping(self) -> dict[str, str] | None:
        """The run's grouping key if the settings are resolved already (the marker written
        before the command starts does not wait for them: it records the run's labels)."""
        if not self.settings.resolved:
            return None
        return self.config.grouping(self.job, self.spec.labels)

    def _start(self, child: tuple[int | None, float | None] = (None, None)) -> None:
        if self.run_ is not None:
            return
        try:
            self.run_ = self.reporter.start(
                self.spec, command=self.command, wait=0.0, uid=self.uid,
                child_pid=child[0], child_pid_start=child[1],
                exclusive=self.lock is not None and self.lock.fleet is not None)
        except Exception as e:  # reporting must never stop the job
            log.warning("jobreport: the start of job %s was not reported: %s", self.job, e)

    @_loading
    def _report(self, result: ProcessResult, metrics_path: str | None) -> None:
        try:
            from jobreport.result import RunResult  # only needed once the command is over

            written: dict[str, Any] = {}  # the thresholds the command wrote
            size_written = items = None
            custom: tuple[CustomFamily, ...] = ()
            if metrics_path is not None and _written(metrics_path):
                from jobreport.wrapper import metricsfile

                parsed = metricsfile.read_file(metrics_path, self.config.namespace)
                for problem in parsed.problems:
                    log.warning("jobreport: metrics file, %s (skipped)", problem)
                written, size_written, items = parsed.spec, parsed.size, parsed.items
                custom = tuple(parsed.families)
            # --size-path, when given, is what the user asked to be measured
            size, updated = None, None
            if self.spec.size_paths:
                from jobreport.outcomes import SUCCESS
                from jobreport.wrapper.size import measure

                found = measure(self.spec.size_paths)
                size = found.size
                updated = int(result.outcome != SUCCESS
                              or found.written_since(result.started_at))
            self._start()
            # thresholds the command wrote: where the command line gave none (they still win
            # over the job's config section)
            late = {k: v for k, v in written.items() if k not in self.spec.given}
            self._finish_quietly(RunResult(
                ended=result.ended_at, duration=result.duration, outcome=result.outcome,
                exit_code=result.exit_code,
                size=size if size is not None else size_written, items=items,
                output_updated=updated,
                cpu_seconds=result.cpu_seconds, max_rss_bytes=result.max_rss_bytes,
                tail=mask_secrets(result.tail, self.config), custom=custom,
            ), late)
        finally:
            if metrics_path is not None:
                _unlink(metrics_path)

    def _finish_quietly(self, result: RunResult,
                        held_to: Mapping[str, Any] | None = None) -> None:
        if self.run_ is None:
            return
        try:
            if held_to:
                self.reporter.finish(self.run_, result, held_to=held_to)
            else:
                self.reporter.finish(self.run_, result)
        except Exception as e:  # the exit code is the child's, whatever happens here
            log.warning("jobreport: the end of job %s was not reported: %s", self.job, e)


def child_environment(environ: Mapping[str, str], job: str, uid: str,
                      metrics_path: str | None) -> dict[str, str]:
    """The command's environment: jobreport's own, without jobreport's secrets, plus the
    run's JOBREPORT_JOB, JOBREPORT_RUN_ID and JOBREPORT_METRICS_FILE."""
    env = {k: v for k, v in environ.items() if k not in SECRET_VARIABLES}
    env["JOBREPORT_JOB"] = job
    env["JOBREPORT_RUN_ID"] = uid
    if metrics_path is not None:
        env["JOBREPORT_METRICS_FILE"] = metrics_path
    else:
        env.pop("JOBREPORT_METRICS_FILE", None)
    return env


def mask_secrets(text: str | None, config: Config) -> str | None:
    """``text`` with the values of the configured secrets (and any URL's credentials)
    replaced by ``***`` (``jobreport.secrets``, loaded once the command has started)."""
    if not text:
        return text
    from jobreport.secrets import config_secrets, mask

    return mask(text, config_secrets(config))


def _new_reporter(config: Config) -> RunReporter:
    logger.load()  # before the recorder's modules, which log through logging directly
    from jobreport.runs import Recorder

    return Recorder(config)


def _report_skipped(reporter: RunReporter, argv: tuple[str, ...], spec: JobSpec,
                    config: Config) -> None:
    try:
        reporter.record_skipped(spec, command=_command_text(argv, config))
    except Exception as e:
        log.warning("jobreport: the skipped run of job %s was not reported: %s", spec.job, e)


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


def _written(path: str) -> bool:
    # the parser is not loaded for the empty file most commands leave (anything else in
    # its place, or a file that cannot be looked at, is the parser's to say)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return not (stat.S_ISREG(st.st_mode) and st.st_size == 0)


def _unlink(path: str) -> None:
    try:  # noqa: SIM105 - contextlib stays off the path before the command starts
        os.unlink(path)
    except OSError:
        pass


def _command_text(argv: tuple[str, ...], config: Config) -> str:
    """``argv`` as one line, a secret typed into it (``curl -u ops:...``) masked as in the
    tail: the one place a command line is made for the marker and the store."""
    import shlex  # only needed once the command has started

    return mask_secrets(shlex.join(argv), config) or ""
