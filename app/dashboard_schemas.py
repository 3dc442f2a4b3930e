"""What the dashboards' data endpoints (``/api/charts/*``) answer, typed for the schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class DeviceLine(BaseModel):
    id: int
    name: str
    kind: str
    measurements: int


class PredictorCount(BaseModel):
    target: str
    space: str
    count: int


class OptimizationLine(BaseModel):
    id: int
    device: str
    space: str
    design: str | None
    policy: str | None
    feasible: bool
    latency_ms: float | None


class JobLine(BaseModel):
    """A running job, or a recent failure with its error."""

    id: int
    kind: str
    status: str
    progress: float
    message: str | None = None
    error: str | None = None


class OverviewData(BaseModel):
    devices: list[DeviceLine]
    predictors: list[PredictorCount]
    optimizations: list[OptimizationLine]
    jobs: list[JobLine]


class Histogram(BaseModel):
    """Counts in log-spaced bins: ``edges`` has one more entry than ``counts``."""

    label: str
    n: int
    edges: list[float]
    centers: list[float]
    counts: list[int]
    median_ms: float


class FingerprintDesign(BaseModel):
    design: str
    measured: bool


class FrontPoint(BaseModel):
    """A measured design: its latency on the device and its accuracy (with the interval)."""

    design: str
    policy: str
    latency_ms: float
    accuracy: float
    low: float
    high: float
    uncertain: bool = Field(
        False, description="the accuracy's 90% interval spans more than a factor of 3"
    )


class FrontPolicy(BaseModel):
    """One measured policy: how many designs, how many got an accuracy, and from where
    (``method`` as ``accuracy_estimates`` names it, ``how`` in words, ``note`` on what is
    missing or borrowed from another dataset)."""

    policy: str
    designs: int
    with_accuracy: int
    method: str | None = None
    how: str | None = None
    note: str | None = None


class DeviceFront(BaseModel):
    """Measured latency against accuracy for a space the device measured in several
    policies. ``front`` holds every non-dominated point (fastest first); ``shown`` at most
    ``FRONT_POINTS`` of the others (``points`` counts all). ``message`` says why nothing is
    plotted."""

    space: str
    dataset: str | None
    policies: list[FrontPolicy]
    points: int
    front: list[FrontPoint]
    shown: list[FrontPoint]
    message: str | None = None


class DeviceData(BaseModel):
    device: dict[str, Any]
    fingerprint: list[FingerprintDesign]
    latency: list[Histogram]
    tasks: dict[str, int]
    fronts: list[DeviceFront]


class Scatter(BaseModel):
    """Sampled held-out designs; an accuracy-change model's also name each one's policy."""

    measured: list[float]
    predicted: list[float]
    low: list[float]
    high: list[float]
    policy: list[str] = []


class BaselineFigure(BaseModel):
    """An accuracy-change model's held-out figure beside the two model-free guesses: no
    change, and each policy's mean change. ``better``: it beats every baseline shown."""

    figure: str
    predictor: float | None
    no_change: float | None
    policy_mean: float | None
    better: bool


class ErrorHistogram(BaseModel):
    unit: str
    centers: list[float]
    counts: list[int]


class PredictorData(BaseModel):
    predictor: dict[str, Any]
    scatter: Scatter
    baselines: list[BaselineFigure] = []
    errors: ErrorHistogram
    versions: list[dict[str, Any]]


class ProxyLine(BaseModel):
    device: str
    proxy: str | None
    spearman: float | None
    reused: bool


class AgreementData(BaseModel):
    """Spearman between every pair of devices (clustered order) and each one's proxy."""

    space: str
    policy: str | None = None
    designs_used: int | None = None
    devices: list[str]
    matrix: list[list[float | None]]
    proxies: list[ProxyLine]


class Fingerprint(BaseModel):
    """The designs a new device should measure first."""

    space: str
    designs: list[str]


class TasksQueued(BaseModel):
    created: int
    existing: int


class PredictorLine(BaseModel):
    """A row of the predictors table: scope and held-out quality."""

    id: int
    target: str
    space: str
    scope: str | None
    policy: str
    version: int
    unit: str | None = Field(None, description="what RMSE and MAE are in: ms, mJ or points")
    spearman: float | None = None
    kendall: float | None = None
    mape: float | None = None
    within_10pct: float | None = None
    within_10pct_reliable: float | None = None
    rmse: float | None = None
    mae: float | None = None
    coverage: float | None = None


class TransferSummary(BaseModel):
    """One shot count over every split: geometric means, so a weak split weighs more."""

    shots: int
    geomean_spearman: float | None
    baseline_geomean_spearman: float | None
    devices_below_baseline: int
    coverage_range: list[float | None]


class TransferSplit(BaseModel):
    """One split at one shot count, averaged over its test devices."""

    split: str
    description: str
    shots: int
    spearman: float | None
    baseline_spearman: float | None
    coverage: float | None
    train: int
    test: int


class TransferRow(BaseModel):
    """One unseen device of one split at one shot count, beside the ridge baseline."""

    split: str
    description: str
    device: str
    shots: int
    spearman: float | None
    baseline_spearman: float | None
    below_baseline: bool
    coverage: float | None
    train: int


class TransferSpace(BaseModel):
    """A space's suite result file, or why it could not be read (``error``)."""

    space: str
    file: str
    error: str | None = None
    date: str | None = None
    command: str | None = None
    machine: str | None = None
    level: float | None = None
    coverage_band: list[float] | None = None
    summary: list[TransferSummary] = []
    splits: list[TransferSplit] = []
    rows: list[TransferRow] = []


class TransferSuiteData(BaseModel):
    """The cross-class validation suite: few-shot transfer to device classes never trained
    on. ``spaces`` is empty until ``command`` has written its files into ``folder``."""

    command: str
    folder: str
    below_baseline_margin: float
    spaces: list[TransferSpace]


class FamilyPoint(BaseModel):
    """One shot count of a held-out family: mean Spearman over its tested devices per method
    (``edgeopt`` and the baselines, all on the same shots)."""

    shots: int
    devices: int
    spearman: dict[str, float | None]
    coverage_90: float | None = Field(None, description="share inside the 90% intervals")
    worst_device: str | None = None
    worst_margin: float | None = Field(
        None, description="the worst device's Spearman margin over the best baseline"
    )


class FamilyCurve(BaseModel):
    """A family held out, the others as basis: its learning curve, fewest shots first."""

    family: str
    basis: int = Field(description="basis devices")
    tested: int = Field(description="devices of the family scored")
    points: list[FamilyPoint]


class FamilyOptimize(BaseModel):
    """``/optimize`` from the fingerprint on the family's devices, beside the ridge baseline."""

    family: str
    devices: int
    regret: float | None
    violation_rate: float | None
    baseline_regret: float | None
    baseline_violation_rate: float | None


class FamiliesResult(BaseModel):
    """The family benchmark's result file, or why it could not be read (``error``)."""

    file: str
    error: str | None = None
    command: str | None = None
    date: str | None = None
    machine: str | None = None
    seeds: int | None = None
    methods: list[str] = []
    families: list[FamilyCurve] = []
    optimize: list[FamilyOptimize] = []


class FamiliesData(BaseModel):
    """Validation by implementation family: each family held out in turn, quality against
    shots. ``result`` is null until ``command`` has written its file into ``folder``."""

    command: str
    folder: str
    result: FamiliesResult | None
