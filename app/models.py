"""ORM models: the registry's tables. Alembic (``migrations/``) is the only author of the schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from devices.profile import DeviceKind, Metric

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# the check constraints' lists, from the one definition of each vocabulary (devices.profile)
DEVICE_KINDS = tuple(kind.value for kind in DeviceKind)
METRICS = tuple(metric.value for metric in Metric)
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON}


class Device(Base):
    """A measurement setting: hardware x runtime x precision x batch x threads."""

    __tablename__ = "devices"
    __table_args__ = (CheckConstraint(f"kind IN {DEVICE_KINDS}", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    hardware: Mapped[str | None] = mapped_column(String(200))
    specs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    runtime: Mapped[str | None] = mapped_column(String(64))
    runtime_version: Mapped[str | None] = mapped_column(String(64))
    precision: Mapped[str] = mapped_column(String(16), default="fp32")
    batch_size: Mapped[int | None] = mapped_column(Integer)
    threads: Mapped[int | None] = mapped_column(Integer)
    source: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Architecture(Base):
    """A network of a search space, by its canonical encoding (no quantization policy)."""

    __tablename__ = "architectures"
    __table_args__ = (
        UniqueConstraint("space", "encoding", name="uq_architectures_space_encoding"),
        Index("ix_architectures_space_ref_index", "space", "ref_index"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    space: Mapped[str] = mapped_column(String(32))
    encoding: Mapped[str] = mapped_column(Text)
    ref_index: Mapped[int | None] = mapped_column(Integer)


class Measurement(Base):
    """One metric of one design (architecture + policy) on one device, as a statistic."""

    __tablename__ = "measurements"
    __table_args__ = (
        UniqueConstraint(
            "device_id", "architecture_id", "policy", "metric", name="uq_measurements_design_metric"
        ),
        CheckConstraint(f"metric IN {METRICS}", name="metric"),
        Index("ix_measurements_device_metric", "device_id", "metric"),
        # a device's fastest designs in a policy, read by every /predict and /optimize
        # answer (the extrapolation floor): an index scan, not a sort of every row
        Index("ix_measurements_fastest", "device_id", "metric", "policy", "value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    architecture_id: Mapped[int] = mapped_column(ForeignKey("architectures.id"))
    policy: Mapped[str] = mapped_column(String(400), default="fp32")
    metric: Mapped[str] = mapped_column(String(16))
    value: Mapped[float] = mapped_column(Float)
    repeats: Mapped[int | None] = mapped_column(Integer)
    dispersion: Mapped[float | None] = mapped_column(Float)
    protocol: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    source: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.current_timestamp()
    )


class AccuracyRecord(Base):
    """Top-1 accuracy of a design on a dataset, with where the figure came from."""

    __tablename__ = "accuracy_records"
    __table_args__ = (
        UniqueConstraint(
            "architecture_id", "policy", "dataset", name="uq_accuracy_records_design_dataset"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    architecture_id: Mapped[int] = mapped_column(ForeignKey("architectures.id"))
    policy: Mapped[str] = mapped_column(String(400), default="fp32")
    dataset: Mapped[str] = mapped_column(String(64))
    top1: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(200))


class Job(Base):
    """Long work (imports, measurement, training, search) with progress and a heartbeat."""

    __tablename__ = "jobs"
    __table_args__ = (CheckConstraint(f"status IN {JOB_STATUSES}", name="status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    owner: Mapped[str | None] = mapped_column(String(64))
    # Times a worker started it: a job whose worker died is queued again until this reaches
    # the service's EDGEOPT_JOB_MAX_ATTEMPTS.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    logs: Mapped[list[JobLog]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="JobLog.id"
    )


class JobLog(Base):
    __tablename__ = "job_logs"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    level: Mapped[str] = mapped_column(String(16), default="info")
    line: Mapped[str] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="logs")


PREDICTOR_TARGETS = (*METRICS, "accuracy", "accuracy_change")


class Predictor(Base):
    """A trained predictor: its artifact on disk, quality on held-out data, and provenance.

    ``device_id`` is set for per-device latency/energy models and empty for accuracy models,
    which belong to a (space, dataset, policy). Retraining the same scope adds a version.
    """

    __tablename__ = "predictors"
    __table_args__ = (
        CheckConstraint(f"target IN {PREDICTOR_TARGETS}", name="target"),
        UniqueConstraint(
            "target",
            "space",
            "device_id",
            "dataset",
            "policy",
            "version",
            name="uq_predictors_scope",
        ),
        Index("ix_predictors_space_target", "space", "target"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    target: Mapped[str] = mapped_column(String(16))
    space: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    dataset: Mapped[str | None] = mapped_column(String(64))
    policy: Mapped[str] = mapped_column(String(400), default="fp32")
    version: Mapped[int] = mapped_column(Integer, default=1)
    model: Mapped[str] = mapped_column(String(64))
    artifact: Mapped[str] = mapped_column(String(400))
    quality: Mapped[dict[str, Any]] = mapped_column(default=dict)
    provenance: Mapped[dict[str, Any]] = mapped_column(default=dict)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Artifact(Base):
    """One file of a predictor, learned optimizer or exported model, by its path relative to
    the artifacts folder: its SHA-256 and size, recorded when it was written, and with
    ``EDGEOPT_ARTIFACT_STORE=database`` its bytes, from which a process on another machine
    fills its own folder (``app/artifact_store.py``). Never rewritten, like the files.
    """

    __tablename__ = "artifacts"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    # None: written with the local store, the bytes are only in that artifacts folder
    content: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


TASK_STATUSES = ("queued", "leased", "done", "failed")


class MeasurementTask(Base):
    """One design to measure on one device, handed to that device's agent under a lease.

    A lease that expires (the agent vanished) makes the task available again; the first
    result accepted is the task's, and its agent posting it again is acknowledged without
    storing it twice.
    """

    __tablename__ = "measurement_tasks"
    __table_args__ = (
        CheckConstraint(f"status IN {TASK_STATUSES}", name="status"),
        UniqueConstraint(
            "device_id", "architecture_id", "policy", name="uq_measurement_tasks_design"
        ),
        Index("ix_measurement_tasks_device_status", "device_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    architecture_id: Mapped[int] = mapped_column(ForeignKey("architectures.id"))
    policy: Mapped[str] = mapped_column(String(400), default="fp32")
    priority: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    measurement_id: Mapped[int | None] = mapped_column(
        ForeignKey("measurements.id", ondelete="SET NULL")
    )
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Optimization(Base):
    """One /optimize answer: the request, the chosen design with its predictions, the Pareto
    front, and (once measured) the verification of the prediction on the device."""

    __tablename__ = "optimizations"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    device_name: Mapped[str] = mapped_column(String(120))
    space: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(16))
    feasible: Mapped[bool] = mapped_column(Boolean)
    design: Mapped[str | None] = mapped_column(Text)  # None: nothing met the goals
    policy: Mapped[str | None] = mapped_column(String(400))
    request: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    elapsed_s: Mapped[float] = mapped_column(Float)
    # the measure-and-refine job that stored it: unique, so a retried job stores it once
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), unique=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LearnedOptimizer(Base):
    """A trained learned optimizer: its artifact (torch state dict + JSON sidecar), the
    registered devices it learned from, and its quality on devices it never saw."""

    __tablename__ = "learned_optimizers"
    __table_args__ = (UniqueConstraint("space", "dataset", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    space: Mapped[str] = mapped_column(String(32))
    dataset: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    artifact: Mapped[str] = mapped_column(String(400))  # relative to the artifacts folder
    devices: Mapped[list[str]] = mapped_column(JSON, default=list)
    quality: Mapped[dict[str, Any]] = mapped_column(default=dict)
    job_id: Mapped[int | None] = mapped_column(Integer, unique=True)  # a retry stores it once
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    """An API key. Only the token's SHA-256 is stored: the token is shown once, at creation.

    ``prefix`` (the token's first characters) is not secret: it finds the row and tells keys
    apart in listings. ``scopes`` lists every scope granted, implied ones included
    (``admin`` -> ``write`` -> ``read``). ``devices``, when set, makes it an agent key: it
    serves those devices only.
    """

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    devices: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
