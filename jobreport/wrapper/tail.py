"""The last lines of a run's output, as the history keeps them (``Tail``)."""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["Tail"]


class Tail:
    """The last ``max_lines`` lines (at most ``max_bytes`` in all) of the combined output.

    Lines are assembled per stream, so a line of stdout is not cut by a line of stderr. A
    line longer than the bytes allowed keeps its end (where a failing job says why), cut
    at a character's start.
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
        line = _end_of(line, self.max_bytes - 1)  # (and its newline)
        self.lines.append(line)
        self.size += len(line) + 1
        while self.lines and (len(self.lines) > self.max_lines or self.size > self.max_bytes):
            self.size -= len(self.lines.popleft()) + 1

    def text(self) -> str:
        with self.lock:
            lines = list(self.lines) + [p for p in self.partial.values() if p]
        lines = lines[-self.max_lines :]
        if lines:  # the newest line is kept whatever its length: its end, bounded
            lines[-1] = _end_of(lines[-1], self.max_bytes - 1)
        while len(lines) > 1 and sum(len(x) + 1 for x in lines) > self.max_bytes:
            lines.pop(0)
        return b"\n".join(lines).decode("utf-8", errors="replace")


def _end_of(line: bytes, limit: int) -> bytes:
    """The last ``limit`` bytes of ``line`` at most, not starting inside a UTF-8 character."""
    if len(line) <= limit:
        return line
    end = line[len(line) - max(0, limit):]
    for _ in range(3):  # a UTF-8 character has at most 3 continuation bytes
        if end and 0x80 <= end[0] < 0xC0:
            end = end[1:]
    return end
