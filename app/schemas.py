"""Pydantic request/response models: the API's contract, validated once at the edge."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from devices.profile import DeviceKind, Metric, Precision, canonical_policy
from search.spaces import InvalidEncoding, get_space

# A measured latency (ms) or energy (mJ): a JSON number (not a string, not true), between a
# nanosecond-scale 1e-6 and 1e7 (hours). One shot of 1e308 or 5e-324 ms once turned every
# prediction of a device into 2e-22 ms and a feasible answer.
MeasuredValue = Annotated[float, Field(ge=1e-6, le=1e7, allow_inf_nan=False, strict=True)]


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# A moment as the API answers it: with its offset, as the schema's ``date-time`` (RFC 3339)
# says. SQLite gives back naive datetimes; everything stored is UTC.
UtcDateTime = Annotated[datetime, AfterValidator(_utc)]


def non_finite(value: Any, where: str) -> str | None:
    """The first NaN or infinity in parsed JSON, as ``NaN at where.key[0]``; None if none.

    Python's JSON parser (FastAPI's too) reads ``NaN`` and ``Infinity``, which JSON does not
    have: SQLite would store them, PostgreSQL refuse them with its driver's text. Iterative,
    so a deeply nested body cannot exhaust the stack.
    """
    stack = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            name = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
            return f"{name} at {path}"
        if isinstance(item, dict):
            stack.extend((v, f"{path}.{k}") for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in reversed(list(enumerate(item))))
    return None


def _finite_json(value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
    found = non_finite(value, info.field_name or "value")
    if found:
        raise ValueError(f"{found} is not a number JSON allows (send null, or leave it out)")
    return value


# A free-form JSON object (specs, protocols, job parameters): any JSON, but only JSON.
JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_json)]

T = TypeVar("T")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$"


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class DeviceSpecs(BaseModel):
    """Hardware facts; the named fields are the ones predictors use, others are kept as given."""

    model_config = ConfigDict(extra="allow")

    cores: int | None = Field(default=None, ge=1, le=100_000)
    clock_mhz: float | None = Field(default=None, gt=0, le=100_000)
    memory_gb: float | None = Field(default=None, gt=0, le=100_000)
    memory_bandwidth_gbs: float | None = Field(default=None, gt=0, le=1_000_000)
    accelerator: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _finite_extras(self) -> Self:
        """Further specs are free-form JSON, so finite like the rest."""
        found = non_finite(self.model_extra or {}, "specs")
        if found:
            raise ValueError(f"{found} is not a number JSON allows (send null, or leave it out)")
        return self


class DeviceBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: DeviceKind
    hardware: str | None = Field(default=None, max_length=200, examples=["Raspberry Pi 4"])
    specs: DeviceSpecs = Field(default_factory=DeviceSpecs)
    runtime: str | None = Field(default=None, max_length=64, examples=["onnxruntime"])
    runtime_version: str | None = Field(default=None, max_length=64)
    precision: Precision | None = Precision.FP32
    batch_size: int | None = Field(default=None, ge=1, le=65_536)
    threads: int | None = Field(default=None, ge=1, le=4096)
    source: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=4000)


class DeviceCreate(DeviceBase):
    name: str = Field(
        min_length=1, max_length=120, pattern=NAME_PATTERN, examples=["raspi4-ort-2t"]
    )


class DeviceUpdate(BaseModel):
    """Partial update: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=120, pattern=NAME_PATTERN)
    kind: DeviceKind | None = None
    hardware: str | None = Field(default=None, max_length=200)
    specs: DeviceSpecs | None = None
    runtime: str | None = Field(default=None, max_length=64)
    runtime_version: str | None = Field(default=None, max_length=64)
    precision: Precision | None = None
    batch_size: int | None = Field(default=None, ge=1, le=65_536)
    threads: int | None = Field(default=None, ge=1, le=4096)
    source: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=4000)


class DeviceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: str
    hardware: str | None
    specs: dict[str, Any]
    runtime: str | None
    runtime_version: str | None
    precision: str | None
    batch_size: int | None
    threads: int | None
    source: str | None
    description: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime


class MeasurementCount(BaseModel):
    space: str
    policy: str
    metric: str
    count: int


class DeviceDetail(DeviceRead):
    measurements: list[MeasurementCount]


class MeasurementIn(BaseModel):
    """One uploaded row; ``arch`` is the space's encoding (see ``search.spaces``)."""

    model_config = ConfigDict(extra="forbid")

    space: str = Field(max_length=32, examples=["nb201"])
    arch: str = Field(min_length=1, max_length=2000)
    policy: str = Field(
        default="fp32", max_length=400, examples=["fp32", "int8,fp32,fp32,int8,fp32"]
    )
    metric: Metric
    value: MeasuredValue
    repeats: int | None = Field(default=None, ge=1, le=1_000_000)
    dispersion: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    protocol: JsonObject | None = None

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        return canonical_policy(value)


class UploadResult(BaseModel):
    device_id: int
    inserted: int
    replaced: int


class MeasurementRead(BaseModel):
    id: int
    device_id: int
    space: str
    arch: str
    arch_index: int | None
    policy: str
    metric: str
    value: float
    repeats: int | None
    dispersion: float | None
    protocol: dict[str, Any] | None
    source: str | None
    created_at: UtcDateTime | None


class AccuracyRead(BaseModel):
    id: int
    space: str
    arch: str
    arch_index: int | None
    policy: str
    dataset: str
    top1: float
    source: str


class AccuracyIn(BaseModel):
    """One measured top-1 of a design under a policy on a dataset (the user's own, say)."""

    model_config = ConfigDict(extra="forbid")

    space: Literal["nb201", "fbnet", "ofa_mbv3"]
    arch: str = Field(min_length=1, max_length=2000)
    dataset: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    policy: str = Field("fp32", max_length=400)
    top1: float = Field(ge=0, le=100, allow_inf_nan=False, strict=True)
    source: str = Field("upload", min_length=1, max_length=400)


class AccuracyUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[AccuracyIn] = Field(min_length=1, max_length=20_000)
    replace: bool = Field(False, description="replace stored records of the same design")


class AccuracyUploadResult(BaseModel):
    inserted: int
    replaced: int


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(examples=["import-reference"])
    params: JsonObject = Field(default_factory=dict, examples=[{"spaces": ["ofa_mbv3"]}])


class JobLogRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    created_at: UtcDateTime
    level: str
    line: str


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    status: str
    progress: float
    message: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    created_at: UtcDateTime
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None
    heartbeat_at: UtcDateTime | None


class JobDetail(JobRead):
    logs: list[JobLogRead]


class Health(BaseModel):
    status: str
    schema_revision: str | None
    devices: int


class Liveness(BaseModel):
    status: Literal["alive"]


class Readiness(BaseModel):
    status: Literal["ready"]
    schema_revision: str | None


class PredictorRead(BaseModel):
    """A trained predictor: scope, version, held-out quality figures and provenance."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    target: str
    space: str
    device_id: int | None
    dataset: str | None
    policy: str
    version: int
    model: str
    quality: dict[str, Any]
    provenance: dict[str, Any]
    job_id: int | None
    created_at: UtcDateTime


class PredictorTrain(BaseModel):
    """What to (re)train; every scope with ``min_rows`` designs or more gets a new version."""

    model_config = ConfigDict(extra="forbid")

    spaces: list[Literal["nb201", "fbnet", "ofa_mbv3"]] | None = Field(None, min_length=1)
    targets: list[Metric | Literal["accuracy"]] | None = Field(None, min_length=1)
    devices: list[str] | None = Field(None, max_length=1000)
    min_rows: int = Field(200, ge=50, le=1_000_000)
    min_accuracy_rows: int | None = Field(
        None, ge=50, le=1_000_000, description="fewest designs for an accuracy model"
    )
    missing_only: bool = Field(
        False, description="only scopes with no predictor yet (what an interrupted start left)"
    )


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str = Field(description="registered device name or id", max_length=120)
    space: Literal["nb201", "fbnet", "ofa_mbv3"]
    policy: str = Field("fp32", max_length=400)
    designs: list[str] = Field(min_length=1, max_length=20_000)


class Estimate(BaseModel):
    value: float
    low: float
    high: float


class DesignPrediction(BaseModel):
    design: str
    accuracy: dict[str, Estimate]
    latency_ms: Estimate | None
    energy_mj: Estimate | None
    extrapolated: bool = Field(
        False,
        description="latency below half of the device's fastest measured latency (or, without "
        "measurements, of the fastest basis device's prediction for the design): unsupported",
    )
    uncertain: bool = Field(
        False, description="the latency's 90% interval spans more than a factor of 3"
    )


class PredictResponse(BaseModel):
    """Predictions with LEVEL intervals; ``answered_by`` says which model answered each metric
    (and for a device without its own model, the proxy chosen and why); ``notes`` says what
    could not be predicted instead of inventing a number."""

    device: str
    space: str
    policy: str
    level: float
    designs: list[DesignPrediction]
    answered_by: dict[str, Any]
    notes: list[str]


class NextMeasurements(BaseModel):
    """What a device should measure next: the designs that tell its transfer model the most,
    and the Spearman held-out devices reached from as many shots before and after."""

    device: str
    space: str
    metric: str
    policy: str
    answered_by: str | None = Field(
        description="device-model (its own model: more measurements retrain it), transfer, or "
        "None (fewer measurements than transfer needs)"
    )
    shots: int = Field(description="the device's measured designs of this space and policy")
    expected_spearman: float | None
    expected_spearman_after: float | None
    designs: list[str]
    note: str | None = Field(
        None,
        description="why fewer designs than asked for are suggested: the device has measured "
        "(nearly) all the designs suggestions are drawn from",
    )


class TaskQueue(BaseModel):
    """Designs to measure on a device, each in every policy given."""

    model_config = ConfigDict(extra="forbid")

    space: Literal["nb201", "fbnet"]
    designs: list[str] = Field(min_length=1, max_length=20_000)
    policies: list[str] = Field(default_factory=lambda: ["fp32"], min_length=1, max_length=50)


class TaskRead(BaseModel):
    id: int
    device_id: int
    space: str
    design: str
    policy: str
    status: str
    priority: int
    attempts: int
    lease_owner: str | None
    lease_expires_at: UtcDateTime | None
    measurement_id: int | None
    model_url: str


class AgentProfile(BaseModel):
    """What an agent reports about its machine when it starts."""

    model_config = ConfigDict(extra="forbid")

    kind: DeviceKind = DeviceKind.CPU
    hardware: str | None = Field(None, max_length=200)
    specs: JsonObject = Field(default_factory=dict)
    runtime: str | None = Field(None, max_length=64)
    runtime_version: str | None = Field(None, max_length=64)
    threads: int | None = Field(None, ge=1, le=4096)
    batch_size: int | None = Field(None, ge=1, le=65_536)


class LeaseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, max_length=64)
    max_tasks: int = Field(1, ge=1, le=100)
    lease_s: float = Field(120.0, ge=1, le=3600)


class TaskResult(BaseModel):
    """An agent's measurement of one task, with the protocol it followed."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(min_length=1, max_length=64)
    median_ms: MeasuredValue
    dispersion: float | None = Field(None, ge=0, allow_inf_nan=False)
    repeats: int | None = Field(None, ge=1, le=1_000_000)  # as an upload's
    stable: bool = True
    protocol: JsonObject = Field(default_factory=dict)


class TaskAck(BaseModel):
    task_id: int
    measurement_id: int | None
    duplicate: bool


class Goals(BaseModel):
    """Constraints and what to optimise. ``weighted`` maximises w_acc * accuracy (points)
    - w_lat * latency (ms) - w_energy * energy (mJ)."""

    model_config = ConfigDict(extra="forbid")

    max_latency_ms: float | None = Field(None, gt=0, allow_inf_nan=False)
    max_energy_mj: float | None = Field(None, gt=0, allow_inf_nan=False)
    min_accuracy: float | None = Field(None, ge=0, le=100, allow_inf_nan=False)
    objective: Literal["accuracy", "latency", "energy", "weighted"] = "accuracy"
    weights: (
        dict[
            Literal["accuracy", "latency", "energy"],
            Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)],
        ]
        | None
    ) = None


class ShotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arch: str = Field(max_length=2000)
    latency_ms: MeasuredValue


class InlineProfile(BaseModel):
    """A device described in the request instead of registered: its measured designs
    (ideally the space's fingerprint, ``GET /spaces/{space}/fingerprint``) are the shots."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("inline", max_length=120)
    kind: DeviceKind = DeviceKind.CPU
    specs: JsonObject = Field(default_factory=dict)
    policy: str = Field("fp32", max_length=400)
    measurements: list[ShotIn] = Field(default_factory=list, max_length=1000)


MAX_REQUEST_TRIALS = 300


class StudySpec(BaseModel):
    """An Optuna study (NSGA-II) in the shared storage; ``edgeopt worker --study NAME`` adds
    trials from other processes, and every completed trial joins the candidates."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=NAME_PATTERN)
    # A request runs its trials before it answers (about 0.7 s each for NB201 on 2 cores):
    # more belong to ``edgeopt worker --study NAME`` processes.
    trials: int = Field(
        100, ge=0, le=MAX_REQUEST_TRIALS, description="trials this request runs itself"
    )
    seed: int | None = Field(None, ge=0, le=2**32 - 1)


class OptimizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str | None = Field(None, max_length=120, description="registered name or id")
    profile: InlineProfile | None = None
    space: Literal["nb201", "fbnet"] = "nb201"
    dataset: str = Field(
        "cifar10",
        max_length=64,
        description="whose accuracy counts; default cifar10 for nb201, digits for fbnet (the "
        "only FBNet accuracy measured)",
    )
    goals: Goals = Field(default_factory=lambda: Goals.model_validate({}))
    method: Literal["proxy", "search", "neural", "auto"] = "auto"
    policies: list[str] = Field(
        default_factory=lambda: ["fp32", "int8"],
        min_length=1,
        max_length=64,
        description='policies to consider; "per-unit" adds every per-unit fp32/int8 policy '
        "(nb201: 32; fbnet: a study draws one precision per unit, without one fp32, int8 and "
        "the named mixed policies)",
    )
    alternatives: int = Field(3, ge=0, le=50)
    confidence: float = Field(0.9, gt=0, lt=1)
    max_measurements: int = Field(
        0,
        ge=0,
        le=200,
        description="designs the device may measure (measure-and-refine, as a job); 0 answers "
        "from predictions at once. Needs a device that can measure: this host or an agent's.",
    )
    study: StudySpec | None = None
    include_degenerate: bool = Field(
        False,
        description="also consider degenerate designs (NB201 cells whose output no path "
        "reaches: chance accuracy, and a latency that only says how a runtime skips dead work)",
    )

    @model_validator(mode="before")
    @classmethod
    def _space_dataset(cls, data: Any) -> Any:
        """FBNet's default dataset is digits: the only one with FBNet accuracy."""
        if isinstance(data, dict) and data.get("space") == "fbnet" and "dataset" not in data:
            return {**data, "dataset": "digits"}
        return data

    @model_validator(mode="after")
    def _one_device(self) -> Self:
        if (self.profile is None) == (self.device is None):
            raise ValueError("give exactly one of device (registered) or profile (inline)")
        if self.max_measurements and self.profile is not None:
            raise ValueError("max_measurements needs a registered device that can measure")
        if self.max_measurements and 0 < self.max_measurements < 6:
            raise ValueError("max_measurements is 0 or at least 6 (3 shots to adapt, 3 checks)")
        return self

    @model_validator(mode="after")
    def _each_shot_once(self) -> Self:
        """A profile's design measured twice has no one latency to transfer from: refused
        here, naming it, rather than left to fail the fit (two spellings of one design count)."""
        if self.profile is None:
            return self
        codec = get_space(self.space)
        first: dict[str, int] = {}
        for i, shot in enumerate(self.profile.measurements):
            try:
                design = codec.canonical(shot.arch)
            except InvalidEncoding:
                continue  # the request's resolution names an encoding that is not the space's
            if design in first:
                raise ValueError(
                    f"profile.measurements: design {design!r} is measured twice (items "
                    f"{first[design]} and {i}); give each design once (the median of its runs)"
                )
            first[design] = i
        return self


class FrontRequest(OptimizeRequest):
    """An accuracy-latency front: the request's goals at each of ``budgets_ms`` in turn."""

    budgets_ms: list[MeasuredValue] = Field(
        min_length=1, max_length=50, description="latency budgets (ms), one answer each"
    )

    @model_validator(mode="after")
    def _a_front(self) -> FrontRequest:
        if self.goals.max_latency_ms is not None:
            raise ValueError("a front takes its latency budgets from budgets_ms, not goals")
        if self.max_measurements or self.study is not None:
            raise ValueError("a front answers from predictions: no max_measurements or study")
        return self
