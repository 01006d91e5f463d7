"""The child's output on its way through ``jobreport run``: relayed unchanged to jobreport's
own stdout/stderr as it arrives, and the last lines kept for the run's history.

The copying is done by a process of its own, the copier, forked as soon as the command has
started: it writes every chunk unchanged to the real output and sends a copy (the "tee")
back to the wrapper, whose thread keeps the tail. If the wrapper dies (``kill -9``, the OOM
killer), the copier stops teeing and keeps relaying until the last writer has closed the
pipe, so the job's output still lands where it would have without jobreport.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable

__all__ = ["READ_SIZE", "Relay", "Tail", "hand_over", "write_all"]

READ_SIZE = 64 * 1024

#: Signals the copier blocks and ignores: like a file, it ends only when the last writer has
#: closed the pipe. A SIGTERM to every process (systemd's stop), a SIGHUP or a Ctrl-C must
#: not cut the output of a command that handles it and still writes its last words.
_IGNORED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE)
_TEE_PIPE_SIZE = 1024 * 1024  # lets the copier run ahead of a busy wrapper (pages on demand)
_HEADER = 5  # a tee frame: the output fd (1 byte), the length (4 bytes), the bytes
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

    def start(self) -> None:
        self.copier, self._tee = _fork_copier(self.pairs)
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
            while len(sel.get_map()) > 1 and not self._stopping:
                for key, _events in sel.select():
                    if self._stopping or key.data is _WAKE:
                        continue
                    if key.data is None:
                        self._read_tee(sel, key.fd, pending)
                    else:
                        self._pump(sel, key.fd, key.data)

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
                if self.tail is not None:
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
        """The child is gone: wait up to ``drain`` seconds for the last output, then stop
        feeding the tail. Whoever still writes keeps writing through the copier (or, without
        one, through a copying process handed the pipes)."""
        self.join(drain)
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


def _fork_copier(pairs: list[tuple[int, int]]) -> tuple[int | None, int | None]:
    """Fork the copier for ``pairs``; its pid and the read end of its tee (None, None when
    no process can be made). The wrapper's copies of the pipes' read ends are closed."""
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
        _copier_main(pairs, tee_w)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(tee_w)
    for read_fd, _out in pairs:
        os.close(read_fd)
    return pid, tee_r


def _copier_main(pairs: list[tuple[int, int]], tee: int) -> None:
    """The copier process: never returns. Only ``os`` and ``select``, no thread, no lock:
    the fork copied the wrapper's state, of which it uses nothing. Each step before the
    copying is best effort: none may keep the output from being relayed."""
    # the signals stay blocked (never acted on, whatever the handler) and are ignored too,
    # so that pending ones are discarded
    for sig in _IGNORED:
        _quietly(signal.signal, sig, signal.SIG_IGN)
    _quietly(os.setsid)  # out of the reach of the wrapper's group, the terminal, its Ctrl-C
    _quietly(_name_self, b"jobreport-relay")
    _quietly(_close_all_but, {fd for pair in pairs for fd in pair} | {tee})
    code = 0
    try:
        _copy(pairs, tee)
    except BaseException:
        code = 1
    os._exit(code)


def _quietly(func: Callable[..., object], *args: object) -> None:
    with contextlib.suppress(BaseException):
        func(*args)


def _copy(pairs: list[tuple[int, int]], tee_fd: int) -> None:
    """Relay each pipe to its output until every writer has closed it; tee each chunk
    while the wrapper listens."""
    tee: int | None = tee_fd
    poller = select.poll()
    out_of: dict[int, int] = {}
    for read_fd, out_fd in pairs:
        poller.register(read_fd, select.POLLIN)
        out_of[read_fd] = out_fd
    while out_of:
        for read_fd, _events in poller.poll():
            if read_fd not in out_of:
                continue
            out_fd = out_of[read_fd]
            try:
                data = os.read(read_fd, READ_SIZE)
            except OSError:
                data = b""
            if data:
                delivered = write_all(out_fd, data)  # the job's output first, the tail after
                if tee is not None and not write_all(
                        tee, bytes((out_fd,)) + len(data).to_bytes(_HEADER - 1, "big") + data):
                    _quietly(os.close, tee)  # the wrapper is gone (or done): relay alone
                    tee = None
                if delivered:
                    continue
            poller.unregister(read_fd)
            del out_of[read_fd]
            _quietly(os.close, read_fd)  # an error here must not end the other stream's relay


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
    """Reap the copier if it has ended, waiting up to ``wait`` seconds for it."""
    import time

    deadline = time.monotonic() + wait
    while True:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # reaped already (as an orphan of the subreaper, say)
        if done or time.monotonic() >= deadline:
            return
        time.sleep(0.005)


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


class Tail:
    """The last ``max_lines`` lines (at most ``max_bytes`` in all) of the combined output.

    Lines are assembled per stream, so a line of stdout is not cut by a line of stderr.
    """

    def __init__(self, max_lines: int, max_bytes: int) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.lines: deque[bytes] = deque()
        self.size = 0
        self.partial: dict[int, bytes] = {}
        self.lock = threading.Lock()

    def feed(self, stream: int, data: bytes) -> None:
        with self.lock:
            *complete, rest = (self.partial.get(stream, b"") + data).split(b"\n")
            for line in complete[-self.max_lines :]:
                self._keep(line)
            self.partial[stream] = rest[-self.max_bytes :]

    def _keep(self, line: bytes) -> None:
        line = line[-self.max_bytes :]
        self.lines.append(line)
        self.size += len(line) + 1
        while self.lines and (len(self.lines) > self.max_lines or self.size > self.max_bytes):
            self.size -= len(self.lines.popleft()) + 1

    def text(self) -> str:
        with self.lock:
            lines = list(self.lines) + [p for p in self.partial.values() if p]
        lines = lines[-self.max_lines :]
        while lines and sum(len(x) + 1 for x in lines) > self.max_bytes:
            lines.pop(0)
        return b"\n".join(lines).decode("utf-8", errors="replace")


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
