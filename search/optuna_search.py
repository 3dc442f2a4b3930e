"""Search where the space is too large to enumerate (FBNet: 9^22 designs): Optuna NSGA-II.

A study lives in Optuna's RDB storage (the service's own database), so several worker
processes (``edgeopt worker``) can add trials to one study at the same time. Each trial
picks a block per layer and a policy, and is scored by ``evaluate`` (the service's
predictors): objectives ``(maximise score, minimise latency)`` with the constraint
``confidence - P(goals met) <= 0``, which NSGA-II's constrained domination respects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna

from search.spaces import NB201, FBNet, get_space

Evaluate = Callable[[str, str], tuple[float, float, float]]  # -> (score, latency, P(goals))


@dataclass(frozen=True)
class TrialResult:
    design: str
    policy: str
    score: float
    latency_ms: float
    probability: float


def suggest(
    trial: optuna.Trial, space: str, policies: list[str], per_unit: bool = False
) -> tuple[str, str]:
    """A design and a policy drawn by the sampler: one of ``policies``, or with ``per_unit``
    one precision per quantization unit (FBNet's 24 units: 2**24 policies, searched, not
    enumerated)."""
    codec = get_space(space)
    if isinstance(codec, FBNet):
        design = "-".join(
            str(trial.suggest_categorical(f"layer{i}", codec.BLOCKS)) for i in range(codec.LAYERS)
        )
    elif isinstance(codec, NB201):
        design = codec.from_ops(
            [str(trial.suggest_categorical(f"edge{i}", codec.OPS)) for i in range(6)]
        )
    else:
        raise ValueError(f"no Optuna search for space {space!r}")
    if per_unit:
        from search.policy import units

        parts = [
            str(trial.suggest_categorical(f"unit_{name}", ("fp32", "int8")))
            for name in units(space)
        ]
        return design, parts[0] if len(set(parts)) == 1 else ",".join(parts)
    policy = trial.suggest_categorical("policy", policies)
    return design, str(policy)


def open_study(storage: str, name: str, seed: int | None = None) -> optuna.Study:
    """Create or load a study (two objectives: score up, latency down) in RDB storage."""
    optuna.logging.set_verbosity(logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.create_study(
        study_name=name,
        storage=storage,
        directions=["maximize", "minimize"],
        sampler=sampler,
        load_if_exists=True,
    )


def run_trials(
    study: optuna.Study,
    space: str,
    policies: list[str],
    evaluate: Evaluate,
    trials: int,
    confidence: float,
    worker: str,
    per_unit: bool = False,
) -> None:
    """Add ``trials`` trials to the study from this process."""

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        design, policy = suggest(trial, space, policies, per_unit)
        score, latency, probability = evaluate(design, policy)
        trial.set_user_attr("design", design)
        trial.set_user_attr("policy", policy)
        trial.set_user_attr("probability", probability)
        trial.set_constraint("goals", confidence - probability)
        trial.set_user_attr("worker", worker)
        return score, latency

    study.optimize(objective, n_trials=trials, gc_after_trial=False)


def results(study: optuna.Study) -> list[TrialResult]:
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        assert t.values is not None
        out.append(
            TrialResult(
                t.user_attrs["design"],
                t.user_attrs["policy"],
                float(t.values[0]),
                float(t.values[1]),
                float(t.user_attrs["probability"]),
            )
        )
    return out


def study_request(study: optuna.Study) -> dict[str, Any]:
    """The optimization request a study was created for (workers read it from storage)."""
    return dict(study.user_attrs["request"])
