"""``--size-path``: the bytes a run produced, in files or whole directory trees, and whether
the run wrote there at all. Measured once the command is over, in one walk.

Whether a run wrote to its paths is read from the files' modification times (mtime): a run
that left every file older than its start (the script wrote elsewhere, yesterday's dump is
still there) did not update its output. Two things blur that comparison, and
``MTIME_SLACK`` absorbs them:

- file systems stamp an mtime with a coarse clock (the kernel's tick, a few milliseconds
  behind the time a process reads) and keep it at their own granularity (ext4, XFS, Btrfs:
  nanoseconds; FAT and exFAT: 2 seconds, rounded down): a file written right after the
  start can carry an mtime a little before it;
- a network file system (NFS, SMB) stamps the file server's clock, not this host's: a server
  whose clock is behind by more than the slack makes fresh files look old (keep both in
  sync with NTP; docs/cli.md says so).

A file written in the two seconds before the run started counts as written by it; for a job
started by cron or a timer nothing else writes there then.
"""

from __future__ import annotations

import os

from jobreport.logger import log

__all__ = ["MTIME_SLACK", "Measured", "measure", "path_size"]

#: A file counts as written by the run when its mtime is at most this much before the start.
MTIME_SLACK = 2.0


class Measured:
    """What ``measure`` found: ``size`` in bytes (None: no path could be read) and the
    newest mtime of a file in the paths (None: no file)."""

    __slots__ = ("newest", "size")

    def __init__(self, size: float | None, newest: float | None) -> None:
        self.size = size
        self.newest = newest

    def written_since(self, started: float) -> bool:
        """Whether a file in the paths was modified at or after ``started`` (less the
        slack): the run wrote its output."""
        return self.newest is not None and self.newest >= started - MTIME_SLACK


def measure(paths: tuple[str, ...] | list[str]) -> Measured:
    """Bytes in ``paths`` (files, or directory trees; symlinks are not followed) and the
    newest mtime of a file among them (a directory's own mtime does not count: removing old
    backups is not writing a new one). A path that does not exist holds 0 bytes, with a
    warning: the run produced nothing there. One that cannot be read is warned about and
    left out; the size is None only when no path could be read."""
    total = 0
    measured = False
    newest: float | None = None
    for path in paths:
        try:
            size, mtime = _tree(path)
        except FileNotFoundError:
            log.warning("jobreport: --size-path %s does not exist; counted as 0 bytes, not "
                        "updated", path)
            measured = True
            continue
        except OSError as e:
            log.warning("jobreport: --size-path %s: %s; not counted", path, e.strerror)
            continue
        total += size
        measured = True
        if mtime is not None and (newest is None or mtime > newest):
            newest = mtime
    return Measured(float(total) if measured else None, newest)


def path_size(paths: tuple[str, ...] | list[str]) -> float | None:
    """Bytes in ``paths`` (see ``measure``)."""
    return measure(paths).size


def _tree(path: str) -> tuple[int, float | None]:
    st = os.lstat(path)
    if not os.path.isdir(path) or os.path.islink(path):
        return st.st_size, st.st_mtime
    total = 0
    newest: float | None = None
    for root, _dirs, files in os.walk(path, onerror=None):
        for name in files:
            try:
                file = os.lstat(os.path.join(root, name))
            except OSError:
                continue  # removed while we walk
            total += file.st_size
            if newest is None or file.st_mtime > newest:
                newest = file.st_mtime
    return total, newest
