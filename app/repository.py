"""The registry's writes of designs and measurements, each written once.

Every path that stores a measurement (a bulk upload, the reference import, the host job, an
agent's result) registers its architectures with :func:`architecture_ids` and writes its
values with :func:`upsert_measurements`, so the rules (one row per device x design x metric,
a repeat replaces or is refused, never stored twice) hold the same way everywhere.

They hold under concurrent writers too. A new architecture is inserted with ``ON CONFLICT
DO NOTHING`` and then read back, so two uploads registering the same design both get its one
row. A device's measurements are written while holding its row lock (``SELECT ... FOR NO
KEY UPDATE`` on PostgreSQL; SQLite serialises every writer anyway), so the check for rows
already stored and the writes that follow see no other writer in between.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Insert, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.domain_errors import Conflict, InvalidInput
from app.models import AccuracyRecord, Architecture, Device, Measurement
from devices.profile import Metric

_CHUNK = 500  # keys per IN (...) lookup
_INSERT_CHUNK = 20_000  # rows per bulk insert
_WHOLE = 2_000  # past this many keys, one query for all beats many IN lookups

Design = tuple[str, str]  # (space, canonical encoding)


def architecture_ids(
    session: Session, designs: Iterable[Design], ref_index: Mapping[Design, int] | None = None
) -> dict[Design, int]:
    """Registry ids of ``(space, encoding)`` pairs, registering the missing ones.

    ``ref_index`` (the reference tables' arch ids) is written only on architectures this call
    creates; one registered earlier (by an upload, say) keeps what it has.
    """
    wanted = sorted(set(designs))
    ids = _architecture_lookup(session, wanted)
    missing = [d for d in wanted if d not in ids]
    if missing:
        index = ref_index or {}
        # sorted, so concurrent writers wait on each other's new rows in one order (no deadlock)
        rows = [{"space": s, "encoding": e, "ref_index": index.get((s, e))} for s, e in missing]
        statement = insert_new(session, Architecture, ("space", "encoding"))
        for start in range(0, len(rows), _INSERT_CHUNK):
            session.execute(statement, rows[start : start + _INSERT_CHUNK])
        ids.update(_architecture_lookup(session, missing))
    return ids


def insert_new(session: Session, model: type[Any], keys: Sequence[str]) -> Insert:
    """An INSERT that skips rows whose ``keys`` (a unique constraint) are stored already.

    Where another transaction is inserting the same key, PostgreSQL waits for it to end and
    then skips the row (or inserts it, if that transaction rolled back); a lookup afterwards
    finds the one row either way.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing(index_elements=list(keys))
    if dialect == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing(index_elements=list(keys))
    return insert(model)  # another database: a unique violation stays a 409


def architecture_id(session: Session, space: str, encoding: str) -> int:
    """The registry id of one design's architecture (registered if new)."""
    return architecture_ids(session, [(space, encoding)])[(space, encoding)]


def _architecture_lookup(session: Session, designs: Sequence[Design]) -> dict[Design, int]:
    by_space: dict[str, list[str]] = {}
    for space, encoding in designs:
        by_space.setdefault(space, []).append(encoding)
    found: dict[Design, int] = {}
    for space, encodings in by_space.items():
        query = select(Architecture.encoding, Architecture.id).where(Architecture.space == space)
        if len(encodings) > _WHOLE:
            wanted = set(encodings)
            rows = session.execute(query).all()
            found.update({(space, e): i for e, i in rows if e in wanted})
            continue
        for start in range(0, len(encodings), _CHUNK):
            chunk = encodings[start : start + _CHUNK]
            rows = session.execute(query.where(Architecture.encoding.in_(chunk))).all()
            found.update({(space, e): i for e, i in rows})
    return found


@dataclass(frozen=True)
class MeasurementRow:
    """One value to store for a device: a design (architecture + policy) and a metric."""

    architecture_id: int
    policy: str
    metric: str
    value: float
    repeats: int | None = None
    dispersion: float | None = None
    protocol: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.architecture_id, self.policy, self.metric)


class Timed(Protocol):
    """A latency statistic: ``devices.measure.Result``, or an agent's posted result."""

    @property
    def median_ms(self) -> float: ...
    @property
    def dispersion(self) -> float | None: ...
    @property
    def repeats(self) -> int | None: ...
    @property
    def stable(self) -> bool: ...
    @property
    def protocol(self) -> dict[str, Any]: ...


def latency_row(architecture_id: int, policy: str, timed: Timed) -> MeasurementRow:
    """A latency measurement's row: the median, with the protocol and its stability."""
    return MeasurementRow(
        architecture_id=architecture_id,
        policy=policy,
        metric=Metric.LATENCY_MS.value,
        value=timed.median_ms,
        repeats=timed.repeats,
        dispersion=timed.dispersion,
        protocol={**timed.protocol, "stable": timed.stable},
    )


@dataclass(frozen=True)
class Upserted:
    inserted: int
    replaced: int


class AlreadyStored(Conflict):
    """Rows of an upload that must not replace stored values; ``details`` name them."""


def upsert_measurements(
    session: Session,
    device_id: int,
    rows: Sequence[MeasurementRow],
    source: str,
    replace: bool = True,
) -> Upserted:
    """Store ``rows`` for a device, one row per design and metric.

    A row whose design and metric the device already has replaces the stored value in place
    (its id, which a measurement task may point to, stays). With ``replace=False`` nothing is
    stored when any row is already there: :class:`AlreadyStored` names those rows (1-based).
    """
    keys = [r.key for r in rows]
    if len(set(keys)) != len(keys):
        raise ValueError("rows repeat a design and metric")
    lock_device(session, device_id)
    existing = _measurement_ids(session, device_id, {k[0] for k in keys})
    clashes = [i for i, key in enumerate(keys, start=1) if key in existing]
    if clashes and not replace:
        raise AlreadyStored(
            f"{len(clashes)} rows are already stored for this device "
            f"(first: row {clashes[0]}); nothing was stored",
            [{"row": i, "field": "arch", "message": "already stored"} for i in clashes[:20]],
        )
    updates, inserts = [], []
    for row in rows:
        if row.key in existing:  # every column given: a statistic the new row lacks is cleared
            updates.append({"id": existing[row.key], **_values(row, source, keep_none=True)})
        else:
            inserts.append({"device_id": device_id, **_values(row, source)})
    if updates:
        session.execute(update(Measurement), updates)
    for start in range(0, len(inserts), _INSERT_CHUNK):
        session.execute(insert(Measurement), inserts[start : start + _INSERT_CHUNK])
    return Upserted(inserted=len(inserts), replaced=len(updates))


def lock_device(session: Session, device_id: int) -> None:
    """Hold the device's row until the transaction ends: its measurements' writers queue here.

    ``FOR NO KEY UPDATE`` on PostgreSQL (rows that merely reference the device, a new task
    say, are not held up); SQLite ignores it, its writers being serialised already.
    """
    session.execute(select(Device.id).where(Device.id == device_id).with_for_update(key_share=True))


def _values(row: MeasurementRow, source: str, keep_none: bool = False) -> dict[str, Any]:
    values: dict[str, Any] = {
        "architecture_id": row.architecture_id,
        "policy": row.policy,
        "metric": row.metric,
        "value": row.value,
        "source": source,
    }
    # absent statistics stay SQL NULL (not JSON null), as the bulk imports always wrote them
    for name in ("repeats", "dispersion", "protocol"):
        if keep_none or getattr(row, name) is not None:
            values[name] = getattr(row, name)
    return values


def _measurement_ids(
    session: Session, device_id: int, arch_ids: set[int]
) -> dict[tuple[int, str, str], int]:
    """Ids of the device's stored measurements of these architectures, by design and metric."""
    query = select(
        Measurement.architecture_id, Measurement.policy, Measurement.metric, Measurement.id
    ).where(Measurement.device_id == device_id)
    if len(arch_ids) > _WHOLE:
        found = session.execute(query).all()
        return {(a, p, m): i for a, p, m, i in found if a in arch_ids}
    ordered = sorted(arch_ids)
    ids: dict[tuple[int, str, str], int] = {}
    for start in range(0, len(ordered), _CHUNK):
        chunk = ordered[start : start + _CHUNK]
        found = session.execute(query.where(Measurement.architecture_id.in_(chunk))).all()
        ids.update({(a, p, m): i for a, p, m, i in found})
    return ids


@dataclass(frozen=True)
class AccuracyRow:
    """A validated accuracy record to store: canonical design and policy."""

    space: str
    arch: str
    dataset: str
    policy: str
    top1: float
    source: str


def upsert_accuracy(session: Session, rows: Sequence[AccuracyRow], replace: bool) -> Upserted:
    """Store accuracy records, one per design x dataset x policy; a repeat replaces the stored
    value only with ``replace`` (else AlreadyStored names the first ones)."""
    keys = [(r.space, r.arch) for r in rows]
    if len(set(zip(keys, [(r.dataset, r.policy) for r in rows], strict=True))) != len(rows):
        raise InvalidInput("the upload names one design, dataset and policy more than once")
    ids = architecture_ids(session, keys)
    stored = {
        (a, d, p): rid
        for rid, a, d, p in session.execute(
            select(
                AccuracyRecord.id,
                AccuracyRecord.architecture_id,
                AccuracyRecord.dataset,
                AccuracyRecord.policy,
            ).where(AccuracyRecord.architecture_id.in_(set(ids.values())))
        )
    }
    again = [r for r in rows if (ids[(r.space, r.arch)], r.dataset, r.policy) in stored]
    if again and not replace:
        raise AlreadyStored(
            f"{len(again)} records are stored already; send replace=true to overwrite",
            [{"message": f"{r.arch} on {r.dataset} at {r.policy}"} for r in again[:5]],
        )
    new = []
    for r in rows:
        key = (ids[(r.space, r.arch)], r.dataset, r.policy)
        if key in stored:
            session.execute(
                update(AccuracyRecord)
                .where(AccuracyRecord.id == stored[key])
                .values(top1=r.top1, source=r.source)
            )
        else:
            new.append({"architecture_id": key[0], "dataset": r.dataset, "policy": r.policy,
                        "top1": r.top1, "source": r.source})  # fmt: skip
    for start in range(0, len(new), _INSERT_CHUNK):
        session.execute(insert(AccuracyRecord), new[start : start + _INSERT_CHUNK])
    return Upserted(inserted=len(new), replaced=len(again))
