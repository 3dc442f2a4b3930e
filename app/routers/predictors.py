"""Predictors over REST: train (a job), list, inspect quality, predict."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from app.deps import (
    FactoryDep,
    IdFilter,
    Limit,
    Offset,
    ReadAccess,
    ResourceId,
    RunnerDep,
    SessionDep,
    SettingsDep,
    WriteAccess,
)
from app.domain_errors import InvalidInput, NotFound
from app.errors import ERROR_RESPONSES
from app.models import Job, Predictor
from app.observability import count_predictions
from app.plausibility import mark_predictions
from app.predict_service import predict_designs
from app.queries import find_device, get_job
from app.schemas import (
    JobRead,
    Page,
    PredictorRead,
    PredictorTrain,
    PredictRequest,
    PredictResponse,
)
from devices.profile import canonical_policy

router = APIRouter(tags=["predictors"], responses=ERROR_RESPONSES)


@router.post(
    "/predictors/train", status_code=202, response_model=JobRead, dependencies=[WriteAccess]
)
def train(body: PredictorTrain, factory: FactoryDep, runner: RunnerDep) -> Job:
    """Start a ``train-predictors`` job; follow it at ``/jobs/{id}``."""
    params = body.model_dump(exclude_none=True)
    job_id = runner.submit("train-predictors", params)
    with factory() as session:
        return get_job(session, job_id)


@router.get("/predictors", response_model=Page[PredictorRead], dependencies=[ReadAccess])
def list_predictors(
    session: SessionDep,
    space: Annotated[str | None, Query(max_length=32)] = None,
    target: Annotated[str | None, Query(max_length=16)] = None,
    device_id: IdFilter = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[PredictorRead]:
    """Newest first, every version (the quality history of a scope is its versions)."""
    query = select(Predictor)
    if space:
        query = query.where(Predictor.space == space)
    if target:
        query = query.where(Predictor.target == target)
    if device_id:
        query = query.where(Predictor.device_id == device_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Predictor.id.desc()).limit(limit).offset(offset)).all()
    return Page(
        items=[PredictorRead.model_validate(p) for p in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/predictors/{predictor_id}", response_model=PredictorRead, dependencies=[ReadAccess])
def read_predictor(predictor_id: ResourceId, session: SessionDep) -> Predictor:
    predictor = session.get(Predictor, predictor_id)
    if predictor is None:
        raise NotFound(f"no predictor with id {predictor_id}")
    return predictor


@router.post("/predict", response_model=PredictResponse, dependencies=[ReadAccess])
def predict(body: PredictRequest, factory: FactoryDep, settings: SettingsDep) -> dict[str, Any]:
    """Accuracy, latency and energy of designs on a device, each with an interval.

    Read-only: it runs in its own read session, so a long prediction holds no write lock.
    """
    try:
        policy = canonical_policy(body.policy)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    with factory() as session:
        device = find_device(session, body.device)
        answer = predict_designs(
            session, settings.artifacts_dir, device, body.space, policy, body.designs
        )
        mark_predictions(session, settings.artifacts_dir, device, body.space, policy, answer)
    count_predictions("/predict", len(answer["designs"]))
    return answer
