"""/optimize in the service: load what the optimizer needs, call it, store the answer.

Candidates are every design of the space (NB201: all 15,625 cells; FBNet: the registered
designs plus a seeded random sample) in every requested policy that the device has a
latency prediction for and the dataset has accuracy for. Predictions come from
``predictors.answer`` (own model, proxy or transfer) through ``app.predictor_service``; the
choice is ``search.optimize.choose`` (from predictions) or ``search.optimize.refine``
(measure-and-refine: the job in ``app.refine_service``, on a device that can measure: this
host or an agent's). The benchmark ``edgeopt eval optimize`` calls the same two functions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.accuracy_service import accuracy_estimates
from app.domain_errors import InvalidInput, NoModel
from app.models import Architecture, Device, Optimization
from app.plausibility import Shown, flag_latency
from app.predictor_service import device_metric
from app.queries import find_device
from app.schemas import OptimizeRequest
from devices.profile import canonical_policy
from search.optimize import (
    GOAL_FIELDS,
    Candidates,
    Choice,
    Estimates,
    Goals,
    choose,
)
from search.policy import UnsupportedPolicy, expand, parse_policy
from search.spaces import NB201, InvalidEncoding, get_space

FBNET_SAMPLE = 5000


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
    from app.study_service import run_study  # studies score designs with this module

    found = run_study(session, artifacts_dir, req, storage)
    return (
        list(dict.fromkeys([*designs, *found])),
        f"study {req.study.name!r}: {len(found)} designs from its trials joined",
    )


def new_record(
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
    return new_record(req, resolved, answer_json(predicted, choice), time.perf_counter() - started)


def _choose(predicted: Predicted, req: OptimizeRequest) -> Choice:
    try:
        return choose(predicted.candidates, goals_of(req), req.confidence, req.alternatives)
    except ValueError as exc:
        raise NoModel(str(exc)) from None


def fp32_shots(resolved: Resolved) -> list[tuple[str, float]] | None:
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
        fp32_shots(resolved),
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
