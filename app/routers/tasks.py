"""Agents over REST: register a device, lease measurement tasks, fetch models, post results."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import FileResponse
from sqlalchemy import func, select

from app.dashboard_schemas import TasksQueued
from app.db import commit
from app.deps import (
    AgentKey,
    DeviceRef,
    Limit,
    Offset,
    ReadAccess,
    ResourceId,
    SessionDep,
    SettingsDep,
    WriteAccess,
)
from app.errors import ERROR_RESPONSES, ONNX_FILE
from app.keys import require_device
from app.models import Architecture, Device, MeasurementTask
from app.queries import find_device
from app.repository import insert_new
from app.schemas import (
    NAME_PATTERN,
    AgentProfile,
    DeviceRead,
    LeaseRequest,
    Page,
    TaskAck,
    TaskQueue,
    TaskRead,
    TaskResult,
)
from app.task_service import (
    FINGERPRINT_PRIORITY,
    UNTRAINED_HEADERS,
    accept_result,
    get_task,
    lease_tasks,
    model_file,
    queue_tasks,
    task_view,
)
from devices.fingerprint import fingerprint

router = APIRouter(tags=["agents"], responses=ERROR_RESPONSES)
DeviceName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=120)]


@router.put("/agents/{name}", response_model=DeviceRead)
def register_agent_device(
    name: DeviceName, body: AgentProfile, session: SessionDep, caller: AgentKey
) -> Device:
    """Create or update the agent's device with its detected specs.

    A new device gets the NB201 fingerprint queued first (highest priority), so its first
    measurements are the ones that say the most about it; when several agents register it
    at once, one creates it and queues that, the others find it. An agent key registers only
    the devices it was created for.
    """
    require_device(caller, name)
    device = session.scalar(select(Device).where(Device.name == name))
    created = False
    if device is None:  # other agents of the device may be registering it at this moment
        new = insert_new(session, Device, ("name",)).values(name=name, kind=body.kind.value)
        created = session.execute(new.returning(Device.id)).first() is not None
        device = session.scalars(select(Device).where(Device.name == name)).one()
    for field, value in body.model_dump(exclude={"kind"}, exclude_none=True).items():
        setattr(device, field, value)
    device.kind = body.kind.value
    device.source = "edgeopt agent"
    session.flush()
    if created:
        queue_tasks(session, device, "nb201", fingerprint("nb201"), ["fp32"], FINGERPRINT_PRIORITY)
    commit(session)
    return device


@router.post("/devices/{device}/tasks", status_code=201, dependencies=[WriteAccess])
def queue(device: DeviceRef, body: TaskQueue, session: SessionDep) -> TasksQueued:
    """Queue designs for the device's agent; designs already queued or done are kept."""
    found = find_device(session, device)
    counts = queue_tasks(session, found, body.space, body.designs, body.policies)
    commit(session)
    return TasksQueued.model_validate(counts)


@router.get("/devices/{device}/tasks", response_model=Page[TaskRead], dependencies=[ReadAccess])
def list_tasks(
    device: DeviceRef,
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[TaskRead]:
    device_id = find_device(session, device).id
    query = select(MeasurementTask).where(MeasurementTask.device_id == device_id)
    if status:
        query = query.where(MeasurementTask.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(MeasurementTask.id).limit(limit).offset(offset)).all()
    items = [TaskRead.model_validate(task_view(session, t)) for t in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.post("/devices/{device}/tasks/lease", response_model=list[TaskRead])
def lease(
    device: DeviceRef, body: LeaseRequest, session: SessionDep, caller: AgentKey
) -> list[dict[str, Any]]:
    """Lease the next tasks (fingerprint first); an empty list means nothing to do now."""
    found = find_device(session, device)
    require_device(caller, found.name)
    tasks = lease_tasks(session, found, body.agent, body.max_tasks, body.lease_s, caller.key_id)
    views = [task_view(session, t) for t in tasks]
    commit(session)
    return views


@router.get(
    "/tasks/{task_id}/model.onnx",
    dependencies=[ReadAccess],
    response_class=FileResponse,
    responses=ONNX_FILE,
)
def task_model(task_id: ResourceId, session: SessionDep, settings: SettingsDep) -> FileResponse:
    """The task's design as an ONNX model in its policy (exported once, then cached)."""
    task = get_task(session, task_id)
    arch = session.get(Architecture, task.architecture_id)
    assert arch is not None
    path = model_file(settings.artifacts_dir, arch.space, arch.encoding, task.policy)
    return FileResponse(
        path,
        media_type="application/octet-stream",
        filename=f"task-{task_id}.onnx",
        headers=UNTRAINED_HEADERS,
    )


@router.post("/tasks/{task_id}/result", response_model=TaskAck)
def post_result(
    task_id: ResourceId, body: TaskResult, session: SessionDep, caller: AgentKey
) -> dict[str, Any]:
    """Store the measurement once; the same agent posting it again is acknowledged (not
    stored twice), any other result for a task already done is 409.

    Only the leaseholder (agent name and key) posts while the lease runs (else 409).
    """
    task = get_task(session, task_id)
    device = session.get(Device, task.device_id)
    assert device is not None
    require_device(caller, device.name)
    ack = accept_result(session, task, body.agent, body, caller.key_id)
    commit(session)
    return ack
