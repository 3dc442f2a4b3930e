"""Load the shipped reference tables into the registry, idempotently.

Each device is written in its own transaction: an import stopped half-way leaves whole
devices or none, and running it again completes it. A device whose reference measurements
are all present is left untouched, so a second run changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from app.db import unit_of_work
from app.jobs import JobContext, job_kind
from app.models import AccuracyRecord, Architecture, Device, Measurement
from app.repository import MeasurementRow, architecture_ids, upsert_measurements
from devices.profile import Metric
from devices.reference import (
    ACCURACY_SOURCE,
    DIGITS,
    REFERENCE_TABLES,
    ReferenceDevice,
    ReferenceTable,
    load_digits_accuracy,
    load_table,
)

REFERENCE_SOURCE = "reference"
_CHUNK = 20_000


def _architecture_ids(session: Session, table: ReferenceTable) -> np.ndarray:
    """Registry ids of the table's architectures (registering those not yet registered)."""
    designs = [(table.space, enc) for enc in table.encodings]
    ref_index = {d: int(i) for d, i in zip(designs, table.arch_ids, strict=True)}
    ids = architecture_ids(session, designs, ref_index)
    return np.array([ids[d] for d in designs], dtype=np.int64)


def _import_accuracies(session: Session, table: ReferenceTable, arch_ids: np.ndarray) -> int:
    inserted = 0
    for dataset, values in table.accuracies.items():
        have = set(
            session.scalars(
                select(AccuracyRecord.architecture_id)
                .join(Architecture)
                .where(
                    Architecture.space == table.space,
                    AccuracyRecord.dataset == dataset,
                    AccuracyRecord.policy == "fp32",
                )
            )
        )
        rows = [
            {
                "architecture_id": int(a),
                "policy": "fp32",
                "dataset": dataset,
                "top1": float(v),
                "source": ACCURACY_SOURCE,
            }
            for a, v in zip(arch_ids, values, strict=True)
            if np.isfinite(v) and int(a) not in have
        ]
        for start in range(0, len(rows), _CHUNK):
            session.execute(insert(AccuracyRecord), rows[start : start + _CHUNK])
        inserted += len(rows)
    return inserted


def _import_digits(session: Session, space: str) -> int:
    """EdgeOpt's shipped digits accuracies (every policy); those already stored are kept."""
    shipped = load_digits_accuracy(space)
    if not shipped:
        return 0
    ids = architecture_ids(session, list(dict.fromkeys((space, r.design) for r in shipped)))
    have = set(
        session.execute(
            select(AccuracyRecord.architecture_id, AccuracyRecord.policy)
            .join(Architecture)
            .where(Architecture.space == space, AccuracyRecord.dataset == DIGITS)
        ).all()
    )
    rows = [
        {
            "architecture_id": ids[(space, r.design)],
            "policy": r.policy,
            "dataset": DIGITS,
            "top1": r.top1,
            "source": r.source,
        }
        for r in shipped
        if (ids[(space, r.design)], r.policy) not in have
    ]
    for start in range(0, len(rows), _CHUNK):
        session.execute(insert(AccuracyRecord), rows[start : start + _CHUNK])
    return len(rows)


def _device_row(ref: ReferenceDevice) -> Device:
    return Device(
        name=ref.name,
        kind=ref.kind,
        hardware=ref.hardware,
        specs=ref.specs,
        runtime=ref.runtime,
        precision=ref.policy,
        batch_size=ref.batch_size,
        source=ref.source,
        description=f"Reference column {ref.column!r} of the {ref.space} latency table",
    )


def _import_device(
    session: Session, ref: ReferenceDevice, arch_ids: np.ndarray, latency: np.ndarray
) -> tuple[bool, int]:
    """Returns (device created, measurements inserted)."""
    device = session.scalar(select(Device).where(Device.name == ref.name))
    created = device is None
    if device is None:
        device = _device_row(ref)
        session.add(device)
        session.flush()
    finite = np.isfinite(latency)
    stored = session.scalar(
        select(func.count())
        .select_from(Measurement)
        .where(Measurement.device_id == device.id, Measurement.source == REFERENCE_SOURCE)
    )
    if stored == int(finite.sum()):
        return created, 0
    session.execute(
        delete(Measurement).where(
            Measurement.device_id == device.id, Measurement.source == REFERENCE_SOURCE
        )
    )
    rows = [
        MeasurementRow(int(a), ref.policy, Metric.LATENCY_MS.value, float(v))
        for a, v in zip(arch_ids[finite], latency[finite], strict=True)
    ]
    upsert_measurements(session, device.id, rows, REFERENCE_SOURCE)
    return created, len(rows)


def import_reference(
    factory: sessionmaker[Session], spaces: Sequence[str], ctx: JobContext | None = None
) -> dict[str, Any]:
    """Import the chosen tables' reference devices, measurements and accuracies.

    ``spaces`` names tables: a space's own (``nb201``) or a family table (``nb201_latbench``).
    """
    unknown = [s for s in spaces if s not in REFERENCE_TABLES]
    if unknown:
        raise ValueError(f"no reference data for {unknown} (have {list(REFERENCE_TABLES)})")
    tables = [load_table(s) for s in spaces]
    total = sum(len(t.devices) for t in tables) or 1
    done = 0
    summary: dict[str, Any] = {}
    for name, table in zip(spaces, tables, strict=True):
        with unit_of_work(factory) as s:
            arch_ids = _architecture_ids(s, table)
            acc = _import_accuracies(s, table, arch_ids) + _import_digits(s, table.space)
        stats = {
            "devices_created": 0,
            "devices_unchanged": 0,
            "measurements_inserted": 0,
            "accuracy_records_inserted": acc,
        }
        for j, ref in enumerate(table.devices):
            with unit_of_work(factory) as s:
                created, n = _import_device(s, ref, arch_ids, table.latency_ms[:, j])
            # A breath between transactions: on SQLite, a writer looping without pause starves
            # other writers (a cancel, a heartbeat) whose busy handler polls for the lock.
            time.sleep(0.02)
            stats["devices_created"] += int(created)
            stats["devices_unchanged"] += int(n == 0 and not created)
            stats["measurements_inserted"] += n
            done += 1
            if ctx is not None:
                ctx.progress(done / total, f"{ref.name}: {n} measurements")
        summary[name] = stats
        if ctx is not None:
            ctx.log(f"{name}: {stats}")
    if ctx is not None:
        added = sum(st["measurements_inserted"] for st in summary.values())
        ctx.progress(1.0, f"imported {added} measurements", force=True)
    return summary


TableName = Literal["nb201", "fbnet", "ofa_mbv3", "nb201_latbench"]


class ImportParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spaces: list[TableName] = Field(default_factory=lambda: list(get_args(TableName)), min_length=1)


@job_kind("import-reference", ImportParams)
def _import_job(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    return import_reference(ctx.factory, ImportParams.model_validate(params).spaces, ctx)
