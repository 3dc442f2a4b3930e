"""/optimize: from a device to the best design (architecture x quantization policy).

Candidates are every design of the space (NB201: all 15,625 cells; FBNet: the registered
designs plus a seeded random sample) in every requested policy that the device has a
latency prediction for and the dataset has accuracy for. Each gets predicted accuracy,
latency and energy with intervals, and the probability that each goal holds (log-normal
latency and energy, normal accuracy; goals treated as independent). The answer is the best
design by the objective among those whose probability of meeting every goal is at least
``confidence``; when none is, the answer says so and lists the closest. Everything is
vectorised, so a whole NB201 search answers in well under a second once models are loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import unit_of_work
from app.errors import ApiError
from app.jobs import JobContext, job_kind
from app.measure_service import HOST_DEVICE_SOURCE, is_this_host
from app.models import (
    AccuracyRecord,
    Architecture,
    Device,
    Measurement,
    MeasurementTask,
    Optimization,
)
from app.predictor_service import device_metric, latest_predictors, load_model
from app.queries import find_device
from app.schemas import OptimizeRequest
from app.task_service import queue_tasks
from devices.profile import canonical_policy
from search.optimize import Z90, pareto_front, probability_within
from search.policy import UnsupportedPolicy, parse_policy
from search.spaces import NB201, InvalidEncoding, get_space

FBNET_SAMPLE = 5000
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]
PARETO_POINTS = 200


def candidate_designs(session: Session, space: str) -> list[str]:
    """Every NB201 cell; for FBNet the registered designs plus a fixed random sample."""
    codec = get_space(space)
    if isinstance(codec, NB201):
        return codec.enumerate()
    known = session.scalars(
        select(Architecture.encoding).where(Architecture.space == space).order_by(Architecture.id)
    ).all()
    sampled = codec.sample(np.random.default_rng(0), FBNET_SAMPLE)
    return list(dict.fromkeys([*known, *sampled]))


def _accuracy(
    session: Session, artifacts_dir: Path, space: str, dataset: str, policy: str, designs: list[str]
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray] | None, dict[str, Any]]:
    """Recorded accuracy where the registry has it (exact), the predictor elsewhere."""
    records = dict(
        session.execute(
            select(Architecture.encoding, AccuracyRecord.top1)
            .join(Architecture)
            .where(
                Architecture.space == space,
                AccuracyRecord.dataset == dataset,
                AccuracyRecord.policy == policy,
            )
        ).all()
    )
    model_rows = [
        p for p in latest_predictors(session, "accuracy", space, policy) if p.dataset == dataset
    ]
    n = len(designs)
    centre, low, high = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    have = np.array([d in records for d in designs])
    if have.any():
        values = np.array([records[d] for d, h in zip(designs, have, strict=True) if h])
        centre[have], low[have], high[have] = values, values, values
    info: dict[str, Any] = {"recorded": int(have.sum())}
    if (~have).any():
        if not model_rows:
            if not have.any():
                return None, {
                    "reason": f"no accuracy records or model for {space} on {dataset!r} at {policy}"
                }
            info["note"] = f"{int((~have).sum())} designs without a record were left out"
        else:
            missing = [d for d, h in zip(designs, have, strict=True) if not h]
            model = load_model(artifacts_dir, model_rows[0])
            c, lo, hi = model.predict(get_space(space).encode(missing, policy))
            centre[~have], low[~have], high[~have] = c, lo, hi
            info["predictor_id"] = model_rows[0].id
    return (centre, low, high), info


def _p_at_least(centre: np.ndarray, low: np.ndarray, high: np.ndarray, floor: float) -> np.ndarray:
    from scipy.special import ndtr

    sigma = np.maximum((high - low) / (2 * Z90), 1e-6)
    return np.asarray(ndtr((centre - floor) / sigma), dtype=float)


def _estimate(arrays, i: int) -> dict[str, float] | None:
    if arrays is None:
        return None
    c, lo, hi = arrays
    return {"value": float(c[i]), "low": float(lo[i]), "high": float(hi[i])}


@dataclass
class Evaluation:
    """Every candidate (design x policy) with predictions, goal odds and objective score."""

    designs: list[str]
    blocks: list[tuple[str, Any, Any, Any]]
    acc: Arrays | None
    lat: Arrays
    energy: Arrays | None
    probabilities: dict[str, np.ndarray]
    p_all: np.ndarray
    score: np.ndarray
    valid: np.ndarray
    design_idx: np.ndarray
    policy_of: np.ndarray
    notes: list[str]
    answered: dict[str, Any]


def evaluate(
    session: Session,
    artifacts_dir: Path,
    req: OptimizeRequest,
    device: Device | None,
    shots: list[tuple[str, float]] | None,
    shot_policy: str,
    policies: list[str],
    designs: list[str],
) -> Evaluation:
    """Predict and score designs x policies for the request (vectorised)."""
    name = device.name if device is not None else (req.profile.name if req.profile else "?")
    notes: list[str] = []
    answered: dict[str, Any] = {}
    blocks: list[tuple[str, Arrays | None, Arrays, Arrays | None]] = []
    for policy in dict.fromkeys(policies):
        acc, acc_info = _accuracy(session, artifacts_dir, req.space, req.dataset, policy, designs)
        answered[f"accuracy.{policy}"] = acc_info
        if (acc is None and req.goals.objective in ("accuracy", "weighted")) or (
            acc is None and req.goals.min_accuracy is not None
        ):
            notes.append(f"{policy} left out: {acc_info['reason']}")
            continue
        policy_shots = shots if (shots is not None and policy == shot_policy) else None
        if shots is not None and policy != shot_policy:
            policy_shots = []
        lat, lat_info = device_metric(
            session, artifacts_dir, device, req.space, "latency_ms", policy, designs,
            shots=policy_shots, allow_proxy=req.method != "search",
        )  # fmt: skip
        answered[f"latency_ms.{policy}"] = lat_info
        if lat is None:
            notes.append(f"{policy} left out: {lat_info['reason']}")
            continue
        energy, energy_info = device_metric(
            session, artifacts_dir, device, req.space, "energy_mj", policy, designs,
            shots=[] if shots is not None else None, allow_proxy=req.method != "search",
        )  # fmt: skip
        answered[f"energy_mj.{policy}"] = energy_info
        if energy is None and req.goals.max_energy_mj is not None:
            notes.append(f"{policy} left out for the energy goal: {energy_info['reason']}")
            continue
        if energy is None and req.goals.objective == "energy":
            notes.append(f"{policy} left out: {energy_info['reason']}")
            continue
        blocks.append((policy, acc, lat, energy))
    if not blocks:
        raise ApiError(
            422,
            f"no policy can be evaluated for {name} in {req.space}: " + "; ".join(notes),
        )
    n = len(designs)
    design_idx = np.concatenate([np.arange(n)] * len(blocks))
    policy_of = np.repeat(np.arange(len(blocks)), n)

    def stack(parts: list[Arrays | None]) -> Arrays | None:
        if any(p is None for p in parts):
            return None
        full = [p for p in parts if p is not None]
        return (
            np.concatenate([p[0] for p in full]),
            np.concatenate([p[1] for p in full]),
            np.concatenate([p[2] for p in full]),
        )

    acc = stack([b[1] for b in blocks])
    lat = stack([b[2] for b in blocks])
    energy = stack([b[3] for b in blocks])
    assert lat is not None
    valid = np.isfinite(lat[0])
    if acc is not None:
        valid &= np.isfinite(acc[0])
    p_all = np.where(valid, 1.0, 0.0)
    probabilities: dict[str, np.ndarray] = {}
    g = req.goals
    if g.max_latency_ms is not None:
        probabilities["latency"] = probability_within(*lat, g.max_latency_ms)
    if g.max_energy_mj is not None and energy is not None:
        probabilities["energy"] = probability_within(*energy, g.max_energy_mj)
    if g.min_accuracy is not None and acc is not None:
        probabilities["accuracy"] = _p_at_least(*acc, g.min_accuracy)
    for p in probabilities.values():
        p_all = p_all * np.nan_to_num(p)
    score = _objective(req, acc, lat, energy)
    score = np.where(valid, score, -np.inf)
    return Evaluation(
        designs, blocks, acc, lat, energy, probabilities, p_all, score, valid,
        design_idx, policy_of, notes, answered,
    )  # fmt: skip


def study_evaluator(
    session: Session,
    artifacts_dir: Path,
    req: OptimizeRequest,
) -> Callable[[str, str], tuple[float, float, float]]:
    """Score one design x policy for an Optuna trial, with the request's device and goals."""
    device, shots, shot_policy, _ = _resolve(session, req)

    def score(design: str, policy: str) -> tuple[float, float, float]:
        try:
            ev = evaluate(
                session, artifacts_dir, req, device, shots, shot_policy, [policy], [design]
            )
        except ApiError:
            return -1e9, 1e9, 0.0
        ok = bool(ev.valid[0])
        return (
            float(ev.score[0]) if ok else -1e9,
            float(ev.lat[0][0]) if ok else 1e9,
            float(ev.p_all[0]),
        )

    return score


def _resolve(
    session: Session, req: OptimizeRequest
) -> tuple[Device | None, list[tuple[str, float]] | None, str, list[str]]:
    """The device (or inline shots) and the canonical policies of a request."""
    codec = get_space(req.space)
    device: Device | None = None
    shots: list[tuple[str, float]] | None = None
    shot_policy = "fp32"
    if req.device is not None:
        device = find_device(session, req.device)
    else:
        assert req.profile is not None
        try:
            shot_policy = canonical_policy(req.profile.policy)
            shots = [(codec.canonical(m.arch), m.latency_ms) for m in req.profile.measurements]
        except (InvalidEncoding, ValueError) as exc:
            raise ApiError(422, f"profile: {exc}") from None
    policies = []
    for policy in req.policies:
        try:
            parse_policy(req.space, policy)
            policies.append(canonical_policy(policy))
        except (UnsupportedPolicy, ValueError) as exc:
            raise ApiError(422, f"policy {policy!r}: {exc}") from None
    return device, shots, shot_policy, list(dict.fromkeys(policies))


def optimize(
    session: Session, artifacts_dir: Path, req: OptimizeRequest, storage: str | None = None
) -> Optimization:
    """Answer an optimization request and store it (the caller commits)."""
    started = time.perf_counter()
    if req.method == "neural":
        raise ApiError(
            422,
            "method 'neural' needs the learned optimizer, which is not built yet; "
            "use proxy, search or auto",
        )
    device, shots, shot_policy, policies = _resolve(session, req)
    name = device.name if device is not None else (req.profile.name if req.profile else "?")
    designs = candidate_designs(session, req.space)
    study_note = None
    if req.study is not None:
        if storage is None:
            raise ApiError(422, "no Optuna storage configured for studies")
        found = run_study(session, artifacts_dir, req, storage)
        designs = list(dict.fromkeys([*designs, *found]))
        study_note = f"study {req.study.name!r}: {len(found)} designs from its trials joined"
    ev = evaluate(session, artifacts_dir, req, device, shots, shot_policy, policies, designs)
    blocks, acc, lat, energy = ev.blocks, ev.acc, ev.lat, ev.energy
    probabilities, p_all, score, valid = ev.probabilities, ev.p_all, ev.score, ev.valid
    design_idx, policy_of, notes, answered = ev.design_idx, ev.policy_of, ev.notes, ev.answered
    if study_note:
        notes.append(study_note)
    feasible = p_all >= req.confidence
    order = np.argsort(-np.where(feasible, score, -np.inf), kind="stable")
    n_feasible = int(feasible.sum())

    def view(i: int) -> dict[str, Any]:
        return {
            "arch": designs[int(design_idx[i])],
            "policy": blocks[int(policy_of[i])][0],
            "accuracy": _estimate(acc, i),
            "latency_ms": _estimate(lat, i),
            "energy_mj": _estimate(energy, i),
            "probabilities": {k: float(v[i]) for k, v in probabilities.items()}
            | {"all": float(p_all[i])},
        }

    if n_feasible:
        chosen = int(order[0])
        alternatives = [view(int(i)) for i in order[1 : 1 + req.alternatives]]
        closest: list[dict[str, Any]] = []
        message = (
            f"best of {n_feasible} designs meeting every goal with probability >= "
            f"{req.confidence:.2f}"
        )
    else:
        likeliest = np.argsort(-p_all, kind="stable")
        chosen = int(likeliest[0])
        alternatives = []
        closest = [view(int(i)) for i in likeliest[: max(3, req.alternatives)]]
        message = (
            f"no design meets the goals with probability >= {req.confidence:.2f}; the closest "
            f"(highest probability {p_all[chosen]:.2f}) are listed"
        )
    front_metric = acc[0] if acc is not None else -lat[0]
    front = pareto_front(np.where(valid, front_metric, -np.inf), np.where(valid, lat[0], np.inf))
    if len(front) > PARETO_POINTS:
        front = front[np.linspace(0, len(front) - 1, PARETO_POINTS).astype(int)]
    pareto = [
        {
            "arch": designs[int(design_idx[i])],
            "policy": blocks[int(policy_of[i])][0],
            "accuracy": float(acc[0][i]) if acc is not None else None,
            "latency_ms": float(lat[0][i]),
            "chosen": bool(i == chosen),
        }
        for i in front
    ]
    elapsed = time.perf_counter() - started
    chosen_view = view(chosen)
    result = {
        "feasible": bool(n_feasible),
        "message": message,
        "design": chosen_view,
        "alternatives": alternatives,
        "closest": closest,
        "candidates": int(valid.sum()),
        "answered_by": answered,
        "pareto": pareto,
        "notes": notes,
    }
    record = Optimization(
        device_id=device.id if device else None,
        device_name=name,
        space=req.space,
        method=req.method,
        feasible=bool(n_feasible),
        design=chosen_view["arch"],
        policy=chosen_view["policy"],
        request=req.model_dump(mode="json"),
        result=result,
        verification=None,
        elapsed_s=elapsed,
    )
    session.add(record)
    session.flush()
    return record


def _objective(req: OptimizeRequest, acc, lat, energy) -> np.ndarray:
    g = req.goals
    if g.objective == "latency":
        return -lat[0]
    if g.objective == "energy":
        return -energy[0]
    if g.objective == "accuracy":
        return acc[0]
    w = {"accuracy": 1.0, "latency": 0.1, "energy": 0.0, **(g.weights or {})}
    score = w["accuracy"] * (acc[0] if acc is not None else 0.0) - w["latency"] * lat[0]
    if energy is not None:
        score = score - w["energy"] * energy[0]
    return np.asarray(score)


def optimization_view(record: Optimization) -> dict[str, Any]:
    return {
        "id": record.id,
        "device": record.device_name,
        "device_id": record.device_id,
        "space": record.space,
        "method": record.method,
        "created_at": record.created_at,
        "elapsed_s": record.elapsed_s,
        "model_url": f"/optimizations/{record.id}/model.onnx",
        "verification": record.verification,
        **record.result,
    }


class VerifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    optimization_id: int = Field(ge=1)


def is_host_device(device: Device) -> bool:
    """A thread setting of a machine measured by ``edgeopt measure`` (this one or another)."""
    return device.source == HOST_DEVICE_SOURCE and device.threads is not None


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
    }


def start_verification(session: Session, record: Optimization, runner: Any) -> dict[str, Any]:
    """Measure the chosen design on its device: a host job, or a task for the device's agent."""
    if record.device_id is None:
        raise ApiError(409, "an inline profile has no registered device to verify on")
    device = session.get(Device, record.device_id)
    assert device is not None
    if is_host_device(device):
        if not is_this_host(device):
            raise ApiError(
                409,
                f"device {device.name} was measured on other hardware (hardware id "
                f"{(device.specs or {}).get('hardware_id')}); it cannot be verified here",
            )
        job_id = runner.submit("verify-optimization", {"optimization_id": record.id})
        record.verification = {"status": "running", "job_id": job_id, "where": "host"}
    else:
        queue_tasks(session, device, record.space, [record.design], [record.policy], 0)
        task = session.scalar(
            select(MeasurementTask)
            .join(Architecture)
            .where(
                MeasurementTask.device_id == device.id,
                Architecture.encoding == record.design,
                MeasurementTask.policy == record.policy,
            )
        )
        assert task is not None
        record.verification = {"status": "queued", "task_id": task.id, "where": "agent"}
        refresh_verification(session, record)
    return record.verification or {}


@job_kind("verify-optimization", VerifyParams)
def _verify_job(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from app.measure_service import MeasureParams, measure_on_host

    optimization_id = VerifyParams.model_validate(params).optimization_id
    with ctx.factory() as s:
        record = s.get(Optimization, optimization_id)
        if record is None or record.device_id is None:
            raise ValueError(f"no optimization {optimization_id} on a registered device")
        device = s.get(Device, record.device_id)
        assert device is not None and device.threads is not None
        if not is_this_host(device):
            raise ValueError(f"device {device.name} is not this machine; cannot verify here")
        design, policy, space, threads = record.design, record.policy, record.space, device.threads
        host = (device.specs or {}).get("host", "host")
    measure_on_host(
        ctx.factory,
        MeasureParams.model_validate(
            {
                "space": space,
                "designs": [design],
                "policies": [policy],
                "threads": [threads],
                "host": host,
                "replace": True,
            }
        ),
        ctx,
    )
    with unit_of_work(ctx.factory) as s:
        record = s.get(Optimization, optimization_id)
        assert record is not None
        measured = s.scalar(
            select(Measurement.value)
            .join(Architecture)
            .where(
                Measurement.device_id == record.device_id,
                Architecture.encoding == design,
                Measurement.policy == policy,
                Measurement.metric == "latency_ms",
            )
        )
        assert measured is not None
        record.verification = _compared(
            record, float(measured), {"job_id": ctx.job_id, "where": "host"}
        )
        return dict(record.verification)


def run_study(
    session: Session, artifacts_dir: Path, req: OptimizeRequest, storage: str
) -> list[str]:
    """Open (or join) the request's Optuna study, run its trials here, return its designs."""
    from search.optuna_search import open_study, results, run_trials

    assert req.study is not None
    study = open_study(storage, req.study.name, req.study.seed)
    if "request" not in study.user_attrs:
        study.set_user_attr("request", req.model_dump(mode="json", exclude={"study"}))
    if req.study.trials:
        evaluate_one = study_evaluator(session, artifacts_dir, req)
        _, _, _, policies = _resolve(session, req)
        run_trials(
            study, req.space, policies, evaluate_one, req.study.trials, req.confidence, "api"
        )
    return [r.design for r in results(study)]
