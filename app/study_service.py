"""Optuna studies behind ``/optimize``: each trial scores one design x policy with the
request's device and goals, and the study's designs join the candidates.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from app.domain_errors import NoModel
from app.optimize_service import Resolved, goals_of, predict_candidates, resolve
from app.schemas import OptimizeRequest
from devices.profile import canonical_policy
from search.optimize import choose
from search.policy import PER_UNIT, expand


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
