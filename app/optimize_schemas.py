"""What ``/optimize`` and ``/optimizations/*`` answer: typed, so the OpenAPI schema says it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas import UtcDateTime

EXTRAPOLATED = (
    "the latency prediction is below half of the device's fastest measured latency (or, for a "
    "device without measurements, of the fastest basis device's prediction for the design): "
    "nothing measured supports it; a note says so"
)
UNCERTAIN = "the latency prediction's 90% interval spans more than a factor of 3 (high / low)"


class Estimate(BaseModel):
    """A prediction (median for latency and energy, mean for accuracy) and its 90% interval;
    a recorded value has ``low == high == value`` (a digits record: the next training run's
    expected accuracy and interval, as runs differ by seed), a latency measured by
    measure-and-refine its measurement's spread as the interval."""

    value: float
    low: float
    high: float


class CandidateView(BaseModel):
    """One design in one quantization policy, with its predictions and goal probabilities."""

    arch: str
    policy: str
    accuracy: Estimate | None
    latency_ms: Estimate
    energy_mj: Estimate | None
    probabilities: dict[str, float] = Field(
        description="P(goal holds) per goal, and 'all' for every goal together"
    )
    measured_latency_ms: float | None = Field(
        None, description="measured on the device by measure-and-refine"
    )
    extrapolated: bool = Field(False, description=EXTRAPOLATED)
    uncertain: bool = Field(False, description=UNCERTAIN)


class ParetoPoint(BaseModel):
    arch: str
    policy: str
    accuracy: float | None
    latency_ms: float
    chosen: bool
    extrapolated: bool = Field(False, description=EXTRAPOLATED)
    uncertain: bool = Field(False, description=UNCERTAIN)


class GoalsView(BaseModel):
    max_latency_ms: float | None = None
    max_energy_mj: float | None = None
    min_accuracy: float | None = None
    objective: str = "accuracy"
    weights: dict[str, float] | None = None


class ShortfallView(BaseModel):
    """A goal no design meets (with the other goals) at the confidence asked, and the best
    within reach for it: set as the goal, either is met at that confidence."""

    goal: Literal["min_accuracy", "max_latency_ms", "max_energy_mj"]
    target: float
    others: list[str] = Field(description="the other goals the first best is held to")
    best_with_others: float | None = Field(
        description="the best this goal can be among designs meeting the other goals (None: "
        "no design meets them)"
    )
    best_alone: float | None = Field(description="the best this goal can be, other goals aside")
    reachable_alone: bool = Field(description="the goal is met when the other goals are dropped")


class VerifiedView(BaseModel):
    """The newest measurement of the chosen design on its device. ``meets_budget`` false is a
    miss: the answer's ``message`` then says so first. Measure-and-refine's own measurement
    meets the budget only with its spread at the requested confidence (``bound_ms`` in
    ``verification``); a later verification compares its median."""

    meets_budget: bool | None = Field(description="None when the request set no latency budget")
    measured_ms: float
    at: str | None = Field(None, description="when it was measured (ISO 8601, UTC)")
    by: Literal["measure-and-refine", "verification"]


class OptimizeAnswer(BaseModel):
    """An optimization: the chosen design (None when nothing met the goals: then
    ``shortfalls`` names the goals out of reach with the best within reach for each, and
    ``closest`` lists the designs nearest to them that meet the other goals), alternatives,
    Pareto front, provenance."""

    id: int
    device: str
    device_id: int | None
    space: str
    dataset: str
    method: str
    goals: GoalsView
    confidence: float
    created_at: UtcDateTime
    elapsed_s: float
    feasible: bool
    message: str
    design: CandidateView | None
    model_url: str | None
    alternatives: list[CandidateView]
    closest: list[CandidateView]
    shortfalls: list[ShortfallView] = Field(
        default_factory=list, description="when nothing met the goals: the goals out of reach"
    )
    candidates: int = Field(description="designs x policies with a prediction")
    shots: dict[str, int] = Field(
        default_factory=dict, description="measured designs that answered, per policy"
    )
    measurements: int = Field(0, description="designs measured on the device for this answer")
    answered_by: dict[str, dict[str, Any]]
    pareto: list[ParetoPoint]
    notes: list[str]
    verification: dict[str, Any] | None
    verified: VerifiedView | None = Field(
        None, description="the newest finished measurement of the design on the device"
    )


class OptimizationSummary(BaseModel):
    """A line of ``GET /optimizations``: the answer without its front and provenance."""

    id: int
    device: str
    device_id: int | None
    space: str
    method: str
    created_at: UtcDateTime
    feasible: bool
    message: str
    design: CandidateView | None
    model_url: str | None
    measurements: int = 0
    verified: VerifiedView | None = None


class OptimizeJob(BaseModel):
    """A measure-and-refine optimization running as a job; its result names the
    optimization (``result.optimization_id``) once done."""

    job_id: int
    status: Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
    job_url: str
    max_measurements: int
    message: str


class VerificationView(BaseModel):
    """Predicted against measured on the device; ``status`` queued or running until then."""

    status: str
    where: str | None = None
    job_id: int | None = None
    task_id: int | None = None
    measured_latency_ms: float | None = None
    predicted_latency_ms: float | None = None
    interval: list[float] | None = None
    within_interval: bool | None = None
    error_pct: float | None = None
    meets_budget: bool | None = None
    at: str | None = Field(None, description="when it was measured (ISO 8601, UTC)")


class LearnedOptimizerView(BaseModel):
    """A trained learned optimizer: what it is for, what it learned from, its figures
    (training, synthetic devices' realism, proposals on unseen synthetic devices)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    space: str
    dataset: str
    version: int
    artifact: str
    devices: list[str]
    quality: dict[str, Any]
    job_id: int | None
    created_at: UtcDateTime


class FrontPoint(BaseModel):
    """The best design at one latency budget, or none (nothing met the goals)."""

    max_latency_ms: float
    feasible: bool
    answered_by: Literal["neural", "search"]
    design: CandidateView | None


class FrontAnswer(BaseModel):
    """The accuracy-latency front of a device: one answer per budget, in one call."""

    device: str
    space: str
    dataset: str
    method: str
    confidence: float
    elapsed_s: float
    points: list[FrontPoint]
    answered_by: dict[str, dict[str, Any]]
    notes: list[str]
