"""Engine plumbing shared by the SQL stores: URIs, SQLite pragmas, migrations, transactions.

SQLite notes, because they decide correctness under concurrency:
- WAL journal with ``synchronous=NORMAL``: a committed transaction survives the death of the
  process (kill -9), which is the promise ``flush()`` makes; it may not survive power loss.
- Writes open with ``BEGIN IMMEDIATE``: taking the write lock up front means a writer waits
  on the busy timeout instead of failing with "database is locked" when it would otherwise
  upgrade a read lock mid-transaction. Reads use a separate engine with deferred transactions.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from gyre.errors import BackendUnavailable, InvalidArgument

__all__ = ["HEAD_REVISION", "SqlBase", "masked", "now_ms"]

HEAD_REVISION = "0005"
_MIGRATIONS = Path(__file__).parent / "migrations"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def masked(uri: str) -> str:
    """The URI with any password replaced, for messages and logs."""
    try:
        url = sa.make_url(uri)
    except sa.exc.ArgumentError:
        return uri
    return url.render_as_string(hide_password=True)


_T = TypeVar("_T")


def _retry_locked(call: Callable[[], _T], seconds: float = 30.0) -> _T:
    """``call()``, again after a short wait while SQLite says the database is locked
    without waiting itself: it does so, busy timeout or not, when another process opens a
    new database file at the same moment (switching it to WAL, or initialising its WAL
    index). Seen once in eight processes opening one new file under a loaded machine."""
    deadline = time.monotonic() + seconds
    pause = 0.01
    while True:
        try:
            return call()
        except (sqlite3.OperationalError, sa.exc.OperationalError) as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


class SqlBase:
    """Engines, schema upgrade and transaction helpers for one database URI."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        try:
            url = sa.make_url(uri)
        except sa.exc.ArgumentError:
            raise InvalidArgument(
                f"tracking URI {uri!r} is not a database URL",
                hint="use sqlite:///path/to/gyre.db or postgresql://user@host:5432/db",
            ) from None
        self.dialect = url.get_backend_name()
        if self.dialect == "sqlite":
            self._read, self._write = self._sqlite_engines(url)
        elif self.dialect == "postgresql":
            if url.drivername == "postgresql":
                url = url.set(drivername="postgresql+psycopg")
            engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
            self._read = self._write = engine
        else:
            raise InvalidArgument(
                f"tracking URI {masked(uri)!r}: database {self.dialect!r} is not supported",
                hint="use sqlite:/// or postgresql://",
            )
        self._insert: Any = sqlite.insert if self.dialect == "sqlite" else postgresql.insert
        self._ensure_schema()

    # -- engines and schema -------------------------------------------------------------

    def _sqlite_engines(self, url: sa.URL) -> tuple[Engine, Engine]:
        database = url.database or ""
        if database in ("", ":memory:"):
            raise InvalidArgument(
                f"tracking URI {self.uri!r} names no database file",
                hint="use sqlite:///path/to/gyre.db (an in-memory database cannot be shared)",
            )
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)

        def make(begin: str) -> Engine:
            engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                # Let SQLAlchemy's "begin" event, not pysqlite, open transactions.
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA busy_timeout=60000")
                _retry_locked(lambda: cur.execute("PRAGMA journal_mode=WAL"))
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                conn.exec_driver_sql(begin)

            return engine

        return make("BEGIN"), make("BEGIN IMMEDIATE")

    def _current_revision(self) -> str | None:
        with self._read.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def _ensure_schema(self) -> None:
        """Bring the database to the newest schema in place; nothing is ever recreated."""
        try:
            if _retry_locked(self._current_revision) == HEAD_REVISION:
                return
            with self._migration_lock():
                if self._current_revision() == HEAD_REVISION:
                    return
                from alembic import command
                from alembic.config import Config

                cfg = Config()
                cfg.set_main_option("script_location", str(_MIGRATIONS))
                with self._write.begin() as conn:
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
        except sa.exc.OperationalError as exc:
            raise BackendUnavailable(
                f"cannot open metadata store {masked(self.uri)!r}: {exc.orig}",
                hint="check that the database server is running and the URI is right",
            ) from None

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """One migrator at a time, across processes."""
        if self.dialect == "sqlite":
            import fcntl

            lock_path = f"{sa.make_url(self.uri).database}.migrate.lock"
            with open(os.path.expanduser(lock_path), "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        else:
            with self._write.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(7406071)"))
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(7406071)"))
                    conn.commit()

    def close(self) -> None:
        self._read.dispose()
        if self._write is not self._read:
            self._write.dispose()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        try:
            with self._write.begin() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise BackendUnavailable(
                f"metadata store {masked(self.uri)!r} failed: {exc.orig}"
            ) from None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        try:
            with self._read.connect() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise BackendUnavailable(
                f"metadata store {masked(self.uri)!r} failed: {exc.orig}"
            ) from None
