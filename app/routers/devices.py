"""Device registry: CRUD, filtering, and bulk measurement upload per device."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic.json_schema import models_json_schema
from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from app.db import commit
from app.deps import (
    DeviceRef,
    Limit,
    Offset,
    ReadAccess,
    SessionDep,
    SettingsDep,
    WriteAccess,
)
from app.domain_errors import Conflict, InvalidInput
from app.errors import ERROR_RESPONSES, error_responses
from app.models import Device, Measurement
from app.queries import MeasurementFilters, find_device, list_measurements, measurement_counts
from app.read_cache import next_measurements as remembered_next
from app.repository import AlreadyStored, MeasurementRow, architecture_ids, upsert_measurements
from app.schemas import (
    DeviceCreate,
    DeviceDetail,
    DeviceRead,
    DeviceUpdate,
    MeasurementIn,
    MeasurementRead,
    NextMeasurements,
    Page,
    UploadResult,
)
from app.uploads import CSV_COLUMNS, parse_upload
from devices.profile import DeviceKind, Metric, Precision, canonical_policy

router = APIRouter(prefix="/devices", tags=["devices"], responses=ERROR_RESPONSES)


def _name_free(session: Session, name: str) -> None:
    if session.scalar(select(Device.id).where(Device.name == name)) is not None:
        raise Conflict(
            f"a device named {name!r} already exists",
            [{"field": "name", "message": "already taken"}],
        )


@router.post("", status_code=201, response_model=DeviceRead, dependencies=[WriteAccess])
def create_device(body: DeviceCreate, session: SessionDep) -> Device:
    """Register a device (a measurement setting). 409 when the name is taken."""
    _name_free(session, body.name)
    device = Device(**body.model_dump(mode="json"))
    session.add(device)
    commit(session)
    return device


@router.get("", response_model=Page[DeviceRead], dependencies=[ReadAccess])
def list_devices(
    session: SessionDep,
    kind: DeviceKind | None = None,
    runtime: str | None = None,
    precision: Precision | None = None,
    batch_size: Annotated[int | None, Query(ge=1, le=65_536)] = None,
    q: Annotated[str | None, Query(max_length=120, description="name contains")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[DeviceRead]:
    """List devices, filtered by kind, runtime, precision, batch size or part of the name."""
    query: Select[tuple[Device]] = select(Device)
    if kind:
        query = query.where(Device.kind == kind.value)
    if runtime:
        query = query.where(Device.runtime == runtime)
    if precision:
        query = query.where(Device.precision == precision.value)
    if batch_size:
        query = query.where(Device.batch_size == batch_size)
    if q:
        query = query.where(Device.name.contains(q, autoescape=True))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(Device.name).limit(limit).offset(offset)).all()
    return Page(
        items=[DeviceRead.model_validate(d) for d in items], total=total, limit=limit, offset=offset
    )


@router.get("/{device}", response_model=DeviceDetail, dependencies=[ReadAccess])
def read_device(device: DeviceRef, session: SessionDep) -> DeviceDetail:
    """A device's profile and how many measurements it has per space, policy and metric."""
    found = find_device(session, device)
    return DeviceDetail(
        **DeviceRead.model_validate(found).model_dump(),
        measurements=measurement_counts(session, found.id),
    )


@router.patch("/{device}", response_model=DeviceRead, dependencies=[WriteAccess])
def update_device(device: DeviceRef, body: DeviceUpdate, session: SessionDep) -> Device:
    found = find_device(session, device)
    if body.name is not None and body.name != found.name:
        _name_free(session, body.name)
    for field, value in body.model_dump(mode="json", exclude_unset=True).items():
        if value is None and field in ("name", "kind", "specs"):
            raise InvalidInput(f"{field} cannot be null", [{"field": field, "message": "null"}])
        setattr(found, field, value)
    commit(session)
    return found


@router.delete("/{device}", status_code=204, dependencies=[WriteAccess])
def delete_device(device: DeviceRef, session: SessionDep) -> Response:
    """Delete a device and its measurements."""
    found = find_device(session, device)
    session.execute(delete(Measurement).where(Measurement.device_id == found.id))
    session.delete(found)
    commit(session)
    return Response(status_code=204)


def upload_schemas() -> dict[str, Any]:
    """The models the upload body below refers to, for the OpenAPI components: no route
    takes them as its body, so FastAPI leaves them out and ReDoc stops at the reference."""
    _, schema = models_json_schema(
        [(MeasurementIn, "validation")], ref_template="#/components/schemas/{model}"
    )
    return dict(schema["$defs"])


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "measurements": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/MeasurementIn"},
                        }
                    },
                }
            },
            "text/csv": {
                "schema": {"type": "string", "description": f"header: {','.join(CSV_COLUMNS)}"}
            },
        },
    }
}


@router.post(
    "/{device}/measurements",
    status_code=201,
    response_model=UploadResult,
    dependencies=[WriteAccess],
    responses=error_responses(415),  # a body neither JSON nor CSV
    openapi_extra=_UPLOAD_BODY,
)
async def upload_measurements(
    device: DeviceRef,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    replace: Annotated[bool, Query(description="replace stored values of the same design")] = False,
) -> UploadResult:
    """Bulk upload, JSON or CSV. All-or-nothing: one bad row rejects the whole request."""
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    return await run_in_threadpool(
        _store_upload, session, device, body, content_type, settings.max_upload_rows, replace
    )


def _store_upload(
    session: Session, ref: str, body: bytes, content_type: str, max_rows: int, replace: bool
) -> UploadResult:
    device = find_device(session, ref)
    rows = parse_upload(body, content_type, max_rows)
    arch_ids = architecture_ids(session, {(r.space, r.arch) for r in rows})
    values = [
        MeasurementRow(
            architecture_id=arch_ids[(r.space, r.arch)],
            policy=r.policy,
            metric=r.metric.value,
            value=r.value,
            repeats=r.repeats,
            dispersion=r.dispersion,
            protocol=r.protocol,
        )
        for r in rows
    ]
    try:
        stored = upsert_measurements(session, device.id, values, "upload", replace=replace)
    except AlreadyStored as exc:
        raise AlreadyStored(f"{exc.message}; send replace=true to overwrite", exc.details) from None
    commit(session)
    return UploadResult(device_id=device.id, inserted=stored.inserted, replaced=stored.replaced)


@router.get(
    "/{device}/measurements", response_model=Page[MeasurementRead], dependencies=[ReadAccess]
)
def device_measurements(
    device: DeviceRef,
    session: SessionDep,
    space: str | None = None,
    policy: str | None = None,
    metric: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[MeasurementRead]:
    device_id = find_device(session, device).id
    filters = MeasurementFilters(device_id=device_id, space=space, policy=policy, metric=metric)
    return list_measurements(session, filters, limit, offset)


@router.get(
    "/{device}/next-measurements", response_model=NextMeasurements, dependencies=[ReadAccess]
)
def next_measurements(
    device: DeviceRef,
    session: SessionDep,
    settings: SettingsDep,
    space: Annotated[str, Query(pattern="^(nb201|fbnet|ofa_mbv3)$")],
    metric: Metric = Metric.LATENCY_MS,
    policy: Annotated[str, Query(max_length=400)] = "fp32",
    count: Annotated[int, Query(ge=1, le=50)] = 10,
) -> NextMeasurements:
    """The designs to measure next on a device answered by few-shot transfer (remembered
    until the registry's measurements, devices or predictors change)."""
    try:
        policy = canonical_policy(policy)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    found = find_device(session, device)
    return NextMeasurements.model_validate(
        remembered_next(session, settings.artifacts_dir, found, space, metric.value, policy, count)
    )
