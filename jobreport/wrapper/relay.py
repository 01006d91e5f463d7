"""The child's output on its way through ``jobreport run``: relayed unchanged to jobreport's
own stdout/stderr as it arrives, and the last lines kept for the run's history."""

from __future__ import annotations

import os
import selectors
import sys
import threading
from collections import deque

__all__ = ["READ_SIZE", "Relay", "Tail", "hand_over", "write_all"]

READ_SIZE = 64 * 1024


class Relay(threading.Thread):
    """Copies the child's output pipes to jobreport's own stdout/stderr and feeds the tail.

    Bytes are written as they arrive, unchanged. When a reader of jobreport's output goes
    away (EPIPE), the pipe is closed so that the child sees SIGPIPE as it would without
    jobreport.

    The relay lives as long as someone writes to it, as a file or a terminal would: when the
    run is over but a process the job left behind still holds a pipe, ``finish()`` hands the
    pipe to a small copying process (``cat``) of its own, so that jobreport can exit with the
    child's code while that output still goes where it would have gone without jobreport.
    """

    def __init__(self, pairs: list[tuple[int, int]], tail: Tail | None) -> None:
        super().__init__(name="jobreport-relay", daemon=True)
        self.pairs = pairs
        self.tail = tail
        self.open: dict[int, int] = dict(pairs)
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = False

    def run(self) -> None:
        with selectors.DefaultSelector() as sel:
            for read_fd, out_fd in self.pairs:
                sel.register(read_fd, selectors.EVENT_READ, out_fd)
            sel.register(self._wake_r, selectors.EVENT_READ, None)
            while len(sel.get_map()) > 1 and not self._stopping:
                for key, _events in sel.select():
                    if key.data is not None and not self._stopping:
                        self._pump(sel, key.fd, key.data)

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
        """The child is gone: wait up to ``drain`` seconds for the last output, then pass
        every pipe still held by someone else on to a copying process and stop."""
        self.join(drain)
        if self.is_alive():
            self._stopping = True
            os.write(self._wake_w, b"x")
            # it finishes the chunk in hand (a stalled reader of our output may hold it)
            self.join(stop_wait)
        if not self.is_alive():
            for read_fd, out_fd in list(self.open.items()):
                hand_over(read_fd, out_fd)
                del self.open[read_fd]
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)


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
            import select

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
