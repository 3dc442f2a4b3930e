"""Jobs over REST: start, list, inspect (with logs), cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import ValidationError
from sqlalchemy import func, select

from app.db import commit
from app.deps import (
    FactoryDep,
    Offset,
    ReadAccess,
    ResourceId,
    RunnerDep,
    SessionDep,
    SettingsDep,
    WriteAccess,
)
from app.domain_errors import Conflict, InvalidInput
from app.errors import ERROR_RESPONSES
from app.jobs import ACTIVE, mark_stale_jobs
from app.models import Job
from app.queries import get_job
from app.schemas import JobCreate, JobDetail, JobRead, Page

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=ERROR_RESPONSES)


@router.post("", status_code=202, response_model=JobRead, dependencies=[WriteAccess])
def start_job(body: JobCreate, factory: FactoryDep, runner: RunnerDep) -> Job:
    """Queue a job, e.g. ``{"kind": "import-reference", "params": {"spaces": ["nb201"]}}``."""
    try:
        job_id = runner.submit(body.kind, body.params)
    except ValidationError as exc:
        details: list[dict[str, object]] = [
            {"field": "params." + ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
            for e in exc.errors()
        ]
        first = details[0]
        raise InvalidInput(
            f"invalid params for {body.kind}: {first['field']}: {first['message']}", details
        ) from exc
    except ValueError as exc:
        raise InvalidInput(str(exc), [{"field": "kind", "message": str(exc)}]) from exc
    with factory() as session:  # not the request's session: it must not hold a lock meanwhile
        return get_job(session, job_id)


@router.get("", response_model=Page[JobRead], dependencies=[ReadAccess])
def list_jobs(
    session: SessionDep,
    factory: FactoryDep,
    settings: SettingsDep,
    status: str | None = None,
    kind: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> Page[JobRead]:
    """Newest first. A job whose worker died is queued again (then ``interrupted``)."""
    mark_stale_jobs(factory, settings.job_stale_after_s, settings.job_max_attempts)
    query = select(Job)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    jobs = session.scalars(query.order_by(Job.id.desc()).limit(limit).offset(offset)).all()
    return Page(
        items=[JobRead.model_validate(j) for j in jobs], total=total, limit=limit, offset=offset
    )


@router.get("/{job_id}", response_model=JobDetail, dependencies=[ReadAccess])
def read_job(
    job_id: ResourceId, session: SessionDep, factory: FactoryDep, settings: SettingsDep
) -> Job:
    mark_stale_jobs(factory, settings.job_stale_after_s, settings.job_max_attempts)
    return get_job(session, job_id)


@router.post("/{job_id}/cancel", response_model=JobRead, dependencies=[WriteAccess])
def cancel_job(job_id: ResourceId, session: SessionDep) -> Job:
    """Ask a queued or running job to stop; it ends as ``cancelled`` at its next check."""
    job = get_job(session, job_id)
    if job.status not in ACTIVE:
        raise Conflict(f"job {job_id} already ended ({job.status})")
    job.cancel_requested = True
    commit(session)
    return job
