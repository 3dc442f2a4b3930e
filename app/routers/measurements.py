"""Registry-wide reads: measurements and accuracy records, filtered and paginated."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import IdFilter, Limit, Offset, ReadAccess, SessionDep
from app.errors import ERROR_RESPONSES
from app.queries import MeasurementFilters, list_accuracy, list_measurements
from app.schemas import AccuracyRead, MeasurementRead, Page
from devices.profile import Metric

router = APIRouter(tags=["measurements"], responses=ERROR_RESPONSES, dependencies=[ReadAccess])


@router.get("/measurements", response_model=Page[MeasurementRead])
def measurements(
    session: SessionDep,
    device_id: IdFilter = None,
    space: str | None = None,
    policy: str | None = None,
    metric: Metric | None = None,
    arch: Annotated[str | None, Query(max_length=2000, description="exact encoding")] = None,
    source: str | None = None,
    min_value: float | None = None,
    max_value: float | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[MeasurementRead]:
    filters = MeasurementFilters(
        device_id=device_id,
        space=space,
        policy=policy,
        metric=metric.value if metric else None,
        arch=arch,
        source=source,
        min_value=min_value,
        max_value=max_value,
    )
    return list_measurements(session, filters, limit, offset)


@router.get("/accuracy-records", response_model=Page[AccuracyRead])
def accuracy_records(
    session: SessionDep,
    space: str | None = None,
    dataset: str | None = None,
    policy: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[AccuracyRead]:
    """Accuracy of designs per dataset, each with its source (benchmark or own measurement)."""
    return list_accuracy(session, space, dataset, policy, limit, offset)
