"""One error body for every failure, and the handlers that produce it."""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from app.db import ConflictError
from app.domain_errors import DomainError

log = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    """Where an input went wrong: ``row`` for uploads, ``field`` as a dotted path."""

    field: str | None = None
    row: int | None = None
    message: str


class ErrorInfo(BaseModel):
    status: int
    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorBody(BaseModel):
    error: ErrorInfo


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    500: "internal_error",
    503: "service_unavailable",
    507: "insufficient_storage",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` declaring these error codes with the one error body."""
    return {
        code: {"model": ErrorBody, "description": _CODES[code].replace("_", " ")} for code in codes
    }


# Declared on every route, so the OpenAPI schema tells clients what errors look like; a
# route that can answer another error code adds it (``error_responses(415)``). 400 is a
# body FastAPI cannot parse at all (JSON that is not UTF-8, say); malformed JSON is a 422.
# Any route may meet a database or a disk that fails: 503 (unreachable, busy, read-only)
# and 507 (full), see ``storage_error``.
ERROR_RESPONSES = error_responses(400, 401, 403, 404, 409, 413, 422, 503, 507)

# Seconds a client is told to wait (Retry-After) before it tries again.
RETRY_BUSY_S = 1
RETRY_UNAVAILABLE_S = 5
# PostgreSQL's SQLSTATEs for a full disk, a statement cancelled by statement_timeout, and a
# read-only server (a standby, or default_transaction_read_only).
_PG_DISK_FULL = "53100"
_PG_CANCELLED = "57014"
_PG_READ_ONLY = "25006"
# Write errors that are the disk's or the folder's, not the request's.
_UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


# A route answering an ONNX model file declares it so (not a JSON body).
ONNX_FILE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "an ONNX model"}
}


class BodyTooLarge(Exception):
    """Raised while reading a request body that exceeds ``max_request_bytes``."""


def error_response(
    status: int,
    message: str,
    details: list[ErrorDetail] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorBody(
        error=ErrorInfo(
            status=status, code=_CODES.get(status, "error"), message=message, details=details or []
        )
    )
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def storage_error(exc: BaseException) -> JSONResponse | None:
    """The answer to a database or disk that failed under a request, naming the cause; None
    for an error that is not one of those (a bug: 500).

    507 when the disk is full (an artifact write, SQLite's file, PostgreSQL's disk); 503 with
    Retry-After when the database is unreachable, too slow, busy (SQLite's write lock held
    past the busy timeout) or read-only, or a folder cannot be written.
    """
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            return error_response(507, f"no space left on the disk{where}")
        if exc.errno in _UNWRITABLE:
            return error_response(
                503,
                f"storage cannot be written ({reason}){where}",
                headers={"Retry-After": str(RETRY_UNAVAILABLE_S)},
            )
        return None
    if isinstance(exc, PoolTimeout):
        return _unavailable(f"database unavailable: no free connection: {_first_line(exc)}")
    if not isinstance(exc, DBAPIError):
        return None
    orig, text = exc.orig, _first_line(exc.orig)
    state = getattr(orig, "sqlstate", None)
    if isinstance(orig, sqlite3.OperationalError):
        lowered = text.lower()
        if "full" in lowered:  # "database or disk is full"
            return error_response(507, f"the database's disk is full: {text}")
        if "locked" in lowered or "busy" in lowered:
            return error_response(
                503,
                "the database is busy: another write holds its lock; try again shortly",
                headers={"Retry-After": str(RETRY_BUSY_S)},
            )
        if "readonly" in lowered or "read-only" in lowered:
            return _unavailable(f"the database is read-only: {text}")
        if "unable to open" in lowered or "disk i/o" in lowered:
            return _unavailable(f"database unavailable: {text}")
        return None
    if state == _PG_DISK_FULL:
        return error_response(507, f"the database's disk is full: {text}")
    if state == _PG_CANCELLED:
        return _unavailable(f"the database did not answer in time: {text}")
    if state == _PG_READ_ONLY:
        return _unavailable(f"the database is read-only: {text}")
    lost = state is None or state.startswith(("08", "57P"))  # no connection, or it broke
    if exc.connection_invalidated or (isinstance(exc, (OperationalError, InterfaceError)) and lost):
        return _unavailable(f"database unavailable: {text}")
    return None


def _unavailable(message: str) -> JSONResponse:
    return error_response(503, message, headers={"Retry-After": str(RETRY_UNAVAILABLE_S)})


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        details = [ErrorDetail.model_validate(d) for d in exc.details]
        return error_response(exc.status, exc.message, details)

    # Starlette's class, not FastAPI's subclass: FastAPI's routing raises Starlette's (a body
    # it cannot parse is a 400), and so does the router for an unknown path or method.
    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            ErrorDetail(field=_field(tuple(e["loc"])), message=e["msg"]) for e in exc.errors()[:50]
        ]
        summary = "; ".join(f"{d.field}: {d.message}" for d in details[:3])
        return error_response(422, f"invalid input: {summary}", details)

    @app.exception_handler(ConflictError)
    async def _conflict(_: Request, exc: ConflictError) -> JSONResponse:
        return error_response(409, f"conflicts with stored data: {exc}")

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        # a constraint violated before the commit, e.g. by a write that ran at the same time
        return error_response(409, f"conflicts with stored data: {str(exc.orig).splitlines()[0]}")

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        # e.g. a NUL character or an out-of-range number the database cannot store or compare
        return error_response(422, f"a value was refused by the database: {exc.orig}")

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return error_response(413, str(exc))

    async def _storage(_: Request, exc: Exception) -> JSONResponse:
        answer = storage_error(exc)
        if answer is None:
            log.exception("unhandled error", exc_info=exc)
            return error_response(500, "internal error; the server log has the details")
        log.warning("%s: %s", answer.status_code, _first_line(exc))
        return answer

    # a database or disk that fails: every route (DBAPIError covers OperationalError and
    # InterfaceError; OSError a folder that cannot be written or a full disk)
    for kind in (DBAPIError, PoolTimeout, OSError):
        app.add_exception_handler(kind, _storage)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal error; the server log has the details")
