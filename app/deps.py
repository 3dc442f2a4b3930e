"""Request dependencies: settings, the database session and the API key check."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session, sessionmaker

from app.db import WRITE
from app.errors import ApiError
from app.jobs import JobRunner
from app.settings import Settings

API_KEY_HEADER = "X-API-Key"
_api_key = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """A session per request; routes that write call ``commit`` from ``app.db``."""
    session = request.app.state.session_factory()
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        session.connection(execution_options=WRITE)
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def get_factory(request: Request) -> sessionmaker[Session]:
    return request.app.state.session_factory


def get_runner(request: Request) -> JobRunner:
    return request.app.state.runner


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
RunnerDep = Annotated[JobRunner, Depends(get_runner)]
FactoryDep = Annotated[sessionmaker[Session], Depends(get_factory)]


def _key_matches(given: str, keys: list[str]) -> bool:
    # Compare against every key, in constant time, without stopping at the first match.
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given.encode(), key.encode())
    return ok


def require_write_key(
    settings: SettingsDep, key: Annotated[str | None, Security(_api_key)] = None
) -> None:
    if not settings.api_keys:
        raise ApiError(
            403,
            "writes are disabled: no API keys are configured (set EDGEOPT_API_KEYS on the server)",
        )
    if not key:
        raise ApiError(401, f"this endpoint needs an API key in the {API_KEY_HEADER} header")
    if not _key_matches(key, settings.api_keys):
        raise ApiError(403, "the API key is not valid")


def require_read_key(
    settings: SettingsDep, key: Annotated[str | None, Security(_api_key)] = None
) -> None:
    if settings.reads_require_key:
        require_write_key(settings, key)


WriteAccess = Depends(require_write_key)
ReadAccess = Depends(require_read_key)


# Bounded parameters: a number the database cannot hold is a 422, not a driver error.
MAX_ID = 2**31 - 1
ResourceId = Annotated[int, Path(ge=1, le=MAX_ID)]
IdFilter = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10**9)]
