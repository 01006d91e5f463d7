"""How the store talks to its database: one small interface, two implementations.

``SQLiteBackend`` uses Python's ``sqlite3`` directly for ``sqlite:///`` URLs (the default
store): it costs a few milliseconds to load, where SQLAlchemy costs hundreds, and a cron job
pays that on every run. ``SQLAlchemyBackend`` serves every other SQLAlchemy URL (PostgreSQL
for a fleet-wide history). Both run the same SQL, written with ``:name`` parameters, and the
tables are created from one SQLAlchemy definition (``jobreport.store.schema``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from jobreport.errors import StoreError
from jobreport.paths import private_dir, sqlite_path
from jobreport.secrets import mask_url

__all__ = ["Backend", "SQLAlchemyBackend", "SQLiteBackend", "Tx", "one_at_a_time",
           "open_backend"]

#: How long a writer waits for another process's transaction on the same SQLite file.
BUSY_TIMEOUT = 30.0

Row = dict[str, Any]


def _busy(error: BaseException) -> bool:
    """SQLite's SQLITE_BUSY ("database is locked")."""
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


def wal_mode(conn: Any) -> None:
    """Put an SQLite connection in WAL mode. While another process turns a new file to WAL,
    SQLite answers "database is locked" at once, without waiting on the busy timeout (the
    first runs of a new store, started together, met it); so it is asked again for up to
    ``BUSY_TIMEOUT``, tenacity's random exponential wait between (5 ms to 0.1 s), tenacity
    loaded only then."""
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        return
    except sqlite3.OperationalError as e:
        if not _busy(e):
            raise
    import tenacity

    for attempt in tenacity.Retrying(
            stop=tenacity.stop_after_delay(BUSY_TIMEOUT),
            wait=tenacity.wait_random_exponential(multiplier=0.005, max=0.1),
            retry=tenacity.retry_if_exception(_busy), reraise=True):
        with attempt:
            conn.execute("PRAGMA journal_mode = WAL")


class Tx(Protocol):
    """One transaction: run SQL with ``:name`` parameters."""

    returning: bool
    #: The database is PostgreSQL (what only it has: its sizes, its timeouts).
    postgresql: bool
    #: How to write "INSERT, unless the row exists": (``INSERT`` words, trailing clause).
    insert_missing: tuple[str, str]

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]: ...

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Execute; return the number of rows changed."""
        ...

    def insert(self, sql: str, params: Mapping[str, Any]) -> int:
        """Execute an INSERT (without RETURNING); return the new row's id."""
        ...


class Backend(Protocol):
    display_url: str
    is_sqlite: bool
    #: Set when the database was found replaced (its file removed or swapped): the schema
    #: must be checked again before the next use.
    replaced: bool

    def write(self, wait: float | None = None) -> AbstractContextManager[Tx]:
        """A write transaction; ``wait``: how long it may wait for another process's lock
        (default: ``BUSY_TIMEOUT``), for work that must not hold a job back."""
        ...

    def read(self) -> AbstractContextManager[Tx]: ...
    def create_tables(self) -> None: ...
    def close(self) -> None: ...


def open_backend(url: str) -> Backend:
    """The backend for ``url``: sqlite3 for plain SQLite files, SQLAlchemy otherwise."""
    path = sqlite_path(url)
    if path is not None:
        return SQLiteBackend(url, path)
    return SQLAlchemyBackend(url)


def _reason(exc: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's boilerplate."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- SQLite through sqlite3 ---------------------------------------------------------------


class _SQLiteTx:
    returning = sqlite3.sqlite_version_info >= (3, 35)
    postgresql = False
    insert_missing = ("INSERT", "ON CONFLICT DO NOTHING")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        cur = self.conn.execute(sql, params or {})
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        return self.conn.execute(sql, params or {}).rowcount

    def insert(self, sql: str, params: Mapping[str, Any]) -> int:
        row_id = self.conn.execute(sql, params).lastrowid
        assert row_id is not None
        return row_id


class SQLiteBackend:
    """An SQLite file through ``sqlite3``: WAL, a busy timeout, ``BEGIN IMMEDIATE`` writes.

    The file and its directory are created owner-only. One connection per process, shared
    by its threads under a lock.
    """

    is_sqlite = True

    def __init__(self, url: str, path: str) -> None:
        self.replaced = False
        self.display_url = mask_url(url)
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        #: (device, inode) of the file the connection has open
        self._identity: tuple[int, int] | None = None
        self._pid = os.getpid()
        self._lock = threading.RLock()

    def _connect(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            # a forked child (multiprocessing): an SQLite connection must not cross a fork;
            # leave the parent's alone and open our own
            self._conn, self._pid, self._lock = None, os.getpid(), threading.RLock()
        if self._conn is None:
            _private_dir(self.path.parent)
            try:
                if not self.path.exists():
                    os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
                conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                       check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
                wal_mode(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
            except OSError as e:
                raise StoreError(
                    f"cannot open the store {self.display_url}: {e.strerror}") from None
            except sqlite3.Error as e:
                raise StoreError(
                    f"cannot open the store {self.display_url}: {_reason(e)}") from None
            self._conn = conn
            self._identity = self._file_identity()
        elif self._file_identity() != self._identity:
            # removed or replaced under us: the connection still writes to the old file,
            # whose history no other process will read; going on would also let the next
            # push carry counters of a store that does not know the group's past
            self.close()
            self.replaced = True
            raise StoreError(
                f"the store file {self.path} was removed or replaced while this process had "
                "it open; this run is reported without history")
        return self._conn

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    @contextmanager
    def _tx(self, begin: str, what: str, wait: float | None = None) -> Iterator[Tx]:
        with self._lock:
            conn = self._connect()
            if wait is not None:
                conn.execute(f"PRAGMA busy_timeout = {max(1, int(wait * 1000))}")
            try:
                conn.execute(begin)
                try:
                    yield _SQLiteTx(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StoreError(
                    f"cannot {what} the store {self.display_url}: {_reason(e)}") from None
            finally:
                if wait is not None and self._conn is conn:
                    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")

    def write(self, wait: float | None = None) -> AbstractContextManager[Tx]:
        return self._tx("BEGIN IMMEDIATE", "write", wait)

    def read(self) -> AbstractContextManager[Tx]:
        return self._tx("BEGIN", "read")

    def create_tables(self) -> None:
        from sqlalchemy.dialects import sqlite
        from sqlalchemy.schema import CreateIndex, CreateTable

        from jobreport.store.schema import metadata

        dialect = sqlite.dialect()
        with self.write() as tx:
            for table in metadata.sorted_tables:
                tx.run(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
                for index in table.indexes:
                    tx.run(str(CreateIndex(index, if_not_exists=True).compile(
                        dialect=dialect)))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._identity = None


def one_at_a_time(tx: Tx) -> None:
    """Make the changes of a store's schema wait for each other's transaction (PostgreSQL:
    a transaction-level advisory lock; SQLite's writes are serial already), so that many
    hosts making or migrating one shared store at once neither collide nor fail."""
    if tx.postgresql:
        from jobreport.store.locks import lock_key

        tx.rows("SELECT pg_advisory_xact_lock(:k) AS locked", {"k": lock_key("schema", "")})


def _private_dir(path: Path) -> None:
    try:
        private_dir(path)
    except OSError as e:
        raise StoreError(f"cannot create the store directory {path}: {e.strerror}") from None


# --- any other database through SQLAlchemy -------------------------------------------------


class _SQLAlchemyTx:
    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.returning = bool(conn.dialect.insert_returning and conn.dialect.update_returning)
        name = conn.dialect.name
        self.postgresql = name == "postgresql"
        self.insert_missing = (
            ("INSERT", "ON CONFLICT DO NOTHING") if name in ("sqlite", "postgresql")
            else ("INSERT IGNORE", "") if name in ("mysql", "mariadb") else ("INSERT", ""))

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        from sqlalchemy import text

        return [dict(r._mapping) for r in self.conn.execute(text(sql), dict(params or {}))]

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        from sqlalchemy import text

        return int(self.conn.execute(text(sql), dict(params or {})).rowcount)

    def insert(self, sql: str, params: Mapping[str, Any]) -> int:
        from sqlalchemy import text

        if self.returning:
            return int(self.conn.execute(text(sql + " RETURNING id"), dict(params)).scalar_one())
        return int(self.conn.execute(text(sql), dict(params)).lastrowid)


class SQLAlchemyBackend:
    """Any SQLAlchemy URL (PostgreSQL, MySQL, SQLite with another driver, ...)."""

    replaced = False

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine, event
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, SQLAlchemyError

        try:
            parsed = make_url(url)
        except ArgumentError:
            raise StoreError(
                f"{mask_url(url)!r} is not an SQLAlchemy URL "
                "(e.g. sqlite:////var/lib/jobreport.db)"
            ) from None
        # jobreport.secrets, not SQLAlchemy's hide_password: it also masks a password that
        # holds "/" or "@", which SQLAlchemy's parser splits in the wrong place
        self.display_url = mask_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        try:
            if self.is_sqlite:
                database = parsed.database
                if database and database != ":memory:":
                    _private_dir(Path(database).parent)
                self.engine = create_engine(
                    url, connect_args={"timeout": BUSY_TIMEOUT, "isolation_level": None})

                @event.listens_for(self.engine, "connect")
                def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                    dbapi_conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
                    wal_mode(dbapi_conn)

                @event.listens_for(self.engine, "begin")
                def _on_begin(conn: Any) -> None:
                    mode = conn.get_execution_options().get("jobreport_begin", "IMMEDIATE")
                    conn.exec_driver_sql(f"BEGIN {mode}")
            else:
                self.engine = create_engine(url, pool_pre_ping=True)
        except (SQLAlchemyError, ImportError) as e:
            raise StoreError(f"cannot open the store {self.display_url}: {_reason(e)}") from None

    @contextmanager
    def _tx(self, what: str, begin: str, wait: float | None = None) -> Iterator[Tx]:
        from sqlalchemy import text
        from sqlalchemy.exc import SQLAlchemyError

        try:
            with self.engine.connect() as raw:
                conn = raw.execution_options(jobreport_begin=begin)
                if wait is not None and self.is_sqlite:  # before its BEGIN IMMEDIATE
                    driver = raw.connection.driver_connection
                    assert driver is not None
                    driver.execute(f"PRAGMA busy_timeout = {max(1, int(wait * 1000))}")
                try:
                    with conn.begin():
                        if wait is not None and conn.dialect.name == "postgresql":
                            ms = max(1, int(wait * 1000))
                            conn.execute(text(f"SET LOCAL lock_timeout = {ms}"))
                            conn.execute(text(f"SET LOCAL statement_timeout = {ms}"))
                        yield _SQLAlchemyTx(conn)
                finally:
                    if wait is not None and self.is_sqlite and raw.connection.driver_connection:
                        raw.connection.driver_connection.execute(
                            f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        except SQLAlchemyError as e:
            raise StoreError(
                f"cannot {what} the store {self.display_url}: {_reason(e)}") from None

    def write(self, wait: float | None = None) -> AbstractContextManager[Tx]:
        return self._tx("write", "IMMEDIATE", wait)

    def read(self) -> AbstractContextManager[Tx]:
        return self._tx("read", "DEFERRED")

    def create_tables(self) -> None:
        from sqlalchemy.exc import SQLAlchemyError
        from sqlalchemy.schema import CreateIndex, CreateTable

        from jobreport.store.schema import metadata

        try:
            with self.engine.begin() as conn:
                # many hosts that share a new store create its tables at once: one at a
                # time (CREATE TABLE IF NOT EXISTS alone races in PostgreSQL's catalog)
                one_at_a_time(_SQLAlchemyTx(conn))
                for table in metadata.sorted_tables:
                    conn.execute(CreateTable(table, if_not_exists=True))
                    for index in table.indexes:
                        conn.execute(CreateIndex(index, if_not_exists=True))
        except SQLAlchemyError as e:
            raise StoreError(f"cannot open the store {self.display_url}: {_reason(e)}") from None

    def close(self) -> None:
        self.engine.dispose()
