"""The child's output on its way through ``jobreport run``: relayed unchanged to jobreport's
own stdout/stderr as it arrives, and the last lines kept for the run's history.

The copying is done by a process of its own, the copier, forked as soon as the command has
started: it writes every chunk unchanged to the real output and sends a copy (the "tee")
back to the wrapper, whose thread keeps the tail. If the wrapper dies (``kill -9``, the OOM
killer), the copier stops teeing and keeps relaying until the last writer has closed the
pipe, so the job's output still lands where it would have without jobreport.

When the command has ended while a process it left behind (a daemon) still holds the
pipes, the wrapper does not wait for an end of file that may never come: it asks the
copier to pass on what the pipes hold now (``sync``), and the copier answers on the tee
once it has: everything the command wrote is then in the tail, at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import selectors
import signal
import sys
import termios
import threading
from collections.abc import Callable

from jobreport.wrapper.tail import Tail

__all__ = ["READ_SIZE", "Relay", "Tail", "hand_over", "write_all"]


READ_SIZE = 64 * 1024

#: Signals the copier blocks and ignores: like a file, it ends only when the last writer has
#: closed the pipe. A SIGTERM to every process (systemd's stop), a SIGHUP or a Ctrl-C must
#: not cut the output of a command that handles it and still writes its last words.
_IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE)
_TEE_PIPE_SIZE = 1024 * 1024  # lets the copier run ahead of a busy wrapper (pages on demand)
_HEADER = 5  # a tee frame: the output fd (1 byte), the length (4 bytes), the bytes
#: The tee frame that answers a sync (no output goes to fd 0).
_SYNCED = bytes((0,)) + (0).to_bytes(_HEADER - 1, "big")
_WAKE = object()


class Relay(threading.Thread):
    """Copies the child's output pipes to jobreport's own stdout/stderr and feeds the tail.

    ``start()`` forks the copier process (before any thread of the wrapper runs, so the fork
    is safe; it uses only ``os``/``select`` and ends with ``os._exit``), then starts the
    thread that reads the copier's tee into ``tail``. Bytes are written as they arrive,
    unchanged. When a reader of jobreport's output goes away (EPIPE), the pipe is closed so
    that the child sees SIGPIPE as it would without jobreport.

    The relay lives as long as someone writes to it, as a file or a terminal would: when the
    run is over but a process the job left behind still holds a pipe, ``finish()`` stops
    reading the tee and the copier goes on alone; jobreport exits with the child's code while
    that output still goes where it would have gone without jobreport. Should the fork fail
    (a process limit), the thread copies by itself as before and ``finish()`` hands what is
    left to a ``cat``.
    """

    def __init__(self, pairs: list[tuple[int, int]], tail: Tail | None) -> None:
        super().__init__(name="jobreport-relay", daemon=True)
        self.pairs = pairs
        self.tail = tail
        self.open: dict[int, int] = dict(pairs)
        self.copier: int | None = None
        """The copier's pid (None: the thread copies by itself)."""
        self._tee: int | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False
        self._sync_r, self._sync_w = os.pipe()
        self._synced = threading.Event()
        self._ended = threading.Event()

    def start(self) -> None:
        self.copier, self._tee = _fork_copier(self.pairs, self._sync_r)
        os.close(self._sync_r)
        if self.copier is not None:
            self.open = {}  # the copier owns the pipes now
        super().start()

    def run(self) -> None:
        with selectors.DefaultSelector() as sel:
            if self._tee is not None:
                sel.register(self._tee, selectors.EVENT_READ, None)
            else:
                for read_fd, out_fd in self.pairs:
                    sel.register(read_fd, selectors.EVENT_READ, out_fd)
            sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)
            pending = bytearray()
            try:
                while len(sel.get_map()) > 1 and not self._stopping:
                    for key, _events in sel.select():
                        if self._stopping or key.data is _WAKE:
                            continue
                        if key.data is None:
                            self._read_tee(sel, key.fd, pending)
                        else:
                            self._pump(sel, key.fd, key.data)
            finally:
                self._ended.set()  # every writer gone (or stopped): nothing more to wait for
                self._synced.set()

    def _read_tee(self, sel: selectors.BaseSelector, tee: int, pending: bytearray) -> None:
        try:
            data = os.read(tee, _TEE_PIPE_SIZE)
        except OSError:
            data = b""
        if not data:
            sel.unregister(tee)  # every writer is gone and the copier has said all
            return
        pending += data
        offset = 0
        with memoryview(pending) as view:  # one copy per frame, one shift per read
            while len(view) - offset >= _HEADER:
                end = offset + _HEADER + int.from_bytes(view[offset + 1:offset + _HEADER], "big")
                if len(view) < end:
                    break
                if view[offset] == 0:
                    self._synced.set()  # the copier passed on all the pipes held
                elif self.tail is not None:
                    self.tail.feed(view[offset], view[offset + _HEADER:end].tobytes())
                offset = end
        del pending[:offset]

    def _pump(self, sel: selectors.BaseSelector, read_fd: int, out_fd: int) -> None:
        try:
            data = os.read(read_fd, READ_SIZE)
        except OSError:
            data = b""
        if data:
            if self.tail is not None:
                self.tail.feed(out_fd, data)
            if write_all(out_fd, data):
                return
        sel.unregister(read_fd)
        del self.open[read_fd]
        os.close(read_fd)

    def finish(self, drain: float, stop_wait: float = 5.0) -> None:
        """The child is gone: wait for its last output (the copier's answer to a sync, or
        the end of every pipe; at most ``drain`` seconds), then stop feeding the tail.
        Whoever still writes keeps writing through the copier (or, without one, through a
        copying process handed the pipes)."""
        if self.copier is not None:
            with contextlib.suppress(OSError):  # (gone: the tee's end of file ends the thread)
                os.write(self._sync_w, b"s")
            self._synced.wait(drain)
            if self._ended.is_set():
                self.join()  # it has returned from run(): a moment
        else:
            self.join(drain)
        os.close(self._sync_w)
        ended = not self.is_alive()
        if not ended:
            self._stopping = True
            os.write(self._wake_w, b"x")
            # it finishes the chunk in hand (a stalled reader of our output may hold it)
            self.join(stop_wait)
        if not self.is_alive():
            if self._tee is not None:
                os.close(self._tee)  # the copier's next tee write fails: it relays alone
                self._tee = None
            for read_fd, out_fd in list(self.open.items()):
                hand_over(read_fd, out_fd)
                del self.open[read_fd]
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        if self.copier is not None:
            # it has said all (tee at EOF): it is ending now; else init or the subreaper
            # reaps it once the last writer is gone
            _reap(self.copier, wait=0.5 if ended else 0.0)


def _fork_copier(pairs: list[tuple[int, int]],
                 sync: int) -> tuple[int | None, int | None]:
    """Fork the copier for ``pairs`` (asked to pass on what the pipes hold by a byte on
    ``sync``); its pid and the read end of its tee (None, None when no process can be
    made). The wrapper's copies of the pipes' read ends are closed."""
    tee_r, tee_w = os.pipe()
    _enlarge(tee_r)
    # the wrapper's handlers must not run in the copier: a signal arriving between the
    # fork and the copier's SIG_IGN would be forwarded twice
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _IGNORED)
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(tee_r)
        os.close(tee_w)
        return None, None
    if pid == 0:  # pragma: no cover - the copier (coverage cannot follow os._exit)
        _copier_main(pairs, tee_w, sync)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(tee_w)
    for read_fd, _out in pairs:
        os.close(read_fd)
    return pid, tee_r


def _copier_main(pairs: list[tuple[int, int]], tee: int, sync: int) -> None:
    """The copier process: never returns. Only ``os`` and ``select``, no thread, no lock:
    the fork copied the wrapper's state, of which it uses nothing. Each step before the
    copying is best effort: none may keep the output from being relayed."""
    # the signals stay blocked (never acted on, whatever the handler) and are ignored too,
    # so that pending ones are discarded
    for sig in _IGNORED:
        _quietly(signal.signal, sig, signal.SIG_IGN)
    _quietly(os.setsid)  # out of the reach of the wrapper's group, the terminal, its Ctrl-C
    _quietly(_name_self, b"jobreport-relay")
    _quietly(_close_all_but, {fd for pair in pairs for fd in pair} | {tee, sync})
    code = 0
    try:
        _copy(pairs, tee, sync)
    except BaseException:
        code = 1
    os._exit(code)


def _quietly(func: Callable[..., object], *args: object) -> None:
    with contextlib.suppress(BaseException):
        func(*args)


def _copy(pairs: list[tuple[int, int]], tee_fd: int, sync: int | None = None) -> None:
    """Relay each pipe to its output until every writer has closed it; tee each chunk
    while the wrapper listens, and answer its sync (a byte on ``sync``) once what the
    pipes held then is passed on."""
    tee: int | None = tee_fd
    poller = select.poll()
    out_of: dict[int, int] = {}
    for read_fd, out_fd in pairs:
        poller.register(read_fd, select.POLLIN)
        out_of[read_fd] = out_fd
    if sync is not None:
        poller.register(sync, select.POLLIN)

    def relay(read_fd: int, size: int = READ_SIZE) -> bool:
        """One chunk of ``read_fd`` to its output (and the tee); False at its end."""
        nonlocal tee
        out_fd = out_of[read_fd]
        try:
            data = os.read(read_fd, size)
        except OSError:
            data = b""
        if data:
            delivered = write_all(out_fd, data)  # the job's output first, the tail after
            if tee is not None and not write_all(
                    tee, bytes((out_fd,)) + len(data).to_bytes(_HEADER - 1, "big") + data):
                _quietly(os.close, tee)  # the wrapper is gone (or done): relay alone
                tee = None
            if delivered:
                return True
        poller.unregister(read_fd)
        del out_of[read_fd]
        _quietly(os.close, read_fd)  # an error here must not end the other stream's relay
        return False

    while out_of:
        for fd, _events in poller.poll():
            if fd == sync:
                try:
                    asked = os.read(sync, 64)
                except OSError:
                    asked = b""
                if not asked:  # the wrapper is gone: no sync will come again
                    poller.unregister(sync)
                    sync = None
                    continue
                for read_fd in list(out_of):  # what the pipe holds now, and no more
                    left = _held(read_fd)
                    while left > 0 and read_fd in out_of and relay(read_fd, min(left,
                                                                               READ_SIZE)):
                        left -= READ_SIZE
                if tee is not None and not write_all(tee, _SYNCED):
                    _quietly(os.close, tee)
                    tee = None
            elif fd in out_of:
                relay(fd)


def _held(fd: int) -> int:
    """The bytes pipe ``fd`` holds unread (0 when it cannot say)."""
    try:
        buffer = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(buffer, sys.byteorder, signed=True)


def _close_all_but(keep: set[int]) -> None:
    """Close every descriptor but ``keep``: the lock, the store, jobreport's stdin, a
    terminal are the wrapper's, and a fork (unlike exec) does not close them."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # pragma: no cover - no /proc (macOS)
        top = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 4096
        fds = []
        low = 0
        for fd in [*sorted(keep), top]:
            os.closerange(low, fd)
            low = fd + 1
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                continue  # the listing's own descriptor, already gone


def _name_self(name: bytes) -> None:
    """What ps, top and pstree call this process (else it looks like a second wrapper)."""
    try:
        fd = os.open("/proc/self/comm", os.O_WRONLY)
    except OSError:  # pragma: no cover - no /proc
        return
    try:
        os.write(fd, name[:15])
    except OSError:
        pass
    finally:
        os.close(fd)


def _enlarge(pipe_fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(pipe_fd, fcntl.F_SETPIPE_SZ, _TEE_PIPE_SIZE)
    except (ImportError, AttributeError, OSError):
        pass  # a smaller pipe only means the copier waits for the wrapper more often


def _reap(pid: int, wait: float) -> None:
    """Reap the copier, waiting up to ``wait`` s for it to exit (a pidfd, else a 5 ms poll)."""
    import time

    deadline = time.monotonic() + wait
    with contextlib.suppress(ChildProcessError):  # reaped already (an orphan of the subreaper)
        while not os.waitpid(pid, os.WNOHANG)[0] and (left := deadline - time.monotonic()) > 0:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                time.sleep(min(0.005, left))
                continue
            try:
                exited = select.poll()
                exited.register(pidfd, select.POLLIN)
                exited.poll(left * 1000)
            finally:
                os.close(pidfd)


def hand_over(read_fd: int, out_fd: int) -> None:
    """Let a process of its own copy ``read_fd`` to ``out_fd`` until every writer is gone,
    and close ``read_fd`` here. Without a copier the pipe is just closed (its writers then
    get SIGPIPE, as they did before this existed)."""
    import subprocess

    for argv in (["cat"], [sys.executable, "-S", "-c", _COPY]):
        try:
            copier = subprocess.Popen(argv, stdin=read_fd, stdout=out_fd, stderr=subprocess.DEVNULL,
                                      close_fds=True, start_new_session=True)
        except OSError:
            continue
        copier.returncode = 0  # not ours to wait for: it ends with the last writer
        break
    os.close(read_fd)


_COPY = ("import os\n"
         "while True:\n"
         "    d = os.read(0, 65536)\n"
         "    if not d: break\n"
         "    while d: d = d[os.write(1, d):]\n")


def write_all(fd: int, data: bytes) -> bool:
    """Write everything to ``fd``; False when its reader is gone or it cannot be written."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            # wait until it can take more; poll, not select: select fails on descriptors
            # above FD_SETSIZE (1024), which a process with many open files can hand us
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            poller.poll(1000)
            continue
        except BrokenPipeError:
            return False
        except OSError:
            return False
        view = view[n:]
    return True
