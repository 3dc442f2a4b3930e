"""Operations: structured logs, request ids and the Prometheus metrics of the HTTP layer.

Every request gets an id: the client's ``X-Request-ID`` when it is sane (at most 128 of
``[A-Za-z0-9._-]``), else a new one. It is echoed in the response's ``X-Request-ID``
header and carried, through a context variable, by every log line written while the
request runs (route code in the thread pool included). Each request ends in one access
line (method, path, status, duration); a request that raised ends in one error line that
also holds the traceback as a field, instead of the two tracebacks (the handler's and the
server's) it used to print.

Counters live in ``prometheus_client``'s process registry: they count what this process
served since it started. The database-backed figures (jobs, tasks) are read when scraped,
by ``app/routers/metrics.py``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from prometheus_client import Counter, Histogram
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response

REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
UNMATCHED = "<unmatched>"  # the route label of a path no route serves (bounded cardinality)

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
access_log = logging.getLogger("edgeopt.access")

REQUESTS = Counter(
    "edgeopt_http_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "edgeopt_http_request_duration_seconds",
    "Time from request to the end of the response, by route template",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
PREDICTIONS = Counter(
    "edgeopt_predictions",
    "Designs predicted for clients: the designs of /predict, the candidates of /optimize",
    ["route"],
)


def count_predictions(route: str, designs: int) -> None:
    """Count ``designs`` predictions served by ``route`` (``/predict``, ``/optimize``)."""
    PREDICTIONS.labels(route=route).inc(designs)


def sane_request_id(value: str | None) -> str:
    """The client's request id when it is safe to log and echo, else a new one."""
    if value is not None and _SANE_ID.match(value):
        return value
    return uuid.uuid4().hex


# -- logs ------------------------------------------------------------------------------

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id", "rid"}
_STANDARD.add("color_message")  # uvicorn's copy of the message with terminal colours


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and extra fields;
    an exception's traceback is the ``traceback`` field, never extra lines."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["traceback"] = record.exc_text
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message``; a traceback follows on its own lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(rid)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        record.rid = f" [{rid}]" if rid else ""
        text = super().format(record)
        trace = getattr(record, "traceback", None)
        return f"{text}\n{trace}" if trace else text


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (pytest swaps it per test)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


_HANDLER_NAME = "edgeopt"


def setup_logging(fmt: Literal["json", "text"] = "json", level: int = logging.INFO) -> None:
    """Send the service's logs, uvicorn's included, through one handler in ``fmt``.

    Idempotent (each app the tests build calls it); other handlers on the root logger
    (pytest's) are left alone. uvicorn's own access lines are turned off: the middleware
    writes one per request, with its id.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = _Stderr()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root.addHandler(handler)
    # the service's own loggers at ``level``; libraries' (alembic's per-connection notes on
    # every /readyz, for one) stay at the root's default, warnings and worse
    for name in ("app", "edgeopt", "uvicorn"):
        logging.getLogger(name).setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False


# -- the middleware --------------------------------------------------------------------


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class RequestContext:
    """Request id, access line, request metrics, and one line (not two tracebacks) for a 500.

    Plain ASGI and the outermost of the app's middleware, so it sees every answer, a 413 of
    the body size limit included. An exception that escapes the routes is answered here
    with the usual error body, so the server does not print its traceback again.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None
        )
        rid = sane_request_id(given)
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500
        responded = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        failure: str | None = None
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            failure = "".join(traceback.format_exception(exc))
            status = 500
            if not responded:
                response = error_response(
                    500, f"internal error; the server log has the details (request id {rid})"
                )
                await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route(scope)
            method = scope["method"]
            REQUESTS.labels(method=method, route=route, status=str(status)).inc()
            LATENCY.labels(route=route).observe(elapsed)
            fields: dict[str, Any] = {
                "method": method,
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            }
            if failure is None:
                access_log.info("%s %s %s", method, scope["path"], status, extra=fields)
            else:
                last = failure.strip().splitlines()[-1]
                access_log.error(
                    "%s %s %s: unhandled %s",
                    method,
                    scope["path"],
                    status,
                    last,
                    extra={**fields, "traceback": failure},
                )
            request_id.reset(token)
