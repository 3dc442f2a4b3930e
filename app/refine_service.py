"""Measure-and-refine as a job: measure the shots and the most promising candidates on the
device, refit after each, and store the best measured answer (``search.optimize.refine``).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain_errors import InvalidInput, NoModel
from app.jobs import JobContext, job_kind
from app.models import Optimization, utcnow
from app.optimize_service import (
    Predicted,
    answer_json,
    candidate_designs,
    goals_of,
    latency_blocks,
    mark_plausibility,
    new_record,
    predict_candidates,
    resolve,
)
from app.predictor_service import metric_basis
from app.schemas import OptimizeRequest
from app.verify_service import (
    AGENT_WAIT_S,
    measure_by_agent,
    measure_one_on_host,
    stored_timings,
    where_measured,
)
from predictors.transfer import TransferModel
from search.optimize import (
    Estimates,
    Timing,
    measured_bound,
    refine,
    shot_count,
)


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
        timed = {p: stored_timings(s, device, req.space, p) for p in policies}
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
            value = measure_one_on_host(
                ctx.factory, device_id, req.space, design, policy, job.budget_s
            )
        else:
            value = measure_by_agent(
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
    record = new_record(req, resolved, result, time.perf_counter() - started)
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
