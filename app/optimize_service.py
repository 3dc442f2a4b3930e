"""/optimize in the service: load what the optimizer needs, call it, store the answer.

Candidates are every design of the space (NB201: all 15,625 cells; FBNet: the registered
designs plus a seeded random sample) in every requested policy that the device has a
latency prediction for and the dataset has accuracy for. Predictions come from
``predictors.answer`` (own model, proxy or transfer) through ``app.predictor_service``; the
choice is ``search.optimize.choose`` (from predictions) or ``search.optimize.refine``
(measure-and-refine, a job, on a device that can measure: this host or an agent's). The
benchmark ``edgeopt eval optimize`` calls the same two functions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import unit_of_work
from app.domain_errors import Conflict, InvalidInput, NoModel, NotFound, NotMeasurable
from app.jobs import JobContext, job_kind
from app.measure_service import HOST_DEVICE_SOURCE, is_this_host
from app.models import Architecture, Device, Measurement, MeasurementTask, Optimization, utcnow
from app.plausibility import Shown, flag_latency
from app.predictor_service import (
    accuracy_estimates,
    device_metric,
    metric_basis,
)
from app.queries import find_device
from app.reference_import import REFERENCE_SOURCE
from app.schemas import FrontRequest, OptimizeRequest
from app.task_service import queue_tasks
from devices.profile import canonical_policy
from predictors.transfer import TransferModel
from search.optimize import (
    GOAL_FIELDS,
    Candidates,
    Choice,
    Estimates,
    Goals,
    Timing,
    choose,
    measured_bound,
    refine,
    repeat_spread,
    shot_count,
)
from search.policy import PER_UNIT, UnsupportedPolicy, expand, parse_policy
from search.spaces import NB201, InvalidEncoding, get_space

FBNET_SAMPLE = 5000
AGENT_WAIT_S = 900.0  # longest wait for an agent to measure one design


def candidate_designs(session: Session, space: str, include_degenerate: bool = False) -> list[str]:
    """Every NB201 cell; for FBNet the registered designs plus a fixed random sample.

    Degenerate designs (output disconnected: chance accuracy, a latency that says how a
    runtime skips dead work) are left out unless asked for.
    """
    codec = get_space(space)
    if isinstance(codec, NB201):
        return codec.enumerate() if include_degenerate else list(_working_cells(space))
    known = session.scalars(
        select(Architecture.encoding).where(Architecture.space == space).order_by(Architecture.id)
    ).all()
    sampled = codec.sample(np.random.default_rng(0), FBNET_SAMPLE)
    designs = list(dict.fromkeys([*known, *sampled]))
    if include_degenerate:
        return designs
    dead = codec.degenerate(designs)
    return [d for d, x in zip(designs, dead, strict=True) if not x]


@lru_cache(maxsize=4)
def _working_cells(space: str) -> tuple[str, ...]:
    """The enumerated cells that are not degenerate, in enumeration order (computed once)."""
    codec = get_space(space)
    assert isinstance(codec, NB201)  # only an enumerated space has every cell at hand
    cells = codec.enumerate()
    return tuple(c for c, dead in zip(cells, codec.degenerate(cells), strict=True) if not dead)


@dataclass(frozen=True)
class Resolved:
    """A request's device (registered, or an inline profile's shots) and its policies."""

    device: Device | None
    name: str
    shots: list[tuple[str, float]] | None  # inline profile's measurements, in shot_policy
    shot_policy: str
    policies: list[str]


def resolve(session: Session, req: OptimizeRequest) -> Resolved:
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
            raise InvalidInput(f"profile: {exc}") from None
    policies = []
    for policy in expand(req.space, req.policies, enumerate_all=req.study is None):
        try:
            parse_policy(req.space, policy)
            policies.append(canonical_policy(policy))
        except (UnsupportedPolicy, ValueError) as exc:
            raise InvalidInput(f"policy {policy!r}: {exc}") from None
    name = device.name if device is not None else (req.profile.name if req.profile else "?")
    return Resolved(device, name, shots, shot_policy, list(dict.fromkeys(policies)))


def goals_of(req: OptimizeRequest) -> Goals:
    """The request's goals as the optimizer's value object."""
    g = req.goals
    return Goals(
        max_latency_ms=g.max_latency_ms,
        max_energy_mj=g.max_energy_mj,
        min_accuracy=g.min_accuracy,
        objective=g.objective,
        weights=tuple(sorted((g.weights or {}).items())),
    )


@dataclass
class Predicted:
    """Every candidate (design x policy) with its predictions, and how each was answered."""

    designs: list[str]
    policies: list[str]  # the policies that could be evaluated, in block order
    candidates: Candidates
    answered: dict[str, Any]
    notes: list[str]
    shots: dict[str, int]
    # per shown candidate: extrapolated, uncertain (mark_plausibility)
    flags: dict[int, dict[str, bool]] = field(default_factory=dict)


def _shots_for(resolved: Resolved, policy: str, extra: dict[str, list[tuple[str, float]]]):
    """The measurements that answer a policy: the profile's, or the device's plus ``extra``."""
    if resolved.shots is not None:
        return resolved.shots if policy == resolved.shot_policy else []
    if not extra.get(policy):
        return None  # the device's stored measurements
    return extra[policy]


def latency_blocks(
    session: Session,
    artifacts_dir: Path,
    req: OptimizeRequest,
    resolved: Resolved,
    designs: list[str],
    policies: list[str],
    measured: dict[str, list[tuple[str, float]]] | None = None,
) -> tuple[list[Estimates | None], dict[str, Any]]:
    """Latency of every design per policy (None where nothing can answer), and how."""
    out: list[Estimates | None] = []
    answered: dict[str, Any] = {}
    for policy in policies:
        arrays, info = device_metric(
            session, artifacts_dir, resolved.device, req.space, "latency_ms", policy, designs,
            shots=_shots_for(resolved, policy, measured or {}),
            allow_proxy=req.method != "search", proxy_evidence=req.method != "proxy",
        )  # fmt: skip
        answered[f"latency_ms.{policy}"] = info
        out.append(None if arrays is None else Estimates(*arrays))
    return out, answered


def _left_out_notes(left_out: list[tuple[str, str]], shown: int = 3) -> list[str]:
    """One note per policy left out, or for many (per-unit requests) one naming a few."""
    if len(left_out) <= shown:
        return [f"{policy} left out: {why}" for policy, why in left_out]
    names = ", ".join(policy for policy, _ in left_out[:shown])
    return [
        f"{len(left_out)} policies left out ({names}, ...); the first because: {left_out[0][1]}"
    ]


def predict_candidates(
    session: Session,
    artifacts_dir: Path,
    req: OptimizeRequest,
    resolved: Resolved,
    designs: list[str],
    latency_optional: bool = False,
) -> Predicted:
    """Predict accuracy, latency and energy of designs x policies for the request.

    ``latency_optional`` keeps a policy whose latency nothing can answer yet (NaN), for
    measure-and-refine, whose shots will answer it.
    """
    notes: list[str] = []
    answered: dict[str, Any] = {}
    needs_accuracy = req.goals.objective in ("accuracy", "weighted") or (
        req.goals.min_accuracy is not None
    )
    latency, lat_info = latency_blocks(
        session, artifacts_dir, req, resolved, designs, resolved.policies
    )
    answered |= lat_info
    kept: list[str] = []
    left_out: list[tuple[str, str]] = []  # (policy, why)
    blocks: list[tuple[Estimates | None, Estimates, Estimates | None]] = []
    for policy, lat in zip(resolved.policies, latency, strict=True):
        acc, acc_info = accuracy_estimates(
            session, artifacts_dir, req.space, req.dataset, policy, designs
        )
        answered[f"accuracy.{policy}"] = acc_info
        if acc is None and needs_accuracy:
            left_out.append((policy, acc_info["reason"]))
            continue
        if lat is None and latency_optional:
            lat = Estimates(*(np.full(len(designs), np.nan),) * 3)
        if lat is None:
            left_out.append((policy, answered[f"latency_ms.{policy}"]["reason"]))
            continue
        energy, energy_info = device_metric(
            session, artifacts_dir, resolved.device, req.space, "energy_mj", policy, designs,
            shots=[] if resolved.shots is not None else None,
            allow_proxy=req.method != "search", proxy_evidence=req.method != "proxy",
        )  # fmt: skip
        answered[f"energy_mj.{policy}"] = energy_info
        if energy is None and (
            req.goals.max_energy_mj is not None or req.goals.objective == "energy"
        ):
            notes.append(f"{policy} left out for the energy goal: {energy_info['reason']}")
            continue
        kept.append(policy)
        blocks.append(
            (
                None if acc is None else Estimates(*acc),
                lat,
                None if energy is None else Estimates(*energy),
            )
        )
    notes[:0] = _left_out_notes(left_out)
    if not blocks:
        raise NoModel(
            f"no policy can be evaluated for {resolved.name} in {req.space}: " + "; ".join(notes)
        )
    n = len(designs)
    accs = [b[0] for b in blocks]
    energies = [b[2] for b in blocks]
    candidates = Candidates(
        design=np.concatenate([np.arange(n)] * len(blocks)),
        policy=np.repeat(np.arange(len(blocks)), n),
        latency=Estimates.concat([b[1] for b in blocks]),
        accuracy=None if any(a is None for a in accs) else Estimates.concat(accs),  # type: ignore[arg-type]
        energy=None if any(e is None for e in energies) else Estimates.concat(energies),  # type: ignore[arg-type]
    )
    shots = {p: int(answered[f"latency_ms.{p}"].get("shots", 0)) for p in kept}
    return Predicted(designs, kept, candidates, answered, notes, shots)


NOT_FLAGGED = {"extrapolated": False, "uncertain": False}


def mark_plausibility(
    session: Session,
    artifacts_dir: Path,
    resolved: Resolved,
    space: str,
    predicted: Predicted,
    choice: Choice,
) -> None:
    """Flag the shown candidates' latency predictions (chosen, alternatives, closest, front)
    that are extrapolations or too uncertain to read, with a note; a measured latency is
    evidence, not a prediction, and is not flagged."""
    picked = [choice.index] if choice.index is not None else []
    rows = [
        i
        for i in dict.fromkeys([*picked, *choice.alternatives, *choice.closest, *choice.pareto])
        if i not in choice.measured
    ]
    c = predicted.candidates
    shown = [
        Shown(
            predicted.designs[int(c.design[i])],
            predicted.policies[int(c.policy[i])],
            float(c.latency.value[i]),
            float(c.latency.low[i]),
            float(c.latency.high[i]),
        )
        for i in rows
    ]
    flags, notes = flag_latency(
        session, artifacts_dir, resolved.device, space, shown, resolved.shots, resolved.shot_policy
    )
    predicted.flags = dict(zip(rows, flags, strict=True))
    predicted.notes.extend(n for n in notes if n not in predicted.notes)


def _view(predicted: Predicted, choice: Choice, i: int) -> dict[str, Any]:
    c = predicted.candidates
    return {
        "arch": predicted.designs[int(c.design[i])],
        "policy": predicted.policies[int(c.policy[i])],
        "accuracy": c.accuracy.at(i) if c.accuracy is not None else None,
        "latency_ms": c.latency.at(i),
        "energy_mj": c.energy.at(i) if c.energy is not None else None,
        "probabilities": {k: float(v[i]) for k, v in choice.probabilities.items()},
        "measured_latency_ms": choice.measured.get(i),
        **predicted.flags.get(i, NOT_FLAGGED),
    }


def answer_json(predicted: Predicted, choice: Choice) -> dict[str, Any]:
    """The stored result of an optimization (the ``OptimizeAnswer`` fields it computes)."""
    c = predicted.candidates
    pareto = [
        {
            "arch": predicted.designs[int(c.design[i])],
            "policy": predicted.policies[int(c.policy[i])],
            "accuracy": float(c.accuracy.value[i]) if c.accuracy is not None else None,
            "latency_ms": float(c.latency.value[i]),
            "chosen": i == choice.index,
            **predicted.flags.get(i, NOT_FLAGGED),
        }
        for i in choice.pareto
    ]
    return {
        "feasible": choice.feasible,
        "message": choice.message,
        "design": None if choice.index is None else _view(predicted, choice, choice.index),
        "alternatives": [_view(predicted, choice, i) for i in choice.alternatives],
        "closest": [_view(predicted, choice, i) for i in choice.closest],
        "shortfalls": [
            {
                "goal": GOAL_FIELDS[s.goal],
                "target": s.target,
                "others": [GOAL_FIELDS[g] for g in s.others],
                "best_with_others": s.best_with_others,
                "best_alone": s.best_alone,
                "reachable_alone": s.reachable_alone,
            }
            for s in choice.shortfalls
        ],
        "candidates": choice.valid,
        "shots": predicted.shots,
        "measurements": 0,
        "answered_by": predicted.answered,
        "pareto": pareto,
        "notes": predicted.notes,
    }


def _designs_for(
    session: Session, artifacts_dir: Path, req: OptimizeRequest, storage: str | None
) -> tuple[list[str], str | None]:
    designs = candidate_designs(session, req.space, req.include_degenerate)
    if req.study is None:
        return designs, None
    if storage is None:
        raise InvalidInput("no Optuna storage configured for studies")
    found = run_study(session, artifacts_dir, req, storage)
    return (
        list(dict.fromkeys([*designs, *found])),
        f"study {req.study.name!r}: {len(found)} designs from its trials joined",
    )


def _record(
    req: OptimizeRequest, resolved: Resolved, result: dict[str, Any], elapsed: float
) -> Optimization:
    design = result["design"]
    return Optimization(
        device_id=resolved.device.id if resolved.device else None,
        device_name=resolved.name,
        space=req.space,
        method=req.method,
        feasible=bool(result["feasible"]),
        design=design["arch"] if design else None,
        policy=design["policy"] if design else None,
        request=req.model_dump(mode="json"),
        result=result,
        verification=None,
        elapsed_s=elapsed,
    )


def optimize(
    session: Session, artifacts_dir: Path, req: OptimizeRequest, storage: str | None = None
) -> Optimization:
    """Answer an optimization request from predictions and store it (the caller commits)."""
    record = answer_optimization(session, artifacts_dir, req, storage)
    session.add(record)
    session.flush()
    return record


def answer_optimization(
    session: Session, artifacts_dir: Path, req: OptimizeRequest, storage: str | None = None
) -> Optimization:
    """The optimization record of a request, not yet stored: reads only, so the service
    computes it outside the database's write lock and takes that lock only to store it."""
    started = time.perf_counter()
    if req.max_measurements:
        raise InvalidInput("a request with max_measurements runs as a job (refine_job)")
    resolved = resolve(session, req)
    designs, study_note = _designs_for(session, artifacts_dir, req, storage)
    unusable = None  # why ``auto``'s learned optimizer could not answer, where it could not
    try:
        learned = _learned_choice(session, artifacts_dir, req, resolved, designs)
    except NoModel as exc:
        if req.method != "auto":
            raise
        learned, unusable = None, str(exc)
    if learned is not None and learned[1].index is not None:
        predicted, choice = learned
    else:
        predicted = predict_candidates(session, artifacts_dir, req, resolved, designs)
        choice = _choose(predicted, req)
        if learned is not None:
            tried = learned[0].answered["optimizer"]
            predicted.answered["optimizer"] = {
                "method": "search",
                "decision": f"none of the learned optimizer's {tried['proposals']} proposals "
                f"met the goals with probability >= {req.confidence:.2f}; search over every "
                "design answered",
                "learned": tried,
            }
        elif unusable is not None:
            predicted.answered["optimizer"] = {
                "method": "search",
                "decision": f"the learned optimizer could not answer: {unusable}",
            }
        else:
            predicted.answered["optimizer"] = {"method": "search"}
    if study_note:
        predicted.notes.append(study_note)
    mark_plausibility(session, artifacts_dir, resolved, req.space, predicted, choice)
    return _record(req, resolved, answer_json(predicted, choice), time.perf_counter() - started)


def _choose(predicted: Predicted, req: OptimizeRequest) -> Choice:
    try:
        return choose(predicted.candidates, goals_of(req), req.confidence, req.alternatives)
    except ValueError as exc:
        raise NoModel(str(exc)) from None


def _fp32_shots(resolved: Resolved) -> list[tuple[str, float]] | None:
    """The fp32 shots the learned optimizer's features come from: None for a registered
    device (its stored measurements), the inline profile's when they are fp32, else none."""
    return resolved.shots if resolved.shots is None or resolved.shot_policy == "fp32" else []


def _learned_choice(
    session: Session,
    artifacts_dir: Path,
    req: OptimizeRequest,
    resolved: Resolved,
    designs: list[str],
) -> tuple[Predicted, Choice] | None:
    """The learned optimizer's checked answer (``neural``; ``auto`` where one exists).

    None when it does not take part (another method, a study, or ``auto`` without a learned
    optimizer); otherwise the proposals' predictions and the choice among them, which has
    no index when none of them met the goals (the caller's search then answers).
    """
    from app.learned_service import proposals

    if req.method not in ("neural", "auto") or req.study is not None:
        return None
    got = proposals(
        session, artifacts_dir, req.space, req.dataset, resolved.device,
        _fp32_shots(resolved),
        designs, [goals_of(req)], required=req.method == "neural",
    )  # fmt: skip
    if got is None:
        return None
    rows, info = got
    subset = [designs[int(r)] for r in rows[0]]
    predicted = predict_candidates(session, artifacts_dir, req, resolved, subset)
    predicted.answered["optimizer"] = info
    return predicted, _choose(predicted, req)


def optimization_view(record: Optimization) -> dict[str, Any]:
    """The ``OptimizeAnswer`` of a stored optimization."""
    request = record.request or {}
    return {
        "id": record.id,
        "device": record.device_name,
        "device_id": record.device_id,
        "space": record.space,
        "dataset": request.get("dataset", "cifar10"),
        "method": record.method,
        "goals": request.get("goals", {}),
        "confidence": request.get("confidence", 0.9),
        "created_at": record.created_at,
        "elapsed_s": record.elapsed_s,
        "model_url": f"/optimizations/{record.id}/model.onnx" if record.design else None,
        "verification": record.verification,
        **record.result,
        **_verified(record),
    }


def _verified(record: Optimization) -> dict[str, Any]:
    """``verified`` from the newest finished verification, and the message saying a miss: an
    answer whose design then measured over its budget must not still read as within it."""
    v = record.verification or {}
    if v.get("status") != "done" or v.get("measured_latency_ms") is None:
        return {"verified": None}
    verified = {
        "meets_budget": v.get("meets_budget"),
        "measured_ms": v["measured_latency_ms"],
        "at": v.get("at"),
        "by": "measure-and-refine" if "error_pct" not in v else "verification",
    }
    out: dict[str, Any] = {"verified": verified}
    if v.get("meets_budget") is False:
        budget = (record.request or {}).get("goals", {}).get("max_latency_ms")
        out["message"] = (
            f"missed the latency budget when verified: measured {v['measured_latency_ms']:.3f} ms "
            f"against {budget:g} ms. As answered: {record.result.get('message', '')}"
        )
    return out


class VerifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    optimization_id: int = Field(ge=1)
    budget_s: float = Field(20.0, gt=0, le=600, description="timing per design on this host")


def is_host_device(device: Device) -> bool:
    """A thread setting of a machine measured by ``edgeopt measure`` (this one or another)."""
    return device.source == HOST_DEVICE_SOURCE and device.threads is not None


def where_measured(session: Session, device: Device) -> str:
    """``host`` (this machine) or ``agent``; NotMeasurable with the reason otherwise.

    A reference device (imported published measurements) has no agent and is not this host:
    nothing could ever measure on it, so a request to do so is refused, not queued forever.
    """
    if is_host_device(device):
        if not is_this_host(device):
            raise NotMeasurable(
                f"device {device.name} was measured on other hardware (hardware id "
                f"{(device.specs or {}).get('hardware_id')}); it cannot be measured from here"
            )
        return "host"
    imported = session.scalar(
        select(Measurement.id)
        .where(Measurement.device_id == device.id, Measurement.source == REFERENCE_SOURCE)
        .limit(1)
    )
    if imported is not None:
        raise NotMeasurable(
            f"device {device.name} holds imported reference measurements; no agent or host "
            "can measure on it. Register the device you own and run `edgeopt agent` there, "
            "or `edgeopt measure` on this host"
        )
    return "agent"


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
        "at": utcnow().isoformat(),
    }


def _task_for(session: Session, device: Device, space: str, design: str, policy: str) -> int:
    """Queue (or find) the agent task measuring one design x policy; its id."""
    queue_tasks(session, device, space, [design], [policy], 0)
    task_id = session.scalar(
        select(MeasurementTask.id)
        .join(Architecture)
        .where(
            MeasurementTask.device_id == device.id,
            Architecture.space == space,
            Architecture.encoding == design,
            MeasurementTask.policy == policy,
        )
    )
    assert task_id is not None
    return int(task_id)


def start_verification(
    session: Session, record: Optimization, budget_s: float = 20.0
) -> tuple[str, dict[str, Any]] | None:
    """Measure the chosen design on its device: a task for the device's agent (queued here),
    or, on this host, the job to submit (returned: the caller submits it once its own
    transaction is committed, so the job's row is visible to the worker that runs it)."""
    if record.device_id is None:
        raise Conflict("an inline profile has no registered device to verify on")
    if record.design is None or record.policy is None:
        raise Conflict("this optimization chose no design (nothing met the goals)")
    device = session.get(Device, record.device_id)
    if device is None:
        raise NotFound(f"the device of optimization {record.id} was removed")
    if where_measured(session, device) == "host":
        return "verify-optimization", {"optimization_id": record.id, "budget_s": budget_s}
    task_id = _task_for(session, device, record.space, record.design, record.policy)
    record.verification = {"status": "queued", "task_id": task_id, "where": "agent"}
    refresh_verification(session, record)
    return None


def _measure_on_host(
    factory: sessionmaker[Session],
    device_id: int,
    space: str,
    design: str,
    policy: str,
    budget_s: float,
) -> Timing:
    """Measure one design x policy on this host's device setting (stored as usual)."""
    from app.measure_service import MeasureParams, measure_on_host

    with factory() as s:
        device = s.get(Device, device_id)
        assert device is not None and device.threads is not None
        threads, host = device.threads, (device.specs or {}).get("host", "host")
    measure_on_host(
        factory,
        MeasureParams.model_validate(
            {
                "space": space,
                "designs": [design],
                "policies": [policy],
                "threads": [threads],
                "host": host,
                "replace": True,
                "budget_s": budget_s,
            }
        ),
    )
    return _stored_latency(factory, device_id, space, design, policy)


def _stored_latency(
    factory: sessionmaker[Session], device_id: int, space: str, design: str, policy: str
) -> Timing:
    with factory() as s:
        row = s.scalar(
            select(Measurement)
            .join(Architecture)
            .where(
                Measurement.device_id == device_id,
                Architecture.space == space,
                Architecture.encoding == design,
                Measurement.policy == policy,
                Measurement.metric == "latency_ms",
            )
        )
        if row is None:
            raise RuntimeError(f"no latency stored for {design} at {policy} after measuring it")
        return measurement_timing(row)


def measurement_timing(row: Measurement) -> Timing:
    """A stored latency as measure-and-refine holds it to a budget: the median with the
    spread a repeat would see (its dispersion, at least its protocol's stability tolerance)."""
    tolerance = (row.protocol or {}).get("target_cv")
    tolerance = float(tolerance) if isinstance(tolerance, int | float) else None
    return Timing(float(row.value), repeat_spread(row.dispersion, tolerance))


def _stored_timings(
    session: Session, device: Device, space: str, policy: str
) -> list[tuple[str, Timing]]:
    """The device's stored latencies of a space and policy, each with its spread."""
    rows = session.execute(
        select(Architecture.encoding, Measurement)
        .join(Architecture)
        .where(
            Measurement.device_id == device.id,
            Measurement.metric == "latency_ms",
            Measurement.policy == policy,
            Architecture.space == space,
        )
        .order_by(Architecture.id)
    ).all()
    return [(encoding, measurement_timing(m)) for encoding, m in rows]


def _measure_by_agent(
    ctx: JobContext,
    device_id: int,
    space: str,
    design: str,
    policy: str,
    deadline_s: float,
    waiting: Callable[[str], None],
) -> Timing:
    """Queue one design for the device's agent and wait (cancellable) for its result."""
    with unit_of_work(ctx.factory) as s:
        device = s.get(Device, device_id)
        assert device is not None
        task_id = _task_for(s, device, space, design, policy)
    started = time.monotonic()
    while True:
        with ctx.factory() as s:
            task = s.get(MeasurementTask, task_id)
            assert task is not None
            status, measurement_id, error = task.status, task.measurement_id, task.error
            row = s.get(Measurement, measurement_id) if measurement_id else None
            value = measurement_timing(row) if row is not None else None
        if status == "done" and value is not None:
            return value
        if status == "failed":
            raise RuntimeError(f"the agent could not measure {design} at {policy}: {error}")
        waited = time.monotonic() - started
        if waited > deadline_s:
            raise RuntimeError(
                f"no agent measured {design} at {policy} within {deadline_s:.0f} s; is "
                "`edgeopt agent` running for this device?"
            )
        waiting(f"waiting for the agent to measure {design} ({waited:.0f} s)")
        time.sleep(0.5)


@job_kind("verify-optimization", VerifyParams)
def _verify_job(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    verify = VerifyParams.model_validate(params)
    optimization_id = verify.optimization_id
    with ctx.factory() as s:
        record = s.get(Optimization, optimization_id)
        if record is None or record.device_id is None or record.design is None:
            raise ValueError(f"no optimization {optimization_id} with a design on a device")
        device = s.get(Device, record.device_id)
        assert device is not None
        where_measured(s, device)
        device_id, space, design, policy = device.id, record.space, record.design, record.policy
        assert policy is not None
    timing = _measure_on_host(ctx.factory, device_id, space, design, policy, verify.budget_s)
    measured = timing.median_ms
    with unit_of_work(ctx.factory) as s:
        record = s.get(Optimization, optimization_id)
        assert record is not None
        record.verification = _compared(record, measured, {"job_id": ctx.job_id, "where": "host"})
        return dict(record.verification)


class RefineParams(BaseModel):
    """A measure-and-refine optimization: the request (``max_measurements`` > 0)."""

    model_config = ConfigDict(extra="forbid")

    request: dict[str, Any]
    budget_s: float = Field(20.0, gt=0, le=600, description="timing per design on this host")


def refine_job(
    session: Session, req: OptimizeRequest, budget_s: float = 20.0
) -> tuple[str, dict[str, Any]]:
    """Check that the device can measure; the measure-and-refine job to submit."""
    if req.method == "neural":
        raise InvalidInput(
            "method 'neural' answers from predictions; with max_measurements use search or auto"
        )
    if req.study is not None:
        raise InvalidInput("a study and max_measurements cannot be combined")
    resolved = resolve(session, req)
    assert resolved.device is not None  # the request model requires a device with measurements
    where_measured(session, resolved.device)
    return "optimize-refine", {"request": req.model_dump(mode="json"), "budget_s": budget_s}


@job_kind("optimize-refine", RefineParams)
def _refine_job(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Measure shots, refit, verify the most promising candidates, store the answer."""
    started = time.perf_counter()
    job = RefineParams.model_validate(params)
    req = OptimizeRequest.model_validate(job.request)
    artifacts = ctx.artifacts_dir
    with ctx.factory() as s:
        resolved = resolve(s, req)
        device = resolved.device
        assert device is not None
        where = where_measured(s, device)
        designs = candidate_designs(s, req.space, req.include_degenerate)
        predicted = predict_candidates(s, artifacts, req, resolved, designs, True)
        policies = predicted.policies
        timed = {p: _stored_timings(s, device, req.space, p) for p in policies}
        stored = {p: [(e, t.median_ms) for e, t in rows] for p, rows in timed.items()}
        basis = metric_basis(s, artifacts, device, req.space, "latency_ms", policies[0], designs)
    device_id = device.id
    index = {
        (predicted.designs[int(d)], predicted.policies[int(p)]): i
        for i, (d, p) in enumerate(
            zip(predicted.candidates.design, predicted.candidates.policy, strict=True)
        )
    }
    measured: dict[int, float | Timing] = {
        index[(e, p)]: t for p, rows in timed.items() for e, t in rows if (e, p) in index
    }
    n_shots = shot_count(req.max_measurements)
    # the shots: D-optimal designs over the registered devices in the first policy
    shots: list[int] = []
    if basis is not None:
        done = {predicted.designs[int(predicted.candidates.design[i])] for i in measured}
        free = np.array([k for k, e in enumerate(designs) if e not in done], dtype=int)
        picks = TransferModel(basis).choose_shots(
            min(n_shots, len(free)), np.random.default_rng(0), free
        )
        shots = [index[(designs[int(k)], policies[0])] for k in picks]
    new: dict[int, float] = {}
    state = {"fraction": 0.0}

    def waiting(note: str) -> None:  # keeps the job alive and honours cancellation
        ctx.progress(state["fraction"], note)

    def measure(i: int) -> Timing:
        design = predicted.designs[int(predicted.candidates.design[i])]
        policy = predicted.policies[int(predicted.candidates.policy[i])]
        if where == "host":
            value = _measure_on_host(
                ctx.factory, device_id, req.space, design, policy, job.budget_s
            )
        else:
            value = _measure_by_agent(
                ctx, device_id, req.space, design, policy, AGENT_WAIT_S, waiting
            )
        new[i] = value.median_ms
        ctx.log(
            f"measured {design} at {policy}: {value.median_ms:.4f} ms (spread {value.spread:.1%})"
        )
        return value

    def refit(now: dict[int, float]) -> Estimates:
        extra: dict[str, list[tuple[str, float]]] = {p: list(stored[p]) for p in policies}
        for i in new:
            p = predicted.policies[int(predicted.candidates.policy[i])]
            extra[p].append((predicted.designs[int(predicted.candidates.design[i])], now[i]))
        with ctx.factory() as s:
            blocks, info = latency_blocks(s, artifacts, req, resolved, designs, policies, extra)
        predicted.answered.update(info)
        parts = [
            b if b is not None else Estimates(*(np.full(len(designs), np.nan),) * 3) for b in blocks
        ]
        return Estimates.concat(parts)

    def progress(spent: int, total: int) -> None:
        state["fraction"] = spent / max(total, 1)
        ctx.progress(state["fraction"], f"{spent}/{total} designs measured")

    try:
        choice = refine(
            predicted.candidates,
            goals_of(req),
            refit,
            measure,
            shots,
            req.max_measurements,
            req.confidence,
            req.alternatives,
            measured=measured,
            progress=progress,
        )
    except ValueError as exc:
        raise NoModel(str(exc)) from None
    refined = Predicted(
        designs,
        policies,
        predicted.candidates.with_latency(refit(choice.measured)),
        predicted.answered,
        predicted.notes,
        _shot_counts(predicted, stored, new),
    )
    with ctx.factory() as s:
        mark_plausibility(s, artifacts, resolved, req.space, refined, choice)
    result = answer_json(refined, choice)
    result["measurements"] = len(new)
    record = _record(req, resolved, result, time.perf_counter() - started)
    record.job_id = ctx.job_id
    if choice.index is not None and choice.index in choice.measured:
        median = choice.measured[choice.index]
        spread = choice.spread.get(choice.index, 0.0)
        bound = measured_bound(median, spread, req.confidence)
        record.verification = {
            "status": "done",
            "where": where,
            "job_id": ctx.job_id,
            "measured_latency_ms": median,
            "spread": spread,
            "bound_ms": bound,
            "meets_budget": req.goals.max_latency_ms is None or bound <= req.goals.max_latency_ms,
            "at": utcnow().isoformat(),
        }
    return ctx.finish(lambda s: _store_refined(s, record))


def _store_refined(s: Session, record: Optimization) -> dict[str, Any]:
    """The job's result: its optimization, stored now unless its job stored it already."""
    stored = s.scalar(select(Optimization).where(Optimization.job_id == record.job_id))
    if stored is None:
        s.add(record)
        s.flush()
        stored = record
    measurements = stored.result.get("measurements")
    return {"optimization_id": stored.id, "measurements": measurements, "feasible": stored.feasible}


def _shot_counts(
    predicted: Predicted, stored: dict[str, list[tuple[str, float]]], new: dict[int, float]
) -> dict[str, int]:
    counts = {p: len(rows) for p, rows in stored.items()}
    for i in new:
        policy = predicted.policies[int(predicted.candidates.policy[i])]
        counts[policy] = counts.get(policy, 0) + 1
    return counts


def study_evaluator(
    session: Session,
    artifacts_dir: Path,
    req: OptimizeRequest,
) -> Callable[[str, str], tuple[float, float, float]]:
    """Score one design x policy for an Optuna trial, with the request's device and goals."""
    resolved = resolve(session, req)
    goals = goals_of(req)

    def score(design: str, policy: str) -> tuple[float, float, float]:
        one = Resolved(
            resolved.device, resolved.name, resolved.shots, resolved.shot_policy, [policy]
        )
        try:
            predicted = predict_candidates(session, artifacts_dir, req, one, [design])
            choice = choose(predicted.candidates, goals, req.confidence, 0, 1)
        except (NoModel, ValueError):
            return -1e9, 1e9, 0.0
        ok = bool(np.isfinite(choice.score[0]))
        return (
            float(choice.score[0]) if ok else -1e9,
            float(predicted.candidates.latency.value[0]) if ok else 1e9,
            float(choice.probabilities["all"][0]),
        )

    return score


def study_policies(req: OptimizeRequest) -> tuple[list[str], bool]:
    """A study's policies, and whether it draws one precision per unit (``per-unit``)."""
    per_unit = PER_UNIT in [p.strip().lower() for p in req.policies]
    return [canonical_policy(p) for p in expand(req.space, req.policies, False)], per_unit


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
        policies, per_unit = study_policies(req)
        run_trials(
            study, req.space, policies, evaluate_one, req.study.trials, req.confidence, "api",
            per_unit,
        )  # fmt: skip
    return [r.design for r in results(study)]


def front(session: Session, artifacts_dir: Path, req: FrontRequest) -> dict[str, Any]:
    """The best design at each of the request's budgets (a ``FrontAnswer``), in one call.

    With the learned optimizer (``neural``, or ``auto`` where one exists) one forward pass
    proposes designs for every budget, their union is predicted once, and each budget
    chooses among its own proposals; a budget none of them meets is answered by search
    over every design (predicted once, on first need).
    """
    from app.learned_service import proposals
    from search.learned import front as learned_front

    started = time.perf_counter()
    resolved = resolve(session, req)
    designs = candidate_designs(session, req.space, req.include_degenerate)
    goals = [replace(goals_of(req), max_latency_ms=float(b)) for b in req.budgets_ms]
    shots = _fp32_shots(resolved)
    got = None
    notes: list[str] = []
    if req.method in ("neural", "auto"):
        try:
            got = proposals(
                session, artifacts_dir, req.space, req.dataset, resolved.device, shots, designs,
                goals, required=req.method == "neural",
            )  # fmt: skip
        except NoModel as exc:
            if req.method != "auto":
                raise
            notes.append(f"the learned optimizer could not answer: {exc}")
    full: list[Predicted] = []

    def searched(goal: Goals) -> tuple[Predicted, Candidates, Choice]:
        if not full:
            full.append(predict_candidates(session, artifacts_dir, req, resolved, designs))
        cands = full[0].candidates
        return full[0], cands, _safe_choose(cands, goal, req.confidence)

    points: list[dict[str, Any]] = []
    answered: dict[str, Any] = {}
    learned: list[tuple[Choice, np.ndarray]] = []
    if got is not None:
        rows, info = got
        union = sorted({int(r) for block in rows for r in block})
        sub = predict_candidates(session, artifacts_dir, req, resolved, [designs[r] for r in union])
        position = {r: k for k, r in enumerate(union)}
        local = [np.array([position[int(r)] for r in block], dtype=int) for block in rows]
        learned = learned_front(local, sub.candidates, goals, req.confidence)
        answered |= sub.answered | {"optimizer": info}
        notes += sub.notes
    for k, goal in enumerate(goals):
        if learned and learned[k][0].index is not None:
            choice, taken = learned[k]
            predicted, cands, by = sub, sub.candidates.take(taken), "neural"
        else:
            predicted, cands, choice = searched(goal)
            by = "search"
        points.append(
            {
                "max_latency_ms": goal.max_latency_ms,
                "feasible": choice.index is not None,
                "answered_by": by,
                "design": None
                if choice.index is None
                else _point_view(predicted, cands, choice, choice.index),
            }
        )
    if full:
        answered = full[0].answered | answered
        notes += [n for n in full[0].notes if n not in notes]
    chosen = [p["design"] for p in points if p["design"] is not None]
    flags, extrapolations = flag_latency(
        session, artifacts_dir, resolved.device, req.space,
        [Shown(d["arch"], d["policy"], *(d["latency_ms"][k] for k in ("value", "low", "high")))
         for d in chosen],
        resolved.shots, resolved.shot_policy,
    )  # fmt: skip
    for d, flag in zip(chosen, flags, strict=True):
        d.update(flag)
    notes += [n for n in extrapolations if n not in notes]
    searched_count = sum(p["answered_by"] == "search" for p in points)
    if got is not None and searched_count:
        notes.append(f"{searched_count} of {len(points)} budgets answered by search: none of "
                     "the learned optimizer's proposals met them")  # fmt: skip
    return {
        "device": resolved.name,
        "space": req.space,
        "dataset": req.dataset,
        "method": req.method,
        "confidence": req.confidence,
        "elapsed_s": time.perf_counter() - started,
        "points": points,
        "answered_by": answered,
        "notes": notes,
    }


def _safe_choose(candidates: Candidates, goals: Goals, confidence: float) -> Choice:
    try:
        return choose(candidates, goals, confidence, 0, 0)
    except ValueError as exc:
        raise NoModel(str(exc)) from None


def _point_view(predicted: Predicted, cands: Candidates, choice: Choice, i: int) -> dict[str, Any]:
    return {
        "arch": predicted.designs[int(cands.design[i])],
        "policy": predicted.policies[int(cands.policy[i])],
        "accuracy": cands.accuracy.at(i) if cands.accuracy is not None else None,
        "latency_ms": cands.latency.at(i),
        "energy_mj": cands.energy.at(i) if cands.energy is not None else None,
        "probabilities": {k: float(v[i]) for k, v in choice.probabilities.items()},
        "measured_latency_ms": None,
        **NOT_FLAGGED,
    }
