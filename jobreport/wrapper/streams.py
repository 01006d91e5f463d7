"""jobreport's own standard streams before the command starts: which are open, and which
share a file. Standard library only, and only ``os``: it is on the path of every
``jobreport run`` before the command starts (the relay itself loads once it runs)."""

from __future__ import annotations

import os

__all__ = ["TAIL_MAX_BYTES", "is_open", "plug_closed_streams", "same_file"]

#: The output tail a run keeps (and the store stores) is at most this many last bytes.
TAIL_MAX_BYTES = 64 * 1024


def same_file(a: int, b: int) -> bool:
    """Whether descriptors ``a`` and ``b`` are open on the same file (``>> log 2>&1``)."""
    try:
        sa, sb = os.fstat(a), os.fstat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def is_open(fd: int) -> bool:
    """Whether descriptor ``fd`` is open (jobreport may be started with ``>&-``)."""
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def plug_closed_streams() -> None:
    """With jobreport's stdin, stdout or stderr closed (``>&-``), the next file jobreport
    opens (the lock, the store) would take that number and the command would write into it.
    Each closed one gets /dev/null, close-on-exec: jobreport can use the number, the command
    still finds it closed, as without jobreport."""
    for fd in (0, 1, 2):
        if is_open(fd):
            continue
        try:
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            return
        if null != fd:
            os.dup2(null, fd, inheritable=False)
            os.close(null)
