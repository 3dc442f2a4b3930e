"""/optimize and its records: answer, list, inspect, download the model, verify."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.dashboard_schemas import Fingerprint
from app.db import commit, unit_of_work
from app.deps import (
    FactoryDep,
    Limit,
    Offset,
    ReadAccess,
    ResourceId,
    RunnerDep,
    SessionDep,
    SettingsDep,
    WriteAccess,
)
from app.domain_errors import Conflict, NotFound
from app.errors import ERROR_RESPONSES, ONNX_FILE
from app.models import Optimization
from app.observability import count_predictions
from app.optimize_schemas import (
    OptimizationSummary,
    OptimizeAnswer,
    OptimizeJob,
    VerificationView,
)
from app.optimize_service import answer_optimization, optimization_view
from app.refine_service import refine_job
from app.schemas import OptimizeRequest, Page
from app.task_service import UNTRAINED_HEADERS, model_file
from app.verify_service import refresh_verification, start_verification
from devices.fingerprint import fingerprint

router = APIRouter(tags=["optimize"], responses=ERROR_RESPONSES)


def _get(session: Session, optimization_id: int) -> Optimization:
    record = session.get(Optimization, optimization_id)
    if record is None:
        raise NotFound(f"no optimization with id {optimization_id}")
    return record


@router.post(
    "/optimize",
    status_code=201,
    dependencies=[WriteAccess],
    response_model=OptimizeAnswer,
    responses={202: {"model": OptimizeJob, "description": "measure-and-refine job started"}},
)
def optimize_design(
    body: OptimizeRequest, factory: FactoryDep, settings: SettingsDep, runner: RunnerDep
) -> OptimizeAnswer | JSONResponse:
    """The best design for a device within its goals, with predictions, odds and Pareto front.

    Stored as an optimization record; ``model_url`` downloads the design as ONNX. With
    ``max_measurements`` > 0 the device measures designs first (this host or its agent): the
    answer is then a job (202) whose result names the optimization once it is done.

    The answer is computed in a read session and stored in a transaction of its own: on
    SQLite the write lock is held for the insert only, not for the search (which would make
    every other writer wait for it).
    """
    if body.max_measurements:
        with factory() as session:
            kind, params = refine_job(session, body, settings.measure_budget_s)
        job_id = runner.submit(kind, params)
        job = OptimizeJob(
            job_id=job_id,
            status="queued",
            job_url=f"/jobs/{job_id}",
            max_measurements=body.max_measurements,
            message=f"measuring up to {body.max_measurements} designs on the device",
        )
        return JSONResponse(job.model_dump(mode="json"), status_code=202)
    with factory() as session:
        record = answer_optimization(session, settings.artifacts_dir, body, settings.optuna_storage)
    with unit_of_work(factory) as session:
        session.add(record)
    count_predictions("/optimize", int(record.result.get("candidates", 0)))
    return OptimizeAnswer.model_validate(optimization_view(record))


@router.get("/optimizations", dependencies=[ReadAccess])
def list_optimizations(
    session: SessionDep, limit: Limit = 50, offset: Offset = 0
) -> Page[OptimizationSummary]:
    total = session.scalar(select(func.count()).select_from(Optimization)) or 0
    rows = session.scalars(
        select(Optimization).order_by(Optimization.id.desc()).limit(limit).offset(offset)
    ).all()
    for record in rows:  # an agent's finished verification shows here too, a miss included
        refresh_verification(session, record)
    items = [OptimizationSummary.model_validate(optimization_view(r)) for r in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/optimizations/{optimization_id}", dependencies=[ReadAccess])
def read_optimization(optimization_id: ResourceId, session: SessionDep) -> OptimizeAnswer:
    record = _get(session, optimization_id)
    refresh_verification(session, record)
    return OptimizeAnswer.model_validate(optimization_view(record))


@router.get(
    "/optimizations/{optimization_id}/model.onnx",
    dependencies=[ReadAccess],
    response_class=FileResponse,
    responses=ONNX_FILE,
)
def optimization_model(
    optimization_id: ResourceId, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    """The chosen design as an ONNX model in its policy (quantized where it says int8)."""
    record = _get(session, optimization_id)
    if record.design is None or record.policy is None:
        raise Conflict(f"optimization {optimization_id} chose no design: nothing met the goals")
    path = model_file(settings.artifacts_dir, record.space, record.design, record.policy)
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"edgeopt-{optimization_id}.onnx",
        headers=UNTRAINED_HEADERS,
    )


@router.post("/optimizations/{optimization_id}/verify", status_code=202, dependencies=[WriteAccess])
def verify(
    optimization_id: ResourceId, session: SessionDep, runner: RunnerDep, settings: SettingsDep
) -> VerificationView:
    """Measure the chosen design on the device: a job on this host, a task for an agent.

    Refused (409) for a device nothing can measure on: a reference device, other hardware.
    """
    record = _get(session, optimization_id)
    job = start_verification(session, record, settings.measure_budget_s)
    commit(session)
    if job is not None:  # on this host: a job, submitted once the session is committed
        job_id = runner.submit(*job)
        record = _get(session, optimization_id)
        record.verification = {"status": "running", "job_id": job_id, "where": "host"}
        commit(session)
    return VerificationView.model_validate(record.verification or {})


@router.get("/spaces/{space}/fingerprint", dependencies=[ReadAccess])
def space_fingerprint(space: str) -> Fingerprint:
    """The designs a new device should measure first (send them back in ``profile``)."""
    try:
        return Fingerprint(space=space, designs=fingerprint(space))
    except ValueError as exc:
        raise NotFound(str(exc)) from None
