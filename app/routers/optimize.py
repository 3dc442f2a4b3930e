"""/optimize and its records: answer, list, inspect, download the model, verify."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse
from sqlalchemy import func, select

from app.db import commit
from app.deps import (
    Limit,
    Offset,
    ReadAccess,
    ResourceId,
    RunnerDep,
    SessionDep,
    SettingsDep,
    WriteAccess,
)
from app.errors import ERROR_RESPONSES, ApiError
from app.models import Optimization
from app.optimize_service import (
    optimization_view,
    optimize,
    refresh_verification,
    start_verification,
)
from app.schemas import OptimizeRequest, Page
from app.task_service import model_file
from devices.fingerprint import fingerprint

router = APIRouter(tags=["optimize"], responses=ERROR_RESPONSES)


def _get(session, optimization_id: int) -> Optimization:  # type: ignore[no-untyped-def]
    record = session.get(Optimization, optimization_id)
    if record is None:
        raise ApiError(404, f"no optimization with id {optimization_id}")
    return record


@router.post("/optimize", status_code=201, dependencies=[WriteAccess])
def optimize_design(
    body: OptimizeRequest, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """The best design for a device within its goals, with predictions, odds and Pareto front.

    Stored as an optimization record; ``model_url`` downloads the design as ONNX.
    """
    record = optimize(session, settings.artifacts_dir, body, settings.optuna_storage)
    commit(session)
    return optimization_view(record)


@router.get("/optimizations", dependencies=[ReadAccess])
def list_optimizations(session: SessionDep, limit: Limit = 50, offset: Offset = 0) -> Page[dict]:
    total = session.scalar(select(func.count()).select_from(Optimization)) or 0
    rows = session.scalars(
        select(Optimization).order_by(Optimization.id.desc()).limit(limit).offset(offset)
    ).all()
    items = [
        {k: v for k, v in optimization_view(r).items() if k not in ("pareto", "answered_by")}
        for r in rows
    ]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/optimizations/{optimization_id}", dependencies=[ReadAccess])
def read_optimization(optimization_id: ResourceId, session: SessionDep) -> dict[str, Any]:
    record = _get(session, optimization_id)
    refresh_verification(session, record)
    return optimization_view(record)


@router.get("/optimizations/{optimization_id}/model.onnx", dependencies=[ReadAccess])
def optimization_model(
    optimization_id: ResourceId, session: SessionDep, settings: SettingsDep
) -> FileResponse:
    """The chosen design as an ONNX model in its policy (quantized where it says int8)."""
    record = _get(session, optimization_id)
    path = model_file(settings.artifacts_dir, record.space, record.design, record.policy)
    return FileResponse(
        path, media_type="application/octet-stream", filename=f"edgeopt-{optimization_id}.onnx"
    )


@router.post("/optimizations/{optimization_id}/verify", status_code=202, dependencies=[WriteAccess])
def verify(optimization_id: ResourceId, session: SessionDep, runner: RunnerDep) -> dict[str, Any]:
    """Measure the chosen design on the device: a job on this host, a task for an agent."""
    record = _get(session, optimization_id)
    verification = start_verification(session, record, runner)
    commit(session)
    return verification


@router.get("/spaces/{space}/fingerprint", dependencies=[ReadAccess])
def space_fingerprint(space: str) -> dict[str, Any]:
    """The designs a new device should measure first (send them back in ``profile``)."""
    try:
        return {"space": space, "designs": fingerprint(space)}
    except ValueError as exc:
        raise ApiError(404, str(exc)) from None
