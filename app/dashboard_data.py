"""The numbers behind the dashboards, shaped for charts and kept small for the browser.

Large data never reaches the page raw: latency distributions are binned here, predictor
scatters use the sampled held-out points stored with each model, the rank-agreement matrix
is computed on at most ``AGREEMENT_ROWS`` designs and ordered by hierarchical clustering.
The cross-class transfer suite is read from the JSON files its benchmark writes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.domain_errors import NotFound, UnknownDevice
from app.models import (
    Architecture,
    Device,
    Job,
    Measurement,
    MeasurementTask,
    Optimization,
    Predictor,
)
from app.predictor_service import load_model
from devices.fingerprint import fingerprint
from devices.profile import Metric
from devices.reference import REFERENCE_SPACES
from predictors.answer import best_proxies
from predictors.proxy import AGREEMENT
from predictors.suite import BELOW_BASELINE

BINS = 40
AGREEMENT_ROWS = 3000
RECENT_FAILURES = 5
SUITE_COMMAND = "python benchmarks/transfer_suite.py"
# interval coverage this far from the nominal level (0.85 to 0.95 for 90% intervals) is marked
COVERAGE_TOLERANCE = 0.05


def overview(session: Session) -> dict[str, Any]:
    devices = session.execute(
        select(Device.id, Device.name, Device.kind, func.count(Measurement.id))
        .outerjoin(Measurement)
        .group_by(Device.id)
        .order_by(Device.name)
    ).all()
    predictors = session.execute(
        select(Predictor.target, Predictor.space, func.count()).group_by(
            Predictor.target, Predictor.space
        )
    ).all()
    recent = session.scalars(select(Optimization).order_by(Optimization.id.desc()).limit(10))
    active = session.scalars(
        select(Job).where(Job.status.in_(("queued", "running"))).order_by(Job.id.desc())
    ).all()
    # a failure is news until it scrolls off: the newest few stay next to the running jobs
    failed = session.scalars(
        select(Job)
        .where(Job.status.in_(("failed", "interrupted")))
        .order_by(Job.id.desc())
        .limit(RECENT_FAILURES)
    ).all()
    return {
        "devices": [{"id": i, "name": n, "kind": k, "measurements": c} for i, n, k, c in devices],
        "predictors": [{"target": t, "space": s, "count": c} for t, s, c in predictors],
        "optimizations": [
            {
                "id": o.id,
                "device": o.device_name,
                "space": o.space,
                "design": o.design,
                "policy": o.policy,
                "feasible": o.feasible,
                "latency_ms": (o.result.get("design") or {}).get("latency_ms", {}).get("value"),
            }
            for o in recent
        ],
        "jobs": [
            {
                "id": j.id,
                "kind": j.kind,
                "status": j.status,
                "progress": j.progress,
                "message": j.message,
                "error": j.error,
            }
            for j in [*active, *failed]
        ],
    }


def device_detail(session: Session, device_id: int) -> dict[str, Any]:
    device = session.get(Device, device_id)
    if device is None:
        raise UnknownDevice(f"no device with id {device_id}")
    rows = session.execute(
        select(Architecture.space, Measurement.policy, Measurement.value)
        .join(Architecture)
        .where(Measurement.device_id == device_id, Measurement.metric == Metric.LATENCY_MS.value)
    ).all()
    groups: dict[str, list[float]] = {}
    for space, policy, value in rows:
        groups.setdefault(f"{space} {policy}", []).append(value)
    histograms = []
    for label, values in sorted(groups.items()):
        v = np.asarray(values)
        edges = np.geomspace(max(v.min(), 1e-4), max(v.max(), 1e-4) * 1.0001, BINS + 1)
        counts, _ = np.histogram(v, edges)
        histograms.append(
            {
                "label": label,
                "n": len(v),
                "edges": edges.tolist(),
                "centers": np.sqrt(edges[:-1] * edges[1:]).tolist(),
                "counts": counts.tolist(),
                "median_ms": float(np.median(v)),
            }
        )
    measured = set(
        session.scalars(
            select(Architecture.encoding)
            .join(Measurement)
            .where(Measurement.device_id == device_id, Architecture.space == "nb201")
        )
    )
    prints = fingerprint("nb201")
    tasks = session.execute(
        select(MeasurementTask.status, func.count())
        .where(MeasurementTask.device_id == device_id)
        .group_by(MeasurementTask.status)
    ).all()
    return {
        "device": {
            "id": device.id,
            "name": device.name,
            "kind": device.kind,
            "hardware": device.hardware,
            "runtime": device.runtime,
            "runtime_version": device.runtime_version,
            "batch_size": device.batch_size,
            "threads": device.threads,
            "source": device.source,
            "specs": device.specs,
        },
        "fingerprint": [{"design": d, "measured": d in measured} for d in prints],
        "latency": histograms,
        "tasks": {s: c for s, c in tasks},
    }


def predictor_quality(session: Session, artifacts_dir: Path, predictor_id: int) -> dict[str, Any]:
    p = session.get(Predictor, predictor_id)
    if p is None:
        raise NotFound(f"no predictor with id {predictor_id}")
    held = load_model(artifacts_dir, p).held_out or {}
    measured = np.asarray(held.get("measured", []))
    predicted = np.asarray(held.get("predicted", []))
    errors = 100 * (predicted - measured) / np.where(measured != 0, measured, 1.0)
    if p.target == "accuracy":
        errors = predicted - measured
    counts, edges = np.histogram(errors, bins=BINS) if errors.size else (np.zeros(0), np.zeros(1))
    versions = session.scalars(
        select(Predictor)
        .where(
            Predictor.target == p.target,
            Predictor.space == p.space,
            Predictor.policy == p.policy,
            Predictor.device_id.is_(None)
            if p.device_id is None
            else Predictor.device_id == p.device_id,
            Predictor.dataset.is_(None) if p.dataset is None else Predictor.dataset == p.dataset,
        )
        .order_by(Predictor.version)
    ).all()
    device = session.get(Device, p.device_id) if p.device_id else None
    return {
        "predictor": {
            "id": p.id,
            "target": p.target,
            "space": p.space,
            "device": device.name if device else None,
            "dataset": p.dataset,
            "policy": p.policy,
            "version": p.version,
            "quality": p.quality,
            "provenance": p.provenance,
        },
        "scatter": {
            "measured": measured.tolist(),
            "predicted": predicted.tolist(),
            "low": held.get("low", []),
            "high": held.get("high", []),
        },
        "errors": {
            "unit": "points" if p.target == "accuracy" else "%",
            "centers": ((edges[:-1] + edges[1:]) / 2).tolist() if errors.size else [],
            "counts": counts.astype(int).tolist(),
        },
        "versions": [
            {"id": v.id, "version": v.version, "created_at": v.created_at, **v.quality}
            for v in versions
        ],
    }


def predictor_table(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Predictor, Device.name).outerjoin(Device).order_by(Predictor.id.desc())
    ).all()
    return [
        {
            "id": p.id,
            "target": p.target,
            "space": p.space,
            "scope": name or p.dataset,
            "policy": p.policy,
            "version": p.version,
            **{
                k: p.quality.get(k)
                for k in ("spearman", "kendall", "mape", "within_10pct", "within_10pct_reliable")
            },
            "rmse": p.quality.get("rmse_ms", p.quality.get("rmse")),
            "coverage": p.quality.get("coverage"),
        }
        for p, name in rows
    ]


_AGREEMENT_CACHE: dict[tuple[str, str, int | None, int], dict[str, Any]] = {}


def rank_agreement(session: Session, space: str, policy: str = "fp32") -> dict[str, Any]:
    """Spearman of latency between every pair of devices, clustered, with each one's proxy.

    Cached until a measurement is added (the newest id changes) or a device is removed.
    """
    key = (
        space,
        policy,
        session.scalar(select(func.max(Measurement.id))),
        session.scalar(select(func.count()).select_from(Device)) or 0,
    )
    if key not in _AGREEMENT_CACHE:
        _AGREEMENT_CACHE.clear()
        _AGREEMENT_CACHE[key] = _rank_agreement(session, space, policy)
    return _AGREEMENT_CACHE[key]


def _rank_agreement(session: Session, space: str, policy: str) -> dict[str, Any]:
    scope = (
        Architecture.space == space,
        Measurement.metric == Metric.LATENCY_MS.value,
        Measurement.policy == policy,
    )
    # the designs most devices measured, at most AGREEMENT_ROWS of them
    common = (
        select(Measurement.architecture_id)
        .join(Architecture)
        .where(*scope)
        .group_by(Measurement.architecture_id)
        .order_by(func.count().desc(), Measurement.architecture_id)
        .limit(AGREEMENT_ROWS)
        .subquery()
    )
    rows = session.execute(
        select(Measurement.device_id, Measurement.architecture_id, Measurement.value)
        .join(Architecture)
        .where(*scope, Measurement.architecture_id.in_(select(common.c.architecture_id)))
    ).all()
    if not rows:
        return {"space": space, "devices": [], "matrix": [], "proxies": []}
    data = np.array(rows, dtype=float)
    dev_ids, dev_col = np.unique(data[:, 0].astype(int), return_inverse=True)
    arch_ids, arch_row = np.unique(data[:, 1].astype(int), return_inverse=True)
    matrix = np.full((len(arch_ids), len(dev_ids)), np.nan)
    matrix[arch_row, dev_col] = data[:, 2]
    order = np.arange(len(arch_ids))
    ranks = _ranks(matrix)
    n = len(dev_ids)
    rho = np.full((n, n), np.nan)
    for i in range(n):
        both = np.isfinite(ranks[:, i : i + 1]) & np.isfinite(ranks)
        for j in range(i, n):
            mask = both[:, j]
            if mask.sum() >= 10:
                a, b = ranks[mask, i], ranks[mask, j]
                rho[i, j] = rho[j, i] = float(np.corrcoef(a, b)[0, 1])
    leaves = _cluster_order(rho)
    names = dict(
        session.execute(select(Device.id, Device.name).where(Device.id.in_(dev_ids.tolist()))).all()
    )
    labels = [names[int(dev_ids[k])] for k in leaves]
    ordered = rho[np.ix_(leaves, leaves)]
    # each device's proxy as /predict would choose it from its designs (predictors.answer);
    # a device alone has none (and best_proxies needs two columns to correlate)
    best = best_proxies(matrix) if n > 1 else [(None, None)]
    proxies = []
    for a, k in enumerate(leaves):
        proxy, rho_best = best[k]
        proxies.append(
            {
                "device": labels[a],
                "proxy": names[int(dev_ids[proxy])] if proxy is not None else None,
                "spearman": rho_best,
                "reused": rho_best is not None and rho_best >= AGREEMENT,
            }
        )
    return {
        "space": space,
        "policy": policy,
        "designs_used": len(order),
        "devices": labels,
        "matrix": [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in ordered],
        "proxies": proxies,
    }


def _ranks(matrix: np.ndarray) -> np.ndarray:
    """Column-wise average ranks over the finite values (NaN stays NaN)."""
    from scipy.stats import rankdata

    out = np.full(matrix.shape, np.nan)
    for j in range(matrix.shape[1]):
        finite = np.isfinite(matrix[:, j])
        out[finite, j] = rankdata(matrix[finite, j])
    return out


def _cluster_order(rho: np.ndarray) -> list[int]:
    if len(rho) < 3:
        return list(range(len(rho)))
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    distance = 1 - np.nan_to_num(rho, nan=0.0)
    np.fill_diagonal(distance, 0.0)
    distance = (distance + distance.T) / 2
    return [int(i) for i in leaves_list(linkage(squareform(distance, checks=False), "average"))]


def optimization_detail(session: Session, optimization_id: int) -> dict[str, Any]:
    from app.optimize_service import optimization_view, refresh_verification

    record = session.get(Optimization, optimization_id)
    if record is None:
        raise NotFound(f"no optimization with id {optimization_id}")
    refresh_verification(session, record)
    return optimization_view(record)


# -- the cross-class transfer suite --------------------------------------------------
class _Quality(BaseModel):
    spearman: float


class _Baseline(BaseModel):
    devices: dict[str, _Quality]
    mean: _Quality


class _Intervals(BaseModel):
    level: float
    coverage: dict[str, float]
    mean_coverage: float


class _Setup(BaseModel):
    train: list[str]
    test: list[str]
    shots: int
    seeds: int


class _Run(BaseModel):
    split: str
    description: str = ""
    devices: dict[str, _Quality]
    mean: _Quality
    baseline: _Baseline
    intervals: _Intervals
    setup: _Setup


class _Summary(BaseModel):
    geomean_spearman: float
    baseline_geomean_spearman: float
    devices_below_baseline: int
    coverage_range: tuple[float, float]


class _SuiteFile(BaseModel):
    """What ``benchmarks/transfer_suite.py`` writes per space: evaluate_suite's output and
    where it came from. Only the fields the dashboard shows are checked."""

    space: str
    command: str | None = None
    date: str | None = None
    machine: str | None = None
    summary: dict[int, _Summary]
    runs: list[_Run]


def _finite(value: float | None) -> float | None:
    """JSON answers carry no NaN: a figure that could not be computed is null."""
    return value if value is not None and math.isfinite(value) else None


def transfer_suite(folder: Path) -> dict[str, Any]:
    """The suite's figures for each space whose result file is in ``folder``.

    A missing file is skipped (that space was not run); one that cannot be read as a suite
    result becomes an entry with ``error`` set, so one bad file never hides the others.
    """
    spaces = []
    for space in REFERENCE_SPACES:
        path = folder / f"transfer_suite_{space}.json"
        if not path.is_file():
            continue
        suite = _read_suite(path, space)
        entry = {"error": suite} if isinstance(suite, str) else _suite_view(suite)
        spaces.append({"space": space, "file": str(path), **entry})
    return {
        "command": SUITE_COMMAND,
        "folder": str(folder),
        "below_baseline_margin": BELOW_BASELINE,
        "spaces": spaces,
    }


def _read_suite(path: Path, space: str) -> _SuiteFile | str:
    """The file's suite result, or what is wrong with it."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        return f"cannot be read: {e}"
    except json.JSONDecodeError as e:
        return f"not valid JSON: {e}"
    try:
        suite = _SuiteFile.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or 'top level'}: {err['msg']}"
            for err in e.errors()[:3]
        )
        more = f" (and {e.error_count() - 3} more)" if e.error_count() > 3 else ""
        return f"not a transfer-suite result: {problems}{more}"
    if suite.space != space:
        return f"the file holds space {suite.space!r}, not {space!r}"
    return suite


def _suite_view(suite: _SuiteFile) -> dict[str, Any]:
    splits, rows = [], []
    for run in suite.runs:
        setup = run.setup
        splits.append(
            {
                "split": run.split,
                "description": run.description,
                "shots": setup.shots,
                "spearman": _finite(run.mean.spearman),
                "baseline_spearman": _finite(run.baseline.mean.spearman),
                "coverage": _finite(run.intervals.mean_coverage),
                "train": len(setup.train),
                "test": len(setup.test),
            }
        )
        for device, q in run.devices.items():
            base = run.baseline.devices.get(device)
            ours = _finite(q.spearman)
            theirs = _finite(base.spearman) if base else None
            rows.append(
                {
                    "split": run.split,
                    "description": run.description,
                    "device": device,
                    "shots": setup.shots,
                    "spearman": ours,
                    "baseline_spearman": theirs,
                    "below_baseline": ours is not None
                    and theirs is not None
                    and ours < theirs - BELOW_BASELINE,
                    "coverage": _finite(run.intervals.coverage.get(device)),
                    "train": len(setup.train),
                }
            )
    levels = {run.intervals.level for run in suite.runs}
    level = levels.pop() if len(levels) == 1 else None
    return {
        "space": suite.space,
        "date": suite.date,
        "command": suite.command,
        "machine": suite.machine,
        "level": level,
        "coverage_band": None
        if level is None
        else [round(level - COVERAGE_TOLERANCE, 6), round(level + COVERAGE_TOLERANCE, 6)],
        "summary": [
            {
                "shots": shots,
                "geomean_spearman": _finite(s.geomean_spearman),
                "baseline_geomean_spearman": _finite(s.baseline_geomean_spearman),
                "devices_below_baseline": s.devices_below_baseline,
                "coverage_range": [_finite(x) for x in s.coverage_range],
            }
            for shots, s in sorted(suite.summary.items())
        ],
        "splits": splits,
        "rows": rows,
    }
