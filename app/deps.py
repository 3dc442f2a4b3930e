"""Request dependencies: settings, the database session and the API key check."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session, sessionmaker

from app.db import WRITE
from app.jobs import JobRunner
from app.keys import HEADER, Caller, authenticate, require_scope
from app.settings import Settings

API_KEY_HEADER = HEADER
_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def _session(request: Request, write: bool) -> Iterator[Session]:
    session = request.app.state.session_factory()
    if write:
        session.connection(execution_options=WRITE)
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def get_session(request: Request) -> Iterator[Session]:
    """A session per request; routes that write call ``commit`` from ``app.db``.

    A non-GET request's session takes SQLite's write lock as it begins (``app.db.WRITE``)
    and holds it to the end: the safe default for a route that writes. A POST that only
    reads takes ``ReadSessionDep``; a route that computes long before it writes reads in a
    session of its own and stores in ``unit_of_work`` (``POST /optimize``).
    """
    yield from _session(request, request.method not in ("GET", "HEAD", "OPTIONS"))


def get_read_session(request: Request) -> Iterator[Session]:
    """A session that never takes the write lock, whatever the method: for routes that
    only read (``POST /optimize/front``), so they neither wait for writers nor block them."""
    yield from _session(request, write=False)


def get_factory(request: Request) -> sessionmaker[Session]:
    return request.app.state.session_factory


def get_runner(request: Request) -> JobRunner:
    return request.app.state.runner


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
ReadSessionDep = Annotated[Session, Depends(get_read_session)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]
FactoryDep = Annotated[sessionmaker[Session], Depends(get_factory)]


TokenDep = Annotated[str | None, Security(_api_key)]


def require_write_key(factory: FactoryDep, settings: SettingsDep, token: TokenDep = None) -> Caller:
    """A key with the ``write`` scope (agent keys only on the agent routes)."""
    caller = authenticate(factory, token, settings.api_keys)
    return require_scope(caller, "write")


def require_agent_key(factory: FactoryDep, settings: SettingsDep, token: TokenDep = None) -> Caller:
    """A key with the ``write`` scope, agent keys included; the route checks the device."""
    caller = authenticate(factory, token, settings.api_keys)
    return require_scope(caller, "write", agent_route=True)


def require_admin_key(factory: FactoryDep, settings: SettingsDep, token: TokenDep = None) -> Caller:
    """A key with the ``admin`` scope: key management."""
    caller = authenticate(factory, token, settings.api_keys)
    return require_scope(caller, "admin")


def require_read_key(factory: FactoryDep, settings: SettingsDep, token: TokenDep = None) -> None:
    """Reads are open unless ``reads_require_key``; a key given to an open read is not checked."""
    if settings.reads_require_key:
        caller = authenticate(factory, token, settings.api_keys)
        require_scope(caller, "read")


WriteAccess = Depends(require_write_key)
ReadAccess = Depends(require_read_key)
AdminAccess = Depends(require_admin_key)
AgentKey = Annotated[Caller, Depends(require_agent_key)]


# Bounded parameters: a number the database cannot hold is a 422, not a driver error.
MAX_ID = 2**31 - 1
ResourceId = Annotated[int, Path(ge=1, le=MAX_ID)]
# A device in a path, as everywhere else: its name or its id (``app.queries.find_device``).
DeviceRef = Annotated[
    str, Path(min_length=1, max_length=120, description="the device's name or id")
]
IdFilter = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10**9)]
