"""Locks a shared store holds for a fleet: PostgreSQL advisory locks on one group, each held
by a database connection of its own for as long as it is held.

- ``RunLock``: ``jobreport run --lock`` with a PostgreSQL store: one run of a group at a time
  on every host and pod that shares the store (the local ``flock`` holds on one host only).
  Taken before the command starts, released when the run is over; a wrapper that is killed
  closes its connection, and PostgreSQL releases the lock with it (unlike the local
  ``flock``, which the command inherits and keeps while it lives).
- ``DeliveryLock``: one delivery of a group at a time from a shared store, so that the
  delivery that reaches a sink last carries the newest state, however many hosts deliver
  the group at once (each reads the group's state, pushes it and marks it delivered while
  it holds the lock).

Only for PostgreSQL (``pg_try_advisory_lock``); every other store gets no such lock
(``supported``). Loaded only with such a store: it imports SQLAlchemy.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from jobreport.errors import StoreError
from jobreport.paths import sqlite_path
from jobreport.secrets import mask_url

__all__ = ["DeliveryLock", "RunLock", "delivery_lock", "lock_key", "supported"]

#: How often a lock that another connection holds is tried again while waiting for it.
_RETRY = 0.05


def supported(url: str) -> bool:
    """Whether the store at ``url`` can hold a lock for a fleet (PostgreSQL)."""
    if sqlite_path(url) is not None:
        return False
    scheme = url.partition(":")[0].lower()
    return scheme.partition("+")[0] in ("postgresql", "postgres")


def lock_key(kind: str, group: str) -> int:
    """The advisory lock's key (a signed 64-bit integer) of ``kind`` (``run``, ``delivery``)
    on the group ``group`` (its ``group_key``): the two kinds never block each other."""
    digest = hashlib.sha256(f"jobreport {kind} {group}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _AdvisoryLock:
    """A session-level advisory lock held by ``connection`` (a SQLAlchemy connection kept
    out of any transaction while it holds the lock)."""

    def __init__(self, key: int) -> None:
        self.key = key
        self._conn: Any = None

    @property
    def held(self) -> bool:
        return self._conn is not None

    def _try(self, conn: Any) -> bool:
        from sqlalchemy import text

        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                {"k": self.key}).scalar())
        conn.commit()  # no transaction stays open: the lock is the session's
        return got

    def _take(self, conn: Any, deadline: float | None) -> bool:
        """Take the lock on ``conn`` (once, or until ``deadline``); keep ``conn`` if so."""
        while True:
            if self._try(conn):
                self._conn = conn
                return True
            if deadline is None or time.monotonic() + _RETRY >= deadline:
                return False
            time.sleep(_RETRY)

    def _unlock(self) -> None:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            conn.commit()
        except SQLAlchemyError:
            conn.invalidate()  # the connection is gone, and the lock with it
        finally:
            conn.close()


class RunLock(_AdvisoryLock):
    """``--lock`` across every host of a PostgreSQL store: held from before the command
    starts until ``release()``, by a connection of this process's own (not pooled, not
    inherited by the command)."""

    def __init__(self, url: str, group: str) -> None:
        super().__init__(lock_key("run", group))
        self.url = url
        #: The store as messages show it (password masked).
        self.shown = mask_url(url)
        self._engine: Any = None

    def acquire(self) -> bool:
        """Take the lock if no other run holds it (True); False when one does. Raises
        ``StoreError`` when the store cannot be reached."""
        from sqlalchemy import create_engine
        from sqlalchemy.exc import SQLAlchemyError
        from sqlalchemy.pool import NullPool

        conn = None
        try:
            self._engine = create_engine(self.url, poolclass=NullPool)
            conn = self._engine.connect()
            if self._take(conn, None):
                return True
        except (SQLAlchemyError, ImportError) as e:
            self.release()
            raise StoreError(f"cannot take the lock in the store {self.shown}: "
                             f"{_reason(e)}") from None
        conn.close()
        self.release()
        return False

    def release(self) -> None:
        """Release the lock (and its connection)."""
        self._unlock()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def delivery_lock(url: str, backend: object, name: str,
                  deadline: float) -> AbstractContextManager[bool]:
    """What holds the delivery ``name`` (a group and a sink) of the store at ``url`` (its
    ``backend``): a ``DeliveryLock`` for a store many hosts share, else nothing (True)."""
    if not supported(url):
        return nullcontext(True)
    return DeliveryLock(getattr(backend, "engine", None), name, deadline)


class DeliveryLock(_AdvisoryLock):
    """One delivery of a group at a time from a shared store: a ``with`` block that waits
    for the lock until ``deadline`` (``time.monotonic()``) and gives whether it got it. The
    connection comes from the store's own pool and goes back to it."""

    def __init__(self, engine: Any, group: str, deadline: float) -> None:
        super().__init__(lock_key("delivery", group))
        self._engine = engine
        self._deadline = deadline

    def __enter__(self) -> bool:
        from sqlalchemy.exc import SQLAlchemyError

        conn = None
        try:
            conn = self._engine.connect()
            if not self._take(conn, self._deadline):
                conn.close()
        except SQLAlchemyError as e:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot take the delivery lock of the store: {_reason(e)}") \
                from None
        return self.held

    def __exit__(self, *exc: object) -> None:
        self._unlock()
