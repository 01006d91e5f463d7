"""The memory of an unreachable peer, shared by the runs of one host.

After an attempt that could not even connect (refused, unresolvable name, connect timeout),
a tiny file next to the store says so, per sink URL. For ``REMEMBER`` seconds, or until the
next success, the next runs make one short attempt instead of retrying for their whole
budget: a gateway that was down moments ago then costs a cron job about a second, not ten.

A file, not a table: it must work when the store does not (an unwritable or corrupt store
is exactly when a quick answer matters), and it is only ever a hint. Every failure to read
or write it is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from jobreport.paths import sqlite_path

__all__ = ["REMEMBER", "PeerMemory", "memory_dir", "memory_for"]

#: How long an unreachable answer is remembered (unless a success comes first).
REMEMBER = 300.0


def memory_dir(db_url: str, state: Path) -> Path:
    """Where the memory lives: beside an SQLite store's file, else the state directory."""
    path = sqlite_path(db_url)
    return Path(path).parent if path is not None else state


def memory_for(db_url: str) -> PeerMemory:
    """The memory that the sinks of a store at ``db_url`` share."""
    from jobreport.paths import state_dir

    return PeerMemory(memory_dir(db_url, Path(state_dir())))


class PeerMemory:
    """Per peer URL: when it was last found unreachable, and why."""

    def __init__(self, directory: Path | None, *, remember: float = REMEMBER,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self.remember = remember
        self._clock = clock
        #: What this process found itself, so that it needs no file to stop early.
        self._seen: dict[str, tuple[float, str]] = {}

    def _file(self, url: str) -> Path | None:
        if self.directory is None:
            return None
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:20]
        return self.directory / f"unreachable-{digest}.json"

    def unreachable_since(self, url: str) -> tuple[float, str] | None:
        """(when, reason) if ``url`` could not be reached within the last ``remember``
        seconds, else None."""
        now = self._clock()
        found = self._seen.get(url)
        if found is None:
            path = self._file(url)
            if path is None:
                return None
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                found = (float(data["since"]), str(data["reason"]))
            except (OSError, ValueError, KeyError, TypeError):
                return None
        # a clock stepped back makes "since" lie in the future: forget it then too
        return found if 0.0 <= now - found[0] <= self.remember else None

    def unreachable(self, url: str, reason: str) -> None:
        """Remember that ``url`` could not be reached now."""
        now = self._clock()
        self._seen[url] = (now, reason)
        path = self._file(url)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".unreachable-")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"since": now, "reason": reason}, f)
            os.replace(tmp, path)
        except OSError:
            pass

    def reachable(self, url: str) -> None:
        """Forget that ``url`` was unreachable (it answered)."""
        self._seen.pop(url, None)
        path = self._file(url)
        if path is None:
            return
        with contextlib.suppress(OSError):
            path.unlink()
