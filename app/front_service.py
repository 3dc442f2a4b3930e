"""``POST /front``: the best design at each of several budgets in one call, from the learned
optimizer's proposals where they meet a budget, else from search over every design.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.domain_errors import NoModel
from app.optimize_service import (
    NOT_FLAGGED,
    Predicted,
    candidate_designs,
    fp32_shots,
    goals_of,
    predict_candidates,
    resolve,
)
from app.plausibility import Shown, flag_latency
from app.schemas import FrontRequest
from search.optimize import (
    Candidates,
    Choice,
    Goals,
    choose,
)


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
    shots = fp32_shots(resolved)
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
