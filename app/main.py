"""The FastAPI application: wiring of settings, database, jobs and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from alembic.runtime.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

import app.measure_service
import app.optimize_service
import app.predictor_service
import app.reference_import
import app.refine_service
import app.training_service
import app.verify_service  # noqa: F401  (registers the verify-optimization job kind)
from app.artifact_store import attach, store_problem
from app.artifacts import folder_problem
from app.db import check_schema, head_revision, session_factory
from app.deps import ReadAccess, RunnerDep, SessionDep, SettingsDep
from app.domain_errors import Unavailable
from app.errors import ERROR_RESPONSES, error_responses, install_error_handlers
from app.jobs import JobRunner, start_worker_processes, stop_worker_processes
from app.limits import BodySizeLimit
from app.models import Device
from app.observability import RequestContext, setup_logging
from app.queue import JobQueue
from app.routers import (
    dashboard,
    devices,
    docs,
    jobs,
    keys,
    learned,
    measurements,
    metrics,
    optimize,
    predictors,
    tasks,
)
from app.schemas import Health, Liveness, Readiness
from app.settings import Settings, get_settings


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; refuses to start when the database schema is behind."""
    settings = settings or get_settings()
    setup_logging(settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()
        check_schema(settings.database_url, settings.db_timeouts)
        factory = session_factory(settings.database_url, settings.db_timeouts)
        attach(settings.artifacts_dir, factory, settings.artifact_store)
        app.state.settings = settings
        app.state.session_factory = factory
        # Thread mode runs jobs here, on a private queue; otherwise this process only queues
        # them for `edgeopt worker` processes. Either way it reaps dead workers' jobs.
        in_process = settings.job_workers_mode == "thread"
        app.state.runner = JobRunner(
            factory,
            settings.job_workers,
            settings.job_heartbeat_s,
            settings.artifacts_dir,
            queue=None if in_process else JobQueue(settings.job_queue_url),
            consume=in_process,
            stale_after_s=settings.job_stale_after_s,
            max_attempts=settings.job_max_attempts,
        )
        job_workers = (
            start_worker_processes(settings.as_environment(), settings.job_workers)
            if settings.job_workers_mode == "process"
            else []
        )
        try:
            yield
        finally:
            stop_worker_processes(job_workers)
            app.state.runner.shutdown()

    app = FastAPI(
        title="EdgeOpt",
        version="0.1.0",
        summary="Device registry, cross-device predictors and hardware-aware network design",
        lifespan=lifespan,
        docs_url=None,  # served by app.routers.docs from vendored assets: no CDN
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestContext)  # added last: the outermost, it sees every answer
    for module in (devices, measurements, jobs, predictors, tasks, learned, optimize, dashboard):
        app.include_router(module.router)
    app.include_router(keys.router)
    app.include_router(metrics.router)
    app.include_router(docs.router)
    generated_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """The generated schema, with the models that only hand-written bodies refer to."""
        if app.openapi_schema is None:
            components = generated_openapi().setdefault("components", {})
            for name, model in devices.upload_schemas().items():
                components.setdefault("schemas", {}).setdefault(name, model)
        return app.openapi_schema or generated_openapi()

    app.openapi = openapi  # type: ignore[method-assign]

    unavailable = ERROR_RESPONSES | error_responses(503)

    @app.get(
        "/health",
        response_model=Health,
        tags=["service"],
        responses=unavailable,
        dependencies=[ReadAccess],
    )
    def health(session: SessionDep) -> Health:
        """Status, schema revision and device count; 503 when the database does not answer."""
        try:
            count = session.scalar(select(func.count()).select_from(Device)) or 0
            revision = MigrationContext.configure(session.connection()).get_current_revision()
        except SQLAlchemyError as exc:
            raise Unavailable(f"database unavailable: {_first_line(exc)}") from None
        return Health(status="ok", schema_revision=revision, devices=count)

    @app.get("/healthz", response_model=Liveness, tags=["service"], responses=ERROR_RESPONSES)
    def healthz() -> Liveness:
        """The process answers (for a liveness probe: touches nothing else)."""
        return Liveness(status="alive")

    @app.get("/readyz", response_model=Readiness, tags=["service"], responses=unavailable)
    def readyz(session: SessionDep, settings: SettingsDep, runner: RunnerDep) -> Readiness:
        """Ready to serve: the database answers and its schema is the code's, the job queue
        answers, the artifact store can be read and the artifacts folder can take files;
        else 503 naming each that fails."""
        head = head_revision(settings.database_url)
        problems: list[str | None] = []
        revision = None
        try:
            revision = MigrationContext.configure(session.connection()).get_current_revision()
        except SQLAlchemyError as exc:
            problems.append(f"database unavailable: {_first_line(exc)}")
        else:
            if revision != head:
                problems.append(f"database schema is at {revision}, this code needs {head}")
            else:
                problems.append(store_problem(session, settings.artifact_store))
        problems.append(runner.queue.problem())
        problems.append(folder_problem(settings.artifacts_dir, settings.artifacts_min_free_mb))
        if any(problems):
            raise Unavailable("; ".join(p for p in problems if p))
        return Readiness(status="ready", schema_revision=revision)

    return app
