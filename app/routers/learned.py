"""The learned optimizer over REST: train it (a job), list it, and a device's whole front."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import func, select

from app.deps import (
    FactoryDep,
    Limit,
    Offset,
    ReadAccess,
    ReadSessionDep,
    ResourceId,
    RunnerDep,
    SessionDep,
    SettingsDep,
    WriteAccess,
)
from app.domain_errors import NotFound
from app.errors import ERROR_RESPONSES
from app.front_service import front
from app.learned_service import TrainOptimizerParams, check_trainable
from app.models import Job
from app.models import LearnedOptimizer as LearnedRow
from app.optimize_schemas import FrontAnswer, LearnedOptimizerView
from app.queries import get_job
from app.schemas import FrontRequest, JobRead, Page

router = APIRouter(tags=["optimize"], responses=ERROR_RESPONSES)


@router.post(
    "/optimizers/train", status_code=202, response_model=JobRead, dependencies=[WriteAccess]
)
def train_optimizer(body: TrainOptimizerParams, factory: FactoryDep, runner: RunnerDep) -> Job:
    """Start a ``train-optimizer`` job (the learned optimizer of a space and dataset)."""
    check_trainable(body)
    job_id = runner.submit("train-optimizer", body.model_dump())
    with factory() as session:
        return get_job(session, job_id)


@router.get("/optimizers", response_model=Page[LearnedOptimizerView], dependencies=[ReadAccess])
def list_optimizers(
    session: SessionDep, limit: Limit = 100, offset: Offset = 0
) -> Page[LearnedOptimizerView]:
    """Every trained learned optimizer, newest first, with its quality figures."""
    total = session.scalar(select(func.count()).select_from(LearnedRow)) or 0
    rows = session.scalars(
        select(LearnedRow).order_by(LearnedRow.id.desc()).limit(limit).offset(offset)
    ).all()
    return Page(
        items=[LearnedOptimizerView.model_validate(r) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/optimizers/{optimizer_id}", response_model=LearnedOptimizerView, dependencies=[ReadAccess]
)
def read_optimizer(optimizer_id: ResourceId, session: SessionDep) -> LearnedRow:
    row = session.get(LearnedRow, optimizer_id)
    if row is None:
        raise NotFound(f"no learned optimizer with id {optimizer_id}")
    return row


@router.post("/optimize/front", response_model=FrontAnswer, dependencies=[ReadAccess])
def optimize_front(
    body: FrontRequest, session: ReadSessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """The best design at each latency budget (up to 50), in one call; stores nothing."""
    return front(session, settings.artifacts_dir, body)
