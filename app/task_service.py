"""Measurement tasks for agents: queue, lease, serve the model, accept results exactly once.

A task moves ``queued -> leased -> done``. A lease lasts ``lease_s``; when its agent
disappears the lease expires and the next lease call hands the task out again. A result
is accepted from the leaseholder, or from anyone once the lease has expired (the original
agent may come back after a network outage with a valid measurement). The first result
accepted is the task's: the agent that posted it posting it again (it re-posts after a crash)
is acknowledged without storing anything, any other result for it is refused (409), so no
task's measurement is ever stored twice. The leaseholder is the agent's name together with
the stored API key it leased with (``lease_key_id``; none for a bootstrap key), so another
key cannot take over a lease by sending the same agent name.

Both hold with many agents at once. A lease locks the tasks it hands out (``SELECT ... FOR
UPDATE SKIP LOCKED`` on PostgreSQL: concurrent leases take different tasks and do not wait
for each other; SQLite serialises writers), and a result is accepted by one conditional
``UPDATE`` that only a leaseholder's result for a task not yet done passes, once.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import tempfile
import time
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from app.artifact_store import local_path, share
from app.domain_errors import Conflict, InvalidInput, MissingArtifact, NotFound
from app.models import Architecture, Device, Measurement, MeasurementTask, utcnow
from app.repository import Timed, architecture_id, latency_row, upsert_measurements
from devices.profile import Metric, canonical_policy
from search.policy import UnsupportedPolicy, parse_policy
from search.spaces import InvalidEncoding, get_space

FINGERPRINT_PRIORITY, DEFAULT_PRIORITY = 0, 1

log = logging.getLogger(__name__)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything stored here is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def queue_tasks(
    session: Session,
    device: Device,
    space: str,
    designs: list[str],
    policies: list[str],
    priority: int = DEFAULT_PRIORITY,
) -> dict[str, int]:
    """Queue each design x policy once per device (a failed task is queued again)."""
    codec = get_space(space)
    keys = []
    for i, design in enumerate(designs):
        try:
            encoding = codec.canonical(design)
        except InvalidEncoding as exc:
            raise InvalidInput(f"designs[{i}]: {exc}") from None
        for policy in policies:
            try:
                parse_policy(space, policy)
                keys.append((encoding, canonical_policy(policy)))
            except (UnsupportedPolicy, ValueError) as exc:
                raise InvalidInput(f"policy {policy!r}: {exc}") from None
    created = existing = 0
    for encoding, policy in dict.fromkeys(keys):
        arch_id = architecture_id(session, space, encoding)
        task = session.scalar(
            select(MeasurementTask).where(
                MeasurementTask.device_id == device.id,
                MeasurementTask.architecture_id == arch_id,
                MeasurementTask.policy == policy,
            )
        )
        if task is None:
            session.add(
                MeasurementTask(
                    device_id=device.id,
                    architecture_id=arch_id,
                    policy=policy,
                    priority=priority,
                    status="queued",
                    attempts=0,
                )
            )
            created += 1
        elif task.status == "failed":
            task.status, task.error, task.lease_owner = "queued", None, None
            task.lease_key_id = None
            created += 1
        else:
            existing += 1
    session.flush()
    return {"created": created, "existing": existing}


def _same_key(key_id: int | None) -> ColumnElement[bool]:
    if key_id is None:
        return MeasurementTask.lease_key_id.is_(None)
    return MeasurementTask.lease_key_id == key_id


def lease_tasks(
    session: Session,
    device: Device,
    agent: str,
    limit: int,
    lease_s: float,
    key_id: int | None = None,
) -> list[MeasurementTask]:
    """Hand out up to ``limit`` tasks: queued ones, leased ones whose lease expired, and the
    ones this agent (same name, same key) holds already."""
    now = utcnow()
    candidates = session.scalars(
        select(MeasurementTask)
        .where(
            MeasurementTask.device_id == device.id,
            or_(
                MeasurementTask.status == "queued",
                (MeasurementTask.status == "leased") & (MeasurementTask.lease_expires_at < now),
                (MeasurementTask.status == "leased")
                & (MeasurementTask.lease_owner == agent)
                & _same_key(key_id),
            ),
        )
        .order_by(MeasurementTask.priority, MeasurementTask.id)
        .limit(limit)
        # a task another lease is handing out is skipped, not waited for; PostgreSQL checks
        # the conditions again on a row changed since this statement began
        .with_for_update(skip_locked=True)
    ).all()
    for task in candidates:
        task.status, task.lease_owner, task.lease_key_id = "leased", agent, key_id
        task.lease_expires_at = now + timedelta(seconds=lease_s)
        task.attempts += 1
    session.flush()
    return list(candidates)


def task_view(session: Session, task: MeasurementTask) -> dict[str, Any]:
    arch = session.get(Architecture, task.architecture_id)
    assert arch is not None
    return {
        "id": task.id,
        "device_id": task.device_id,
        "space": arch.space,
        "design": arch.encoding,
        "policy": task.policy,
        "status": task.status,
        "priority": task.priority,
        "attempts": task.attempts,
        "lease_owner": task.lease_owner,
        "lease_expires_at": _aware(task.lease_expires_at),
        "measurement_id": task.measurement_id,
        "model_url": f"/tasks/{task.id}/model.onnx",
    }


def get_task(session: Session, task_id: int) -> MeasurementTask:
    task = session.get(MeasurementTask, task_id)
    if task is None:
        raise NotFound(f"no measurement task with id {task_id}")
    return task


def _may_post(agent: str, key_id: int | None, now: datetime) -> ColumnElement[bool]:
    """A result may be stored: the task is not done, was leased at least once, and its lease
    is this agent's (same name, same key) or has ended."""
    task = MeasurementTask
    return or_(
        and_(
            task.status == "leased",
            or_(
                task.lease_expires_at.is_(None),
                task.lease_expires_at <= now,
                (task.lease_owner == agent) & _same_key(key_id),
            ),
        ),
        (task.status == "queued") & (task.attempts > 0),
        task.status == "failed",
    )


def accept_result(
    session: Session,
    task: MeasurementTask,
    agent: str,
    result: Timed,
    key_id: int | None = None,
) -> dict[str, Any]:
    """Store an agent's measurement once; its repeat is acknowledged, not stored.

    The task is claimed by a conditional UPDATE before anything is stored: of two results
    posted at once, the second waits for the first's transaction, then finds the task done
    and stores nothing.
    """
    now = utcnow()
    claimed = session.scalar(
        update(MeasurementTask)
        .where(MeasurementTask.id == task.id, _may_post(agent, key_id, now))
        .values(status="done", finished_at=now, lease_owner=agent, lease_key_id=key_id)
        .returning(MeasurementTask.id)
        .execution_options(synchronize_session=False)
    )
    session.refresh(task)  # as stored now: by this UPDATE, or by whoever won
    if claimed is None:
        return _refused(task, agent, key_id, now)
    row = latency_row(task.architecture_id, task.policy, result)
    upsert_measurements(session, task.device_id, [row], "agent")
    task.measurement_id = session.scalar(
        select(Measurement.id).where(
            Measurement.device_id == task.device_id,
            Measurement.architecture_id == task.architecture_id,
            Measurement.policy == task.policy,
            Measurement.metric == Metric.LATENCY_MS.value,
        )
    )
    return {"task_id": task.id, "measurement_id": task.measurement_id, "duplicate": False}


def _refused(
    task: MeasurementTask, agent: str, key_id: int | None, now: datetime
) -> dict[str, Any]:
    """Why a result was not stored: its repeat is acknowledged, anything else is 409."""
    if task.status == "done":
        if task.lease_owner == agent and task.lease_key_id == key_id:
            return {"task_id": task.id, "measurement_id": task.measurement_id, "duplicate": True}
        raise Conflict(
            f"task {task.id} already has its result (measurement {task.measurement_id}), "
            "from another agent or API key; nothing was stored"
        )
    expires = _aware(task.lease_expires_at)
    if task.status == "leased" and expires and expires > now:
        if task.lease_owner != agent:
            raise Conflict(f"task {task.id} is leased to another agent until {expires}")
        raise Conflict(f"task {task.id} was leased with another API key, until {expires}")
    if task.status == "queued" and task.attempts == 0:
        raise Conflict(f"task {task.id} was never leased; lease it first")
    raise Conflict(f"task {task.id} changed while its result was posted; post it again")


# Every download of a design's model says its weights are random: it times the design on a
# device (latency does not depend on weights) and predicts nothing (edgeopt train does that).
UNTRAINED_HEADERS = {"X-EdgeOpt-Weights": "untrained"}


def model_file(artifacts_dir: Path, space: str, design: str, policy: str) -> Path:
    """The design's ONNX file in the policy, exported once and cached under the artifacts.

    A first export takes seconds: requests for the same model meanwhile (in this process
    or another on the same folder) wait on a lock file beside it and then serve the file
    the first wrote, rather than export it again. With the database store, a model exported
    on another machine is fetched from it rather than exported again.
    """
    # "probe": files are labelled as untrained; those cached before the label are not reused
    key = hashlib.sha256(f"{space}\n{design}\n{policy}\nprobe".encode()).hexdigest()[:24]
    name = f"models/{space}/{key}.onnx"
    path = artifacts_dir / name
    with suppress(MissingArtifact):  # recorded, and in no folder nor the store: export again
        path = local_path(artifacts_dir, name)
    if path.is_file():
        return path
    # torch loads on first export, not at startup
    from search.deploy import PROBE, WEIGHTS_KEY, label
    from search.export import export_design

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        # flock: exclusive between open files, so between threads as between processes
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():  # exported while this request waited
            return path
        started = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                exported = export_design(space, design, policy, Path(tmp) / "m.onnx")
                label(exported.path, {WEIGHTS_KEY: PROBE})
                os.replace(exported.path, path)  # atomic: readers see all or nothing
            share(artifacts_dir, name)
        except OSError as exc:  # a full or read-only disk: say where (the exporter does not)
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, str(path.parent)) from exc
            raise
        log.info(
            "exported %s design %s in policy %s (%.1f s)",
            space,
            design,
            policy,
            time.perf_counter() - started,
        )
    return path
