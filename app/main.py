"""The FastAPI application: wiring of settings, database, jobs and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import func, select

import app.measure_service
import app.optimize_service
import app.predictor_service
import app.reference_import  # noqa: F401  (registers the import-reference job kind)
from app.db import check_schema, current_revision, session_factory
from app.deps import ReadAccess, SessionDep, SettingsDep
from app.errors import ERROR_RESPONSES, install_error_handlers
from app.jobs import JobRunner, mark_stale_jobs
from app.limits import BodySizeLimit
from app.models import Device
from app.routers import dashboard, devices, jobs, measurements, optimize, predictors, tasks
from app.schemas import Health
from app.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service; refuses to start when the database schema is behind."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_dirs()
        check_schema(settings.database_url)
        factory = session_factory(settings.database_url)
        mark_stale_jobs(factory, settings.job_stale_after_s)
        app.state.settings = settings
        app.state.session_factory = factory
        app.state.runner = JobRunner(
            factory, settings.job_workers, settings.job_heartbeat_s, settings.artifacts_dir
        )
        try:
            yield
        finally:
            app.state.runner.shutdown()

    app = FastAPI(
        title="EdgeOpt",
        version="0.1.0",
        summary="Device registry, cross-device predictors and hardware-aware network design",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    for module in (devices, measurements, jobs, predictors, tasks, optimize, dashboard):
        app.include_router(module.router)

    @app.get(
        "/health",
        response_model=Health,
        tags=["service"],
        responses=ERROR_RESPONSES,
        dependencies=[ReadAccess],
    )
    def health(session: SessionDep, settings: SettingsDep) -> Health:
        count = session.scalar(select(func.count()).select_from(Device)) or 0
        return Health(
            status="ok", schema_revision=current_revision(settings.database_url), devices=count
        )

    return app
