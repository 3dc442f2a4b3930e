"""Registry-wide reads: measurements and accuracy records, filtered and paginated."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.db import commit
from app.deps import IdFilter, Limit, Offset, ReadAccess, SessionDep, WriteAccess
from app.domain_errors import InvalidInput
from app.errors import ERROR_RESPONSES
from app.queries import MeasurementFilters, list_accuracy, list_measurements
from app.repository import AccuracyRow, upsert_accuracy
from app.schemas import AccuracyRead, AccuracyUpload, AccuracyUploadResult, MeasurementRead, Page
from devices.profile import Metric, canonical_policy
from search.policy import NETWORK_SPACES, parse_policy
from search.spaces import InvalidEncoding, get_space

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


@router.post(
    "/accuracy-records",
    status_code=201,
    response_model=AccuracyUploadResult,
    dependencies=[WriteAccess],
)
def upload_accuracy(body: AccuracyUpload, session: SessionDep) -> AccuracyUploadResult:
    """Measured accuracies, e.g. of quantized designs on the user's own dataset: they answer
    for those designs, and train that dataset's models (accuracy, accuracy change) in place
    of another dataset's. All-or-nothing."""
    rows = []
    for i, r in enumerate(body.records):
        try:
            arch = get_space(r.space).canonical(r.arch)
            if r.space in NETWORK_SPACES:
                parse_policy(r.space, r.policy)
            policy = canonical_policy(r.policy)
        except (InvalidEncoding, ValueError) as exc:
            raise InvalidInput(f"records[{i}]: {exc}") from None
        if r.space not in NETWORK_SPACES and policy != "fp32":
            raise InvalidInput(f"records[{i}]: {r.space} has no quantization units: use fp32")
        rows.append(AccuracyRow(r.space, arch, r.dataset, policy, r.top1, r.source))
    stored = upsert_accuracy(session, rows, body.replace)
    commit(session)
    return AccuracyUploadResult(inserted=stored.inserted, replaced=stored.replaced)
