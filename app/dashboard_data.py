"""The numbers behind the dashboards, shaped for charts and kept small for the browser.

Large data never reaches the page raw: latency distributions are binned here, predictor
scatters use the sampled held-out points stored with each model, a device's latency-accuracy
front sends every front point but at most ``FRONT_POINTS`` of the others, the rank-agreement
matrix is computed on at most ``AGREEMENT_ROWS`` designs and ordered by hierarchical
clustering (``predictors.proxy``). Benchmark results the dashboards draw are read in
``app.dashboard_results``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accuracy_service import accuracy_datasets, accuracy_estimates
from app.domain_errors import Conflict, NotFound, UnknownDevice
from app.measure_service import HOST_DEVICE_SOURCE
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
from app.read_cache import data_stamp, remember
from devices.fingerprint import fingerprint
from devices.profile import Metric
from predictors.answer import best_proxies
from predictors.proxy import AGREEMENT, cluster_order, pairwise_spearman
from search.optimize import pareto_front
from search.plausibility import uncertain

BINS = 40
AGREEMENT_ROWS = 3000
RECENT_FAILURES = 5
# a device's latency-accuracy points beyond its front sent to the browser (a seeded sample)
FRONT_POINTS = 2000
# the dataset a device's front takes accuracy from, in order of preference: EdgeOpt measures
# digits itself (every policy, on this host), published accuracies are CIFAR-10's
HOST_DATASETS = ("digits", "cifar10")
OTHER_DATASETS = ("cifar10", "digits")
# what each target's errors are in: accuracy and its change from fp32 in top-1 points
UNITS = {"latency_ms": "ms", "energy_mj": "mJ", "accuracy": "points", "accuracy_change": "points"}
POINTS = ("accuracy", "accuracy_change")


def finite(value: float | None) -> float | None:
    """JSON answers carry no NaN: a figure that could not be computed is null."""
    return value if value is not None and math.isfinite(value) else None


def figures(quality: dict[str, Any]) -> dict[str, Any]:
    """A quality dict with its NaN figures (a Spearman of constant predictions) as null."""
    return {k: finite(v) if isinstance(v, float) else v for k, v in (quality or {}).items()}


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


def device_detail(session: Session, artifacts_dir: Path, device_id: int) -> dict[str, Any]:
    device = session.get(Device, device_id)
    if device is None:
        raise UnknownDevice(f"no device with id {device_id}")
    rows = session.execute(
        select(Architecture.space, Measurement.policy, Measurement.value, Architecture.encoding)
        .join(Architecture)
        .where(Measurement.device_id == device_id, Measurement.metric == Metric.LATENCY_MS.value)
        .order_by(Measurement.id)
    ).all()
    groups: dict[str, list[float]] = {}
    by_space: dict[str, dict[str, tuple[list[str], list[float]]]] = {}
    for space, policy, value, design in rows:
        groups.setdefault(f"{space} {policy}", []).append(value)
        designs, values = by_space.setdefault(space, {}).setdefault(policy, ([], []))
        designs.append(design)
        values.append(value)
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
        "fronts": [
            latency_accuracy_front(session, artifacts_dir, device, space, measured_policies)
            for space, measured_policies in sorted(by_space.items())
            if len(measured_policies) > 1
        ],
    }


def _policy_order(policy: str) -> tuple[bool, str]:
    return policy != "fp32", policy


def front_dataset(session: Session, device: Device, space: str, policies: list[str]) -> str | None:
    """The dataset with accuracy for the most of ``policies``, preferring digits on this
    host's devices (EdgeOpt measured it there, every policy) and CIFAR-10 elsewhere."""
    preferred = HOST_DATASETS if device.source == HOST_DEVICE_SOURCE else OTHER_DATASETS
    having = {p: set(accuracy_datasets(session, space, p)) for p in policies}
    others = sorted(set().union(*having.values()) - set(preferred))
    covered = [(sum(d in h for h in having.values()), d) for d in [*preferred, *others]]
    best = max((n for n, _ in covered), default=0)
    return next((d for n, d in covered if n == best), None) if best else None


def _method(info: dict[str, Any]) -> str:
    """How a policy's accuracy was obtained, in words."""
    method = info.get("method")
    if method == "fp32+change":
        fp32 = info.get("fp32", {})
        change = info.get("change", {})
        how = f"fp32 accuracy ({fp32.get('method')}) plus the predicted change"
        if change.get("predictor_id") is not None:
            how += f" (predictor {change['predictor_id']}, learned on {change.get('learned_on')})"
        return how
    if method == "space-model":
        return f"recorded where measured, else predictor {info.get('predictor_id')}"
    return str(method)


def latency_accuracy_front(
    session: Session, artifacts_dir: Path, device: Device, space: str,
    measured: dict[str, tuple[list[str], list[float]]],
) -> dict[str, Any]:  # fmt: skip
    """Measured latency against accuracy for every (design, policy) the device measured in
    a space, with the non-dominated points apart; where no accuracy exists, ``message`` says
    so and nothing is plotted.

    Accuracy is the registry's answer for the chosen dataset (:func:`accuracy_estimates`:
    recorded, the dataset's model, or fp32 plus the predicted change of the policy).
    """
    policies = sorted(measured, key=_policy_order)
    dataset = front_dataset(session, device, space, policies)
    lines: list[dict[str, Any]] = []
    latency, accuracy, low, high, designs, policy_of = [], [], [], [], [], []
    for policy in policies:
        encodings, values = measured[policy]
        line: dict[str, Any] = {"policy": policy, "designs": len(encodings), "with_accuracy": 0}
        lines.append(line)
        if dataset is None:
            continue
        try:
            arrays, info = accuracy_estimates(
                session, artifacts_dir, space, dataset, policy, encodings
            )
        except Conflict as exc:  # a stale model: say so, keep the other policies
            line.update(method=None, note=str(exc))
            continue
        if arrays is None:
            line.update(method=None, note=info.get("reason"))
            continue
        centre, lo, hi = arrays
        known = np.isfinite(centre)
        line.update(method=info["method"], how=_method(info), with_accuracy=int(known.sum()))
        notes = [info.get("note"), (info.get("change") or {}).get("note")]
        line["note"] = "; ".join(n for n in notes if n) or None
        for i in np.flatnonzero(known):
            latency.append(values[i])
            accuracy.append(centre[i])
            low.append(lo[i])
            high.append(hi[i])
            designs.append(encodings[i])
            policy_of.append(policy)
    answer: dict[str, Any] = {
        "space": space,
        "dataset": dataset,
        "policies": lines,
        "points": len(latency),
        "shown": [],
        "front": [],
        "message": None,
    }
    if not latency:
        answer["message"] = (
            f"no accuracy for {space} at {', '.join(policies)} on any dataset: upload accuracy "
            "records (POST /accuracy-records) or train an accuracy model"
            if dataset is None
            else f"no accuracy on {dataset} for the designs this device measured"
        )
        return answer
    lat, acc = np.asarray(latency), np.asarray(accuracy)
    wide = uncertain(np.asarray(low), np.asarray(high))  # accuracy's interval: latency is measured
    front = np.zeros(len(lat), dtype=bool)
    front[pareto_front(acc, lat)] = True
    rest = np.flatnonzero(~front)
    if len(rest) > FRONT_POINTS:
        rest = np.sort(np.random.default_rng(0).choice(rest, FRONT_POINTS, replace=False))

    def point(i: int) -> dict[str, Any]:
        return {
            "design": designs[i],
            "policy": policy_of[i],
            "latency_ms": float(lat[i]),
            "accuracy": float(acc[i]),
            "low": float(low[i]),
            "high": float(high[i]),
            "uncertain": bool(wide[i]),
        }

    answer["front"] = [point(int(i)) for i in np.flatnonzero(front)[np.argsort(lat[front])]]
    answer["shown"] = [point(int(i)) for i in rest]
    return answer


def predictor_quality(session: Session, artifacts_dir: Path, predictor_id: int) -> dict[str, Any]:
    p = session.get(Predictor, predictor_id)
    if p is None:
        raise NotFound(f"no predictor with id {predictor_id}")
    held = load_model(artifacts_dir, p).held_out or {}
    measured = np.asarray(held.get("measured", []))
    predicted = np.asarray(held.get("predicted", []))
    errors = 100 * (predicted - measured) / np.where(measured != 0, measured, 1.0)
    if p.target in POINTS:  # points of top-1 (or of its change): a difference, not a ratio
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
            "quality": figures(p.quality),
            "provenance": p.provenance,
        },
        "scatter": {
            "measured": measured.tolist(),
            "predicted": predicted.tolist(),
            "low": held.get("low", []),
            "high": held.get("high", []),
            # an accuracy-change model's held-out pairs each have their policy
            "policy": held.get("policy", []),
        },
        "baselines": change_baselines(p.quality) if p.target == "accuracy_change" else [],
        "errors": {
            "unit": "points" if p.target in POINTS else "%",
            "centers": ((edges[:-1] + edges[1:]) / 2).tolist() if errors.size else [],
            "counts": counts.astype(int).tolist(),
        },
        "versions": [
            {"id": v.id, "version": v.version, "created_at": v.created_at, **figures(v.quality)}
            for v in versions
        ],
    }


def change_baselines(quality: dict[str, Any]) -> list[dict[str, Any]]:
    """An accuracy-change model's held-out figures beside what needs no model: predicting
    no change at all, and predicting each policy's mean change (over the training pairs).
    A constant guess ranks nothing, so "no change" has no Spearman."""

    def figure(name: str, key: str, no_change: str | None, policy_mean: str, lower: bool) -> dict:
        ours = finite(quality.get(key))
        theirs = [finite(quality.get(k)) if k else None for k in (no_change, policy_mean)]
        known = [t for t in theirs if t is not None]
        return {
            "figure": name,
            "predictor": ours,
            "no_change": theirs[0],
            "policy_mean": theirs[1],
            "better": ours is not None
            and bool(known)
            and all(ours < t if lower else ours > t for t in known),
        }

    return [
        figure("MAE (points)", "mae", "mae_no_change", "mae_policy_mean", lower=True),
        figure("Spearman", "spearman", None, "spearman_policy_mean", lower=False),
    ]


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
            "unit": UNITS.get(p.target),
            **{
                k: finite(p.quality.get(k))
                for k in ("spearman", "kendall", "mape", "within_10pct", "within_10pct_reliable")
            },
            "rmse": finite(p.quality.get("rmse_ms", p.quality.get("rmse"))),
            "mae": finite(p.quality.get("mae")),
            "coverage": finite(p.quality.get("coverage")),
        }
        for p, name in rows
    ]


def rank_agreement(session: Session, space: str, policy: str = "fp32") -> dict[str, Any]:
    """Spearman of latency between every pair of devices, clustered, with each one's proxy.

    Remembered until a measurement, device or predictor changes (``app.read_cache``): it
    reads every device's measurements of the space, seconds on a large registry.
    """
    key = ("agreement", space, policy, *data_stamp(session))
    return remember(key, lambda: _rank_agreement(session, space, policy))


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
    n = len(dev_ids)
    rho = pairwise_spearman(matrix)
    leaves = cluster_order(rho)
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


def optimization_detail(session: Session, optimization_id: int) -> dict[str, Any]:
    from app.optimize_service import optimization_view
    from app.verify_service import refresh_verification

    record = session.get(Optimization, optimization_id)
    if record is None:
        raise NotFound(f"no optimization with id {optimization_id}")
    refresh_verification(session, record)
    return optimization_view(record)
