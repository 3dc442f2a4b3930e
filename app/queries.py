"""Read queries shared by routes and the CLI (lookups that 404, filtered listings)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.domain_errors import NotFound, UnknownDevice
from app.models import AccuracyRecord, Architecture, Device, Job, Measurement
from app.schemas import AccuracyRead, MeasurementCount, MeasurementRead, Page


def find_device(session: Session, name_or_id: str) -> Device:
    """A device by name, or by id when the text is a number: every request that names a
    device (body, query or path) resolves it here, so each accepts either."""
    device = session.scalar(select(Device).where(Device.name == name_or_id))
    # an id is ASCII digits that fit the column ("²" is a digit to str.isdigit, and 120
    # digits overflow a database integer)
    as_id = name_or_id.isascii() and name_or_id.isdigit() and len(name_or_id) < 10
    if device is None and as_id:
        device = session.get(Device, int(name_or_id))
    if device is None and as_id:
        raise UnknownDevice(f"no device with id {name_or_id}")
    if device is None:
        raise UnknownDevice(f"no device named {name_or_id!r}")
    return device


def measurement_counts(session: Session, device_id: int) -> list[MeasurementCount]:
    """How many measurements a device has per space, policy and metric."""
    rows = session.execute(
        select(Architecture.space, Measurement.policy, Measurement.metric, func.count())
        .join(Architecture, Measurement.architecture_id == Architecture.id)
        .where(Measurement.device_id == device_id)
        .group_by(Architecture.space, Measurement.policy, Measurement.metric)
        .order_by(Architecture.space, Measurement.policy, Measurement.metric)
    ).all()
    return [MeasurementCount(space=sp, policy=p, metric=m, count=n) for sp, p, m, n in rows]


def get_job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


@dataclass(frozen=True)
class MeasurementFilters:
    device_id: int | None = None
    space: str | None = None
    policy: str | None = None
    metric: str | None = None
    arch: str | None = None
    source: str | None = None
    min_value: float | None = None
    max_value: float | None = None

    def apply(self, query: Select) -> Select:  # type: ignore[type-arg]
        conditions = [
            (self.device_id, Measurement.device_id == self.device_id),
            (self.space, Architecture.space == self.space),
            (self.policy, Measurement.policy == self.policy),
            (self.metric, Measurement.metric == self.metric),
            (self.arch, Architecture.encoding == self.arch),
            (self.source, Measurement.source == self.source),
            (self.min_value is not None, Measurement.value >= (self.min_value or 0)),
            (self.max_value is not None, Measurement.value <= (self.max_value or 0)),
        ]
        for given, condition in conditions:
            if given:
                query = query.where(condition)
        return query


def list_measurements(
    session: Session, filters: MeasurementFilters, limit: int, offset: int
) -> Page[MeasurementRead]:
    base = filters.apply(
        select(Measurement.id).join(Architecture, Measurement.architecture_id == Architecture.id)
    )
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.execute(
        filters.apply(
            select(Measurement, Architecture).join(
                Architecture, Measurement.architecture_id == Architecture.id
            )
        )
        .order_by(Measurement.id)
        .limit(limit)
        .offset(offset)
    ).all()
    items = [
        MeasurementRead(
            id=m.id,
            device_id=m.device_id,
            space=a.space,
            arch=a.encoding,
            arch_index=a.ref_index,
            policy=m.policy,
            metric=m.metric,
            value=m.value,
            repeats=m.repeats,
            dispersion=m.dispersion,
            protocol=m.protocol,
            source=m.source,
            created_at=m.created_at,
        )
        for m, a in rows
    ]
    return Page(items=items, total=total, limit=limit, offset=offset)


def list_accuracy(
    session: Session,
    space: str | None,
    dataset: str | None,
    policy: str | None,
    limit: int,
    offset: int,
) -> Page[AccuracyRead]:
    query = select(AccuracyRecord, Architecture).join(
        Architecture, AccuracyRecord.architecture_id == Architecture.id
    )
    if space:
        query = query.where(Architecture.space == space)
    if dataset:
        query = query.where(AccuracyRecord.dataset == dataset)
    if policy:
        query = query.where(AccuracyRecord.policy == policy)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(AccuracyRecord.id).limit(limit).offset(offset)).all()
    items = [
        AccuracyRead(
            id=r.id,
            space=a.space,
            arch=a.encoding,
            arch_index=a.ref_index,
            policy=r.policy,
            dataset=r.dataset,
            top1=r.top1,
            source=r.source,
        )
        for r, a in rows
    ]
    return Page(items=items, total=total, limit=limit, offset=offset)
