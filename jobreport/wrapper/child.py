"""Run one command the way ``jobreport run`` does and say how it went.

The child is started directly (no shell) with jobreport's own stdin, stdout and stderr.
Only when a stream is not a terminal (cron, systemd, a pipe) is it relayed through a pipe,
unchanged and unbuffered, so that the last lines of output can be kept for the run's
history. Signals sent to jobreport reach the child; the child's own exit status decides the
outcome. Resource use comes exactly from the kernel (``wait4`` rusage); psutil is imported
only when a timeout has to find and stop the whole process tree.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time

from jobreport import outcomes
from jobreport.wrapper import streams
from jobreport.wrapper import tree as proctree
from jobreport.wrapper.signals import FORWARDED_SIGNALS, Forwarder, Waiter, signals_handled

TYPE_CHECKING = False  # not typing's: importing typing costs every `jobreport run`
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from jobreport.wrapper.exit_status import ProcessResult
    from jobreport.wrapper.relay import Relay, Tail

__all__ = [
    "DEFAULT_KILL_AFTER",
    "DEFAULT_TAIL_LINES",
    "EXIT_NOT_EXECUTABLE",
    "EXIT_NOT_FOUND",
    "EXIT_TIMEOUT",
    "FORWARDED_SIGNALS",
    "TAIL_MAX_BYTES",
    "run",
    "signals_handled",
]

EXIT_TIMEOUT = outcomes.EXIT_TIMEOUT
EXIT_NOT_EXECUTABLE = outcomes.EXIT_NOT_EXECUTABLE
EXIT_NOT_FOUND = outcomes.EXIT_NOT_FOUND
DEFAULT_KILL_AFTER = 10.0
DEFAULT_TAIL_LINES = 20
TAIL_MAX_BYTES = streams.TAIL_MAX_BYTES

#: How long output may still arrive after the child ended before the relay is handed over.
DRAIN_TIMEOUT = 0.5
_REAP_INTERVAL = 1.0  # how often orphans handed to us (subreaper) are reaped during a run
_PR_SET_CHILD_SUBREAPER = 36
#: What subprocess's ``restore_signals`` gives back to the command (Python ignores them).
_RESTORED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ")
                          if hasattr(signal, name))


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    kill_after: float = DEFAULT_KILL_AFTER,
    tail_lines: int = DEFAULT_TAIL_LINES,
    tail_bytes: int = TAIL_MAX_BYTES,
    on_spawned: Callable[[int], None] | None = None,
    on_started: Callable[[int], None] | None = None,
    subreaper: bool = False,
) -> ProcessResult:
    """Run ``argv`` to completion and return how it went; never raises for the command's sake.

    ``timeout`` (seconds, None or 0 for none) sends SIGTERM to the whole process tree, then
    SIGKILL after ``kill_after`` seconds. ``on_spawned(pid)`` is called as soon as the
    child exists (keep it to a few system calls), ``on_started(pid)`` once its output
    relay and signal forwarding are in place (both from the calling thread; their
    exceptions are ignored). With ``subreaper`` (Linux), descendants
    orphaned during the run are re-parented to this process, reaped and counted.
    Signal forwarding needs the main thread; elsewhere it is skipped.
    """
    if not argv:
        raise ValueError("no command given")
    started = _Runner(
        argv=list(argv),
        env=dict(env) if env is not None else None,
        timeout=timeout if timeout and timeout > 0 else None,
        kill_after=max(kill_after, 0.0),
        tail_lines=tail_lines,
        tail_bytes=tail_bytes,
        on_spawned=on_spawned,
        on_started=on_started,
        subreaper=subreaper,
    )
    return started.run()


class _Runner:
    """The state of one run; split out of run() to keep each step small."""

    def __init__(
        self,
        *,
        argv: list[str],
        env: dict[str, str] | None,
        timeout: float | None,
        kill_after: float,
        tail_lines: int,
        tail_bytes: int,
        on_spawned: Callable[[int], None] | None,
        on_started: Callable[[int], None] | None,
        subreaper: bool,
    ) -> None:
        self.argv = argv
        self.env = env
        self.timeout = timeout
        self.kill_after = kill_after
        self.tail_lines = tail_lines
        self.tail_bytes = tail_bytes
        self.tail: Tail | None = None  # made once the command runs, when output is relayed
        self.on_spawned = on_spawned
        self.on_started = on_started
        self.subreaper = subreaper and sys.platform.startswith("linux")
        self.foreground = _in_terminal_foreground()
        self.cpu = 0.0
        self.max_rss = 0
        self.foreign: set[int] = set()
        self.timed_out = False
        self.kill_at: float | None = None
        self.tree: list[Any] = []

    def run(self) -> ProcessResult:
        pipes = [(os.pipe(), out_fd) for out_fd in self._streams_to_relay()]
        forwarder = Forwarder(self.foreground)
        previous_subreaper = self._become_subreaper()
        started_at = time.time()
        t0 = time.monotonic()
        try:
            with signals_handled(forwarder.handle):
                try:
                    pid = self._spawn(self._redirects(pipes))
                except OSError as exc:
                    for (r, _), _out in pipes:
                        os.close(r)
                    return self._spawn_failed(exc, started_at, t0)
                finally:
                    for (_, w), _out in pipes:
                        os.close(w)
                if self.on_spawned is not None:
                    _call_quietly(self.on_spawned, pid)
                relay = self._relay(pipes)
                return self._supervise(pid, forwarder, relay, started_at, t0)
        finally:
            self._restore_subreaper(previous_subreaper)

    # -- starting -------------------------------------------------------------------------

    def _streams_to_relay(self) -> list[int]:
        if self.tail_lines <= 0:
            return []
        # a stream jobreport was started without is closed-on-exec /dev/null here
        # (wrapper._plug_closed_streams): the child does not get it, so nothing to relay
        relayed = [fd for fd in (1, 2)
                   if streams.is_open(fd) and os.get_inheritable(fd) and not os.isatty(fd)]
        if relayed == [1, 2] and streams.same_file(1, 2):
            # cron's mail pipe, a journal stream, `>> log 2>&1`: one pipe for both keeps the
            # child's interleaving of stdout and stderr exactly
            return [1]
        return relayed

    def _redirects(self, pipes: list[tuple[tuple[int, int], int]]) -> dict[int, int]:
        """Which write end the child gets as its stdout (1) and stderr (2)."""
        redirect = {out: w for (_, w), out in pipes}
        if redirect.keys() == {1} and streams.same_file(1, 2):
            redirect[2] = redirect[1]
        return redirect

    def _spawn(self, redirect: dict[int, int]) -> int:
        """Start the command; its pid. ``os.posix_spawnp`` rather than ``subprocess``:
        subprocess and what it imports cost the run path several milliseconds before the
        command starts, and the kernel's vfork-style spawn is what subprocess does anyway."""
        if not self.argv[0]:
            raise FileNotFoundError(errno.ENOENT, "empty command name")
        if self.subreaper:
            self.foreign = proctree.own_children()
        # close_fds=False in subprocess's terms: descriptors jobreport inherited (systemd
        # socket activation, a lock held by cron's caller) reach the child as without
        # jobreport; jobreport's own descriptors are close-on-exec (PEP 446). Python ignores
        # SIGPIPE and SIGXFSZ for itself: the command gets them back at their defaults, as
        # subprocess's restore_signals does; a signal ignored when jobreport started stays
        # ignored, and handled ones are reset by exec.
        actions = [(os.POSIX_SPAWN_DUP2, w, fd) for fd, w in sorted(redirect.items())]
        env = os.environ if self.env is None else self.env
        failure: OSError | None = None
        for path in _candidates(self.argv[0], env):
            try:
                if self.foreground:  # the terminal's job control needs the child in our group
                    return os.posix_spawn(path, self.argv, env, file_actions=actions,
                                          setsigdef=_RESTORED_SIGNALS)
                return os.posix_spawn(path, self.argv, env, file_actions=actions,
                                      setsigdef=_RESTORED_SIGNALS, setpgroup=0)
            except OSError as e:
                # as execvp: the first error other than "no such file" is the one to tell
                if failure is None or failure.errno in (errno.ENOENT, errno.ENOTDIR):
                    failure = e
        raise failure or FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT),
                                           self.argv[0])

    def _relay(self, pipes: list[tuple[tuple[int, int], int]]) -> Relay | None:
        """Once the command runs: the relay of the streams that go through pipes."""
        if not pipes:
            return None  # every stream is a terminal (or --tail 0): nothing to capture
        from jobreport.wrapper import relay as output

        self.tail = output.Tail(self.tail_lines, self.tail_bytes)
        relay = output.Relay([(r, out) for (r, _), out in pipes], self.tail)
        relay.start()
        if relay.copier is not None:  # its own process, not the job's: not
            self.foreign.add(relay.copier)  # reaped, counted or killed as one
        return relay

    def _spawn_failed(self, exc: OSError, started_at: float, t0: float) -> ProcessResult:
        from jobreport.wrapper.exit_status import ProcessResult, describe_spawn_error

        code, outcome, message = describe_spawn_error(self.argv[0], exc)
        return ProcessResult(
            exit_code=code,
            outcome=outcome,
            signal=None,
            started_at=started_at,
            ended_at=time.time(),
            duration=time.monotonic() - t0,
            cpu_seconds=None,
            max_rss_bytes=None,
            tail=None,
            error=message,
            pid=None,
        )

    # -- waiting --------------------------------------------------------------------------

    def _supervise(
        self,
        pid: int,
        forwarder: Forwarder,
        relay: Relay | None,
        started_at: float,
        t0: float,
    ) -> ProcessResult:
        waiter = Waiter(pid, forwarder)
        forwarder.attach(pid, own_group=not self.foreground)
        waiter.start()
        if self.on_started is not None:
            _call_quietly(self.on_started, pid)
        self._wait(waiter, pid, t0)
        ended_at = time.time()
        duration = time.monotonic() - t0
        status, usage = waiter.status, waiter.usage
        if usage is not None:
            self._account(usage)
        if self.timed_out:
            self._finish_killing(pid)
        if self.subreaper:
            self._reap_orphans()
        if relay is not None:
            # output written until now is in the tail; whoever still writes (a background
            # process the job left) keeps writing where it would without jobreport
            relay.finish(DRAIN_TIMEOUT)
        from jobreport.wrapper.exit_status import ProcessResult, classify

        code, outcome, signum = classify(status, self.timed_out)
        return ProcessResult(
            exit_code=code,
            outcome=outcome,
            signal=signum,
            started_at=started_at,
            ended_at=ended_at,
            duration=duration,
            cpu_seconds=self.cpu if usage is not None else None,
            max_rss_bytes=self.max_rss if usage is not None else None,
            tail=self.tail.text() if self.tail is not None else None,
            error=None,
            pid=pid,
            timed_out=self.timed_out,
        )

    def _wait(self, waiter: Waiter, pid: int, t0: float) -> None:
        deadline = t0 + self.timeout if self.timeout is not None else None
        next_reap = t0 + _REAP_INTERVAL if self.subreaper else None
        while not waiter.done.is_set():
            now = time.monotonic()
            wake = [t for t in (deadline, self.kill_at, next_reap) if t is not None]
            waiter.done.wait(max(0.0, min(wake) - now) if wake else None)
            if waiter.done.is_set():
                return
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                deadline = None
                self.timed_out = True
                self.tree = proctree.tree(pid, self.foreign)
                proctree.signal_tree(pid, self.tree, signal.SIGTERM, own_group=not self.foreground)
                self.kill_at = now + self.kill_after
            if self.kill_at is not None and now >= self.kill_at:
                self._kill(pid)
            if next_reap is not None and now >= next_reap:
                self._reap_orphans(exclude=pid)
                next_reap = now + _REAP_INTERVAL

    def _kill(self, pid: int) -> None:
        self.kill_at = None
        self.tree = proctree.merge(self.tree, proctree.tree(pid, self.foreign))
        proctree.signal_tree(pid, self.tree, signal.SIGKILL, own_group=not self.foreground)

    def _finish_killing(self, pid: int) -> None:
        """After a timeout the child may be gone while descendants ignore SIGTERM: they get
        SIGKILL when kill_after has passed. Orphans are found through the tree seen at
        the timeout, since they no longer descend from the child."""
        self.tree = proctree.merge(self.tree, proctree.tree(pid, self.foreign))
        if self.kill_at is not None:
            if proctree.wait_gone(self.tree, self.kill_at):
                return
            self._kill(pid)
        proctree.wait_gone(self.tree, time.monotonic() + 2.0)

    # -- accounting -----------------------------------------------------------------------

    def _account(self, usage: Any) -> None:
        self.cpu += float(usage.ru_utime + usage.ru_stime)
        from jobreport.wrapper.exit_status import rss_bytes

        self.max_rss = max(self.max_rss, rss_bytes(int(usage.ru_maxrss)))

    def _reap_orphans(self, exclude: int | None = None) -> None:
        for opid in proctree.own_children() - self.foreign:
            if opid == exclude:
                continue
            try:
                reaped, _status, usage = os.wait4(opid, os.WNOHANG)
            except ChildProcessError:
                continue
            if reaped:
                self._account(usage)

    def _become_subreaper(self) -> int | None:
        if not self.subreaper:
            return None
        previous = proctree.get_subreaper()
        if previous is None or not proctree.prctl(_PR_SET_CHILD_SUBREAPER, 1):
            self.subreaper = False
            return None
        return previous

    def _restore_subreaper(self, previous: int | None) -> None:
        if previous is not None and previous == 0:
            proctree.prctl(_PR_SET_CHILD_SUBREAPER, 0)


# -- helpers ------------------------------------------------------------------------------


def _candidates(command: str, env: Mapping[str, str]) -> list[str]:
    """The files ``command`` may be: itself when it names a path, else the matches in the
    PATH of the command's own environment, in order (as subprocess searches it; glibc's
    posix_spawnp would search jobreport's PATH instead)."""
    if os.sep in command:
        return [command]
    found = []
    # os.get_exec_path(env), without the warnings module it loads
    search = env.get("PATH")
    for directory in (os.defpath if search is None else search).split(os.pathsep):
        path = os.path.join(directory, command)
        try:
            os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue  # what exec would say too: go on searching
        except OSError:
            pass  # let exec say what it is
        found.append(path)
    return found


def _call_quietly(func: Callable[..., None], *args: Any) -> None:
    # not contextlib.suppress: contextlib is kept off the path before the command starts
    try:  # noqa: SIM105
        func(*args)
    except Exception:  # noqa: S110 - a reporting hook must never disturb the child
        pass


def _in_terminal_foreground() -> bool:
    """True when jobreport runs in the foreground process group of its terminal."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                return True
        except OSError:
            continue
    return False
