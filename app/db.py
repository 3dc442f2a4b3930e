"""Engine, sessions, the unit of work and the schema-version guard."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

import migrations
from app.settings import DbTimeouts, get_settings


class ConflictError(Exception):
    """A write collided with stored data (unique name, duplicate measurement)."""


class SchemaBehindError(RuntimeError):
    """The database's schema is not the one this code was written for."""


def _sqlite_pragmas(busy_ms: int):  # type: ignore[no-untyped-def]
    def pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        # SQLAlchemy, not the driver, opens transactions (see _sqlite_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        # Foreign keys are off by default in SQLite; WAL lets the CLI read while the server
        # writes.
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.close()

    return pragmas


WRITE = {"sqlite_begin": "IMMEDIATE"}


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    # Writers begin IMMEDIATE: they take the write lock up front, waiting on busy_timeout. A
    # deferred transaction that reads and then writes fails at once with "database is
    # locked" when another connection committed in between (a WAL snapshot conflict), e.g.
    # a job's heartbeat. Readers stay deferred so they never wait for writers.
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', '')}")


def get_engine(url: str, timeouts: DbTimeouts | None = None) -> Engine:
    """One engine per URL and timeouts for the process (pools are per engine); the timeouts
    default to the ``EDGEOPT_DB_*`` settings."""
    return _engine(url, timeouts or get_settings().db_timeouts)


@lru_cache(maxsize=8)
def _engine(url: str, timeouts: DbTimeouts) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": timeouts.busy_s}
        )
        event.listen(engine, "connect", _sqlite_pragmas(round(timeouts.busy_s * 1000)))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_timeout=timeouts.pool_s,
        connect_args=_postgres_timeouts(url, timeouts),
    )


def _postgres_timeouts(url: str, timeouts: DbTimeouts) -> dict[str, object]:
    """libpq's ``connect_timeout`` and a server-side ``statement_timeout`` added to the
    ``options`` the URL may already carry (a ``search_path``, say)."""
    args: dict[str, object] = {"connect_timeout": max(2, round(timeouts.connect_s))}
    if timeouts.statement_s > 0:
        given = make_url(url).query.get("options", "")
        given = " ".join(given) if isinstance(given, tuple) else given
        statement = f"-c statement_timeout={round(timeouts.statement_s * 1000)}"
        args["options"] = f"{given} {statement}".strip()
    return args


def session_factory(url: str, timeouts: DbTimeouts | None = None) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url, timeouts), expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Commit on success, roll back on any error; a unique violation becomes ConflictError."""
    session = factory()
    try:
        session.connection(execution_options=WRITE)
        yield session
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(str(exc.orig).splitlines()[0]) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str) -> Config:
    """Alembic configuration built in code, so the installed package needs no ini file."""
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(url: str, timeouts: DbTimeouts | None = None) -> str | None:
    with get_engine(url, timeouts).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_schema(url: str, timeouts: DbTimeouts | None = None) -> None:
    """Refuse to run on a database whose schema is behind (or ahead of) the code."""
    current, head = current_revision(url, timeouts), head_revision(url)
    if current != head:
        raise SchemaBehindError(
            f"database schema is at revision {current or 'none (empty database)'}, "
            f"this code needs {head}: run `edgeopt db upgrade`"
        )


def commit(session: Session) -> None:
    """Commit a request's session; a unique violation becomes ConflictError (409)."""
    try:
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        raise ConflictError(str(exc.orig).splitlines()[0]) from exc
