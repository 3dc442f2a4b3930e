"""Measuring a chosen design on its device: on this host as a job, or as a task for the
device's agent; and how a stored latency is held to a budget (its repeat spread).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import unit_of_work
from app.domain_errors import Conflict, NotFound, NotMeasurable
from app.jobs import JobContext, job_kind
from app.measure_service import HOST_DEVICE_SOURCE, is_this_host
from app.models import Architecture, Device, Measurement, MeasurementTask, Optimization, utcnow
from app.reference_import import REFERENCE_SOURCE
from app.task_service import queue_tasks
from search.optimize import (
    Timing,
    repeat_spread,
)

AGENT_WAIT_S = 900.0  # longest wait for an agent to measure one design


class VerifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    optimization_id: int = Field(ge=1)
    budget_s: float = Field(20.0, gt=0, le=600, description="timing per design on this host")


def is_host_device(device: Device) -> bool:
    """A thread setting of a machine measured by ``edgeopt measure`` (this one or another)."""
    return device.source == HOST_DEVICE_SOURCE and device.threads is not None


def where_measured(session: Session, device: Device) -> str:
    """``host`` (this machine) or ``agent``; NotMeasurable with the reason otherwise.

    A reference device (imported published measurements) has no agent and is not this host:
    nothing could ever measure on it, so a request to do so is refused, not queued forever.
    """
    if is_host_device(device):
        if not is_this_host(device):
            raise NotMeasurable(
                f"device {device.name} was measured on other hardware (hardware id "
                f"{(device.specs or {}).get('hardware_id')}); it cannot be measured from here"
            )
        return "host"
    imported = session.scalar(
        select(Measurement.id)
        .where(Measurement.device_id == device.id, Measurement.source == REFERENCE_SOURCE)
        .limit(1)
    )
    if imported is not None:
        raise NotMeasurable(
            f"device {device.name} holds imported reference measurements; no agent or host "
            "can measure on it. Register the device you own and run `edgeopt agent` there, "
            "or `edgeopt measure` on this host"
        )
    return "agent"


def refresh_verification(session: Session, record: Optimization) -> None:
    """Fill in an agent's measurement once its verification task is done."""
    v = record.verification or {}
    if v.get("status") != "queued" or "task_id" not in v:
        return
    task = session.get(MeasurementTask, v["task_id"])
    if task is None or task.status != "done" or task.measurement_id is None:
        return
    measured = session.get(Measurement, task.measurement_id)
    if measured is not None:
        record.verification = _compared(record, measured.value, {"task_id": task.id})


def _compared(record: Optimization, measured_ms: float, extra: dict[str, Any]) -> dict[str, Any]:
    predicted = record.result["design"]["latency_ms"]
    budget = record.request.get("goals", {}).get("max_latency_ms")
    return {
        **extra,
        "status": "done",
        "measured_latency_ms": measured_ms,
        "predicted_latency_ms": predicted["value"],
        "interval": [predicted["low"], predicted["high"]],
        "within_interval": predicted["low"] <= measured_ms <= predicted["high"],
        "error_pct": 100 * (predicted["value"] - measured_ms) / measured_ms,
        "meets_budget": None if budget is None else measured_ms <= budget,
        "at": utcnow().isoformat(),
    }


def _task_for(session: Session, device: Device, space: str, design: str, policy: str) -> int:
    """Queue (or find) the agent task measuring one design x policy; its id."""
    queue_tasks(session, device, space, [design], [policy], 0)
    task_id = session.scalar(
        select(MeasurementTask.id)
        .join(Architecture)
        .where(
            MeasurementTask.device_id == device.id,
            Architecture.space == space,
            Architecture.encoding == design,
            MeasurementTask.policy == policy,
        )
    )
    assert task_id is not None
    return int(task_id)


def start_verification(
    session: Session, record: Optimization, budget_s: float = 20.0
) -> tuple[str, dict[str, Any]] | None:
    """Measure the chosen design on its device: a task for the device's agent (queued here),
    or, on this host, the job to submit (returned: the caller submits it once its own
    transaction is committed, so the job's row is visible to the worker that runs it)."""
    if record.device_id is None:
        raise Conflict("an inline profile has no registered device to verify on")
    if record.design is None or record.policy is None:
        raise Conflict("this optimization chose no design (nothing met the goals)")
    device = session.get(Device, record.device_id)
    if device is None:
        raise NotFound(f"the device of optimization {record.id} was removed")
    if where_measured(session, device) == "host":
        return "verify-optimization", {"optimization_id": record.id, "budget_s": budget_s}
    task_id = _task_for(session, device, record.space, record.design, record.policy)
    record.verification = {"status": "queued", "task_id": task_id, "where": "agent"}
    refresh_verification(session, record)
    return None


def measure_one_on_host(
    factory: sessionmaker[Session],
    device_id: int,
    space: str,
    design: str,
    policy: str,
    budget_s: float,
) -> Timing:
    """Measure one design x policy on this host's device setting (stored as usual)."""
    from app.measure_service import MeasureParams, measure_on_host

    with factory() as s:
        device = s.get(Device, device_id)
        assert device is not None and device.threads is not None
        threads, host = device.threads, (device.specs or {}).get("host", "host")
    measure_on_host(
        factory,
        MeasureParams.model_validate(
            {
                "space": space,
                "designs": [design],
                "policies": [policy],
                "threads": [threads],
                "host": host,
                "replace": True,
                "budget_s": budget_s,
            }
        ),
    )
    return _stored_latency(factory, device_id, space, design, policy)


def _stored_latency(
    factory: sessionmaker[Session], device_id: int, space: str, design: str, policy: str
) -> Timing:
    with factory() as s:
        row = s.scalar(
            select(Measurement)
            .join(Architecture)
            .where(
                Measurement.device_id == device_id,
                Architecture.space == space,
                Architecture.encoding == design,
                Measurement.policy == policy,
                Measurement.metric == "latency_ms",
            )
        )
        if row is None:
            raise RuntimeError(f"no latency stored for {design} at {policy} after measuring it")
        return measurement_timing(row)


def measurement_timing(row: Measurement) -> Timing:
    """A stored latency as measure-and-refine holds it to a budget: the median with the
    spread a repeat would see (its dispersion, at least its protocol's stability tolerance)."""
    tolerance = (row.protocol or {}).get("target_cv")
    tolerance = float(tolerance) if isinstance(tolerance, int | float) else None
    return Timing(float(row.value), repeat_spread(row.dispersion, tolerance))


def stored_timings(
    session: Session, device: Device, space: str, policy: str
) -> list[tuple[str, Timing]]:
    """The device's stored latencies of a space and policy, each with its spread."""
    rows = session.execute(
        select(Architecture.encoding, Measurement)
        .join(Architecture)
        .where(
            Measurement.device_id == device.id,
            Measurement.metric == "latency_ms",
            Measurement.policy == policy,
            Architecture.space == space,
        )
        .order_by(Architecture.id)
    ).all()
    return [(encoding, measurement_timing(m)) for encoding, m in rows]


def measure_by_agent(
    ctx: JobContext,
    device_id: int,
    space: str,
    design: str,
    policy: str,
    deadline_s: float,
    waiting: Callable[[str], None],
) -> Timing:
    """Queue one design for the device's agent and wait (cancellable) for its result."""
    with unit_of_work(ctx.factory) as s:
        device = s.get(Device, device_id)
        assert device is not None
        task_id = _task_for(s, device, space, design, policy)
    started = time.monotonic()
    while True:
        with ctx.factory() as s:
            task = s.get(MeasurementTask, task_id)
            assert task is not None
            status, measurement_id, error = task.status, task.measurement_id, task.error
            row = s.get(Measurement, measurement_id) if measurement_id else None
            value = measurement_timing(row) if row is not None else None
        if status == "done" and value is not None:
            return value
        if status == "failed":
            raise RuntimeError(f"the agent could not measure {design} at {policy}: {error}")
        waited = time.monotonic() - started
        if waited > deadline_s:
            raise RuntimeError(
                f"no agent measured {design} at {policy} within {deadline_s:.0f} s; is "
                "`edgeopt agent` running for this device?"
            )
        waiting(f"waiting for the agent to measure {design} ({waited:.0f} s)")
        time.sleep(0.5)


@job_kind("verify-optimization", VerifyParams)
def _verify_job(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    verify = VerifyParams.model_validate(params)
    optimization_id = verify.optimization_id
    with ctx.factory() as s:
        record = s.get(Optimization, optimization_id)
        if record is None or record.device_id is None or record.design is None:
            raise ValueError(f"no optimization {optimization_id} with a design on a device")
        device = s.get(Device, record.device_id)
        assert device is not None
        where_measured(s, device)
        device_id, space, design, policy = device.id, record.space, record.design, record.policy
        assert policy is not None
    timing = measure_one_on_host(ctx.factory, device_id, space, design, policy, verify.budget_s)
    measured = timing.median_ms
    with unit_of_work(ctx.factory) as s:
        record = s.get(Optimization, optimization_id)
        assert record is not None
        record.verification = _compared(record, measured, {"job_id": ctx.job_id, "where": "host"})
        return dict(record.verification)
