"""Where the catalogue lives: a SQLite file (the embedded default, one process) or a PostgreSQL
server (`postgresql://user:pass@host:port/db`, shared by every process of a bot), and the Alembic
migrations that bring either to the head revision.

Both run the same migrations through the async engine, so there is one driver per database
(aiosqlite, asyncpg). On PostgreSQL an advisory lock serialises processes that start together.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.exc import DatabaseError as SADatabaseError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .config import POSTGRES_SCHEMES
from .errors import DatabaseError, DatabaseUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

_MIGRATION_LOCK = 0x6C6F6F6B  # "look": pg_advisory_xact_lock key held while migrating
_MIGRATION_TRIES = 6  # SQLite: "locked" at once (no busy wait) in a new file's first moments; 0.05 s .. 1.6 s apart


@dataclass(frozen=True)
class Database:
    """A parsed database location. `path` is set for SQLite, `url` (no password shown) for PostgreSQL."""

    kind: str  # "sqlite" | "postgresql"
    async_url: str
    path: Path | None = None

    @property
    def shown(self) -> str:
        """For messages and `lookalike stats`: the file, or the server URL without its password."""
        if self.path is not None:
            return str(self.path)
        from sqlalchemy.engine import make_url

        return make_url(self.async_url).set(drivername="postgresql").render_as_string(hide_password=True)


def locate(db: str | Path) -> Database:
    """`db` as given by --db / LOOKALIKE_DB: a postgresql:// URL or a SQLite file path."""
    raw = str(db)
    if raw.startswith(POSTGRES_SCHEMES):
        rest = raw.split("://", 1)[1]
        return Database("postgresql", f"postgresql+asyncpg://{rest}")
    path = Path(db).expanduser()
    if path.parent and not path.parent.exists():
        raise DatabaseError(f"The folder for the database {path} does not exist.")
    if path.is_dir():
        raise DatabaseError(f"{path} is a folder, not a database file.")
    return Database("sqlite", f"sqlite+aiosqlite:///{path}", path)


def _set_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")  # first: another process may hold the file while this one connects
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def create_engine(database: Database) -> AsyncEngine:
    if database.kind == "sqlite":
        engine = create_async_engine(database.async_url)
        event.listen(engine.sync_engine, "connect", _set_pragmas)
        return engine
    # pre-ping: a connection that died with a server restart is replaced, not handed out
    return create_async_engine(database.async_url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def migrations_dir() -> Path:
    import migrations

    return Path(migrations.__file__).resolve().parent


def _upgrade(connection: Any, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def migrate(engine: AsyncEngine, database: Database, revision: str = "head") -> None:
    """Upgrade the database to `revision` in one transaction, under a lock: PostgreSQL's advisory lock, SQLite's
    write lock (``BEGIN IMMEDIATE``). Python's sqlite3 opens no transaction for DDL, so without it each ``CREATE``
    would commit on its own: a ``kill -9`` mid-revision would leave tables without their version stamp (a file
    no later open can upgrade), and two processes opening a new file would both create its tables. A new file's
    first moments (switching it to WAL) can answer "locked" without waiting: the upgrade is tried again then."""
    from alembic.util import CommandError

    try:
        for attempt in range(_MIGRATION_TRIES):
            try:
                async with engine.begin() as conn:
                    if database.kind == "postgresql":
                        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
                    else:
                        await conn.exec_driver_sql("BEGIN IMMEDIATE")
                    await conn.run_sync(_upgrade, revision)
                return
            except (SADatabaseError, sqlite3.DatabaseError) as e:
                if database.kind != "sqlite" or "locked" not in str(e) or attempt == _MIGRATION_TRIES - 1:
                    raise
                await asyncio.sleep(0.05 * 2**attempt)
    except (SADatabaseError, sqlite3.DatabaseError) as e:
        raise DatabaseError(
            f"{database.shown} is not a usable lookalike database: {e.orig if hasattr(e, 'orig') else e}"
        ) from None
    except (OSError, ConnectionError) as e:
        raise DatabaseError(f"Cannot reach the database at {database.shown}: {e}") from None
    except CommandError as e:  # e.g. a revision this code does not know: written by a newer lookalike
        raise DatabaseError(
            f"{database.shown} cannot be upgraded ({e}); was it written by a newer version of lookalike?"
        ) from None


_AWAY = ("connect", "closed", "locked", "busy", "shutting down", "starting up", "terminat", "timeout", "unable to open")


def unavailable(error: BaseException) -> bool:
    """An error that says the database is away or busy for now, not that the request (or the
    schema) is wrong: a refused or dropped connection, a server shutting down, a locked file."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(error, (OSError, ConnectionError)):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    said = f"{type(error.orig).__name__} {error.orig}".lower()
    return isinstance(error, (InterfaceError, OperationalError)) and any(w in said for w in _AWAY)


def guarded(cls: type[T]) -> type[T]:
    """Class decorator: the public coroutine methods raise DatabaseUnavailable, a sentence the edges
    show as "try again in a moment", when the database is away; the pool reconnects once it is back."""
    for name, fn in list(vars(cls).items()):
        if name.startswith("_") or not inspect.iscoroutinefunction(fn):
            continue
        setattr(cls, name, _guard(fn))
    return cls


def _guard(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kw: Any) -> Any:
        try:
            return await fn(*args, **kw)
        except DatabaseError:
            raise
        except Exception as e:
            if unavailable(e):
                log.warning("database unavailable in %s: %s", fn.__name__, e)
                raise DatabaseUnavailable("The catalogue database can't be reached right now; try again in a moment.") from e
            raise

    return wrapper
