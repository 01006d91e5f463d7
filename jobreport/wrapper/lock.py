"""``jobreport run --lock``: one run per group at a time on this host (and, with a
PostgreSQL store, on every host that shares it: ``jobreport.store.locks.RunLock``, held
beside this one as ``JobLock.fleet``).

An advisory ``flock`` on a small file in the state directory (next to the default store).
As with ``flock(1)``, the command inherits the locked descriptor: the lock is held for as
long as the command (or a process it left behind) lives, also when the wrapper itself was
killed (the OOM killer), so a second copy cannot start beside it. The kernel drops the lock
when the last holder exits, however it exits, so a crashed run never leaves a stale lock
behind. The file holds the holder's pid, for the message.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from jobreport.logger import log
from jobreport.paths import private_dir, sqlite_path, state_dir
from jobreport.state import group_key

TYPE_CHECKING = False  # (not typing's: on the path before the command starts)
if TYPE_CHECKING:
    from typing import Literal

    from jobreport.config import Config
    from jobreport.spec import JobSpec
    from jobreport.store.locks import RunLock

__all__ = ["JobLock", "LockBusy", "fleet_lock", "lock_path", "take_lock"]


class LockBusy(Exception):
    """Another process holds the lock; ``holder`` is its pid when known."""

    def __init__(self, path: Path, holder: int | None) -> None:
        self.path = path
        self.holder = holder
        who = f" (pid {holder})" if holder else ""
        super().__init__(f"another run holds {path}{who}")


def lock_path(grouping: Mapping[str, str], directory: Path | None = None) -> Path:
    """The lock file of the group ``grouping``: readable job name plus a hash of the key."""
    key = group_key(grouping)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", grouping.get("job", "job"))[:64]
    return (directory or Path(state_dir(), "locks")) / f"{readable}-{digest}.lock"


class JobLock:
    """A non-blocking exclusive lock held by this process until ``release()``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        #: The group's lock in a store many hosts share, held and released with this one.
        self.fleet: RunLock | None = None

    @property
    def held(self) -> bool:
        """This host's lock or the fleet's is held."""
        return self._fd is not None or self.fleet is not None

    def acquire(self) -> None:
        """Take the lock or raise ``LockBusy``; ``OSError`` when the file cannot be made."""
        private_dir(self.path.parent)
        # close-on-exec until share_with_child(): only the command may inherit it
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise LockBusy(self.path, holder) from None
        except OSError:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def share_with_child(self, shared: bool) -> None:
        """Let the next program started inherit the locked descriptor (or not any more)."""
        if self._fd is not None:
            os.set_inheritable(self._fd, shared)

    def note_holder(self, pid: int) -> None:
        """Name ``pid`` (the command, which outlives us if we are killed) as the holder."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                os.pwrite(self._fd, f"{pid}\n".encode(), 0)
            except OSError:
                pass

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock, unless the command still holds it
            self._fd = None
        if self.fleet is not None:
            self.fleet.release()
            self.fleet = None

    def __enter__(self) -> JobLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def take_lock(spec: JobSpec, config: Config) -> JobLock | Literal[False] | None:
    """The held lock of ``spec``'s group (``--lock``), None when none can be taken (warned),
    False when it is busy: the local ``flock`` of the group, and with a PostgreSQL store the
    group's lock in the store too, which holds across every host and pod that shares it
    (``store.locks.RunLock``)."""
    from jobreport.secrets import mask_url

    job = spec.job
    grouping = config.grouping(job, spec.labels)
    lock = JobLock(lock_path(grouping))
    try:
        lock.acquire()
    except LockBusy as e:
        log.warning("jobreport: job %s is already running (%s); not starting it (--lock)",
                    job, e)
        return False
    except OSError as e:
        log.warning("jobreport: cannot lock %s (%s); running without --lock on this host",
                    lock.path, e)
    fleet = fleet_lock(config.db, group_key(grouping))
    if fleet is False:
        lock.release()
        log.warning("jobreport: job %s is already running on a host that shares the store "
                    "%s; not starting it (--lock)", job, mask_url(config.db))
        return False
    lock.fleet = fleet
    return lock if lock.held else None


def fleet_lock(db: str, key: str) -> RunLock | Literal[False] | None:
    """The group's lock in a PostgreSQL store (None: not such a store, or it cannot be
    reached: warned), False when another run holds it."""
    if sqlite_path(db) is not None:
        return None  # (the common case: nothing more to load before the command starts)
    from jobreport.errors import StoreError
    from jobreport.store.locks import RunLock, supported

    if not supported(db):
        return None
    fleet = RunLock(db, key)
    try:
        return fleet if fleet.acquire() else False
    except StoreError as e:
        log.warning("jobreport: %s; --lock holds on this host only", e)
        return None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None
