"""The learned optimizer in the service: train it as a job, list it, answer with it.

Training reads the registry: every device with an fp32 latency model of the space is a real
device (its model's predictions over the space's candidate designs are its table), and the
dataset's accuracy (records, else its model) is what the teacher maximises;
``search.learned.fit_learned`` adds the synthetic devices and trains. The artifact (torch
state dict + JSON sidecar) is written before its row is stored, so no row names a missing file.

Answering (``method: neural``, and ``auto`` where a learned optimizer exists): the device's
features are its fingerprint latencies (measured where it measured them, else predicted as
``/predict`` would); the network's proposals are predicted like any candidate and checked by
``search.optimize.choose`` at the requested confidence. When none holds, the caller's search
over every design answers, and ``answered_by.optimizer`` says so.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.accuracy_service import accuracy_estimates
from app.artifact_store import local_path, record
from app.domain_errors import InvalidInput, NoModel
from app.jobs import JobContext, job_kind
from app.models import Architecture, Device, Measurement
from app.models import LearnedOptimizer as LearnedRow
from app.predictor_service import device_metric, device_shots, metric_basis
from devices.fingerprint import fingerprint
from search.learned import LearnedOptimizer, fit_learned, new_spec, sidecar, tightened
from search.optimize import Goals
from search.spaces import get_space


class TrainOptimizerParams(BaseModel):
    """A learned-optimizer training: for one space and dataset, from the registry's devices."""

    model_config = ConfigDict(extra="forbid")

    space: str = "nb201"
    dataset: str = "cifar10"
    synthetic: int = Field(4000, ge=0, le=20000, description="synthetic devices drawn")
    epochs: int = Field(40, ge=1, le=200)
    seed: int = Field(0, ge=0, le=2**32 - 1)


GENERATOR_SHARE = 0.5


def measured_designs(session: Session, space: str) -> dict[str, int]:
    """Per device name: how many designs of the space it measured (fp32 latency)."""
    rows = session.execute(
        select(Device.name, func.count(Measurement.id))
        .join(Measurement, Measurement.device_id == Device.id)
        .join(Architecture, Architecture.id == Measurement.architecture_id)
        .where(
            Architecture.space == space,
            Measurement.metric == "latency_ms",
            Measurement.policy == "fp32",
        )
        .group_by(Device.name)
    ).all()
    return {name: int(n) for name, n in rows}


def check_trainable(params: TrainOptimizerParams) -> None:
    """Refuse, before a job starts, a space the learned optimizer cannot choose in."""
    try:
        codec = get_space(params.space)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if not codec.choices():
        raise InvalidInput(f"the learned optimizer has no decisions to choose in {params.space}")


@job_kind("train-optimizer", TrainOptimizerParams)
def _train_job(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from app.optimize_service import candidate_designs

    p = TrainOptimizerParams.model_validate(params)
    codec = get_space(p.space)
    prints = fingerprint(p.space)
    with ctx.factory() as s:
        # every design, degenerate ones too: what the optimizer was trained on is unchanged
        designs = list(dict.fromkeys([*prints, *candidate_designs(s, p.space, True)]))
        ctx.progress(0.0, f"predicting {len(designs)} designs on the registered devices")
        basis = metric_basis(s, ctx.artifacts_dir, None, p.space, "latency_ms", "fp32", designs)
        if basis is None:
            raise NoModel(f"no device has an fp32 latency model for {p.space} to learn from")
        acc, info = accuracy_estimates(s, ctx.artifacts_dir, p.space, p.dataset, "fp32", designs)
        if acc is None:
            raise NoModel(str(info["reason"]))
        counts = measured_designs(s, p.space)
    # the generator learns from devices that measured most of the space (GENERATOR_SHARE):
    # the others' tables are mostly their models' extrapolation
    covered = np.array([counts.get(n, 0) >= GENERATOR_SHARE * len(designs) for n in basis.names])
    accuracy = acc[0]
    model = fit_learned(
        basis.latency_ms,
        basis.names,
        accuracy,
        codec.decisions(designs),
        np.arange(len(prints)),
        new_spec(codec, p.dataset, prints, accuracy),
        synthetic=p.synthetic,
        epochs=p.epochs,
        seed=p.seed,
        progress=lambda f, note: ctx.progress(0.05 + 0.9 * f, note),
        measured=covered if covered.sum() >= 2 else None,
    )
    saved: list[Path] = []
    try:
        return ctx.finish(lambda s: _store_optimizer(s, ctx, p, model, list(basis.names), saved))
    except BaseException:  # the row and the job's end were not stored: nor are its files
        for path in saved:
            path.unlink(missing_ok=True)
            sidecar(path).unlink(missing_ok=True)
        raise


def _store_optimizer(
    s: Session,
    ctx: JobContext,
    p: TrainOptimizerParams,
    model: LearnedOptimizer,
    devices: list[str],
    saved: list[Path],
) -> dict[str, Any]:
    """The job's optimizer row: the one it stored already, else a new version whose files
    are written first (no row without its files), listed in ``saved``."""
    row = s.scalar(select(LearnedRow).where(LearnedRow.job_id == ctx.job_id))
    if row is None:
        version = 1 + int(
            s.scalar(
                select(func.max(LearnedRow.version)).where(
                    LearnedRow.space == p.space, LearnedRow.dataset == p.dataset
                )
            )
            or 0
        )
        # the attempt in the name: an attempt whose end is not stored removes only its own files
        artifact = f"learned/{p.space}-{p.dataset}-v{version}-job{ctx.job_id}-a{ctx.attempt}.pt"
        path = ctx.artifacts_dir / artifact
        model.save(path)
        saved.append(path)
        record(s, ctx.artifacts_dir, artifact)
        record(s, ctx.artifacts_dir, sidecar(Path(artifact)).as_posix())
        row = LearnedRow(
            space=p.space,
            dataset=p.dataset,
            version=version,
            artifact=artifact,
            devices=devices,
            quality=model.spec.quality,
            job_id=ctx.job_id,
        )
        s.add(row)
        s.flush()
    return {"optimizer_id": row.id, "version": row.version, "artifact": row.artifact}


def latest_optimizer(session: Session, space: str, dataset: str) -> LearnedRow | None:
    return session.scalar(
        select(LearnedRow)
        .where(LearnedRow.space == space, LearnedRow.dataset == dataset)
        .order_by(LearnedRow.version.desc())
        .limit(1)
    )


@lru_cache(maxsize=16)
def _load(path: str) -> LearnedOptimizer:
    return LearnedOptimizer.load(Path(path))


def load_optimizer(artifacts_dir: Path, row: LearnedRow) -> LearnedOptimizer:
    """The row's artifact (cached: artifacts are never rewritten)."""
    path = local_path(artifacts_dir, row.artifact)
    local_path(artifacts_dir, sidecar(Path(row.artifact)).as_posix())
    try:
        return _load(str(path))
    except (OSError, ValueError, RuntimeError) as exc:
        raise NoModel(f"learned optimizer {row.id} cannot be used: {exc}") from None


@lru_cache(maxsize=4)
def _options(space: str, designs: tuple[str, ...]) -> np.ndarray:
    return get_space(space).decisions(list(designs))


def device_features(
    session: Session,
    artifacts_dir: Path,
    device: Any,
    space: str,
    prints: list[str],
    shots: list[tuple[str, float]] | None,
) -> tuple[np.ndarray, str]:
    """The device's fp32 latency on the fingerprint designs, and where it came from.

    Measured values where the device (or the inline profile's ``shots``) measured them,
    predictions elsewhere; NoModel when nothing can predict them.
    """
    if shots is None:
        shots_known = device_shots(session, device, space, "latency_ms", "fp32", among=prints)
    else:
        shots_known = shots
    measured = dict(shots_known)
    if all(p in measured for p in prints):
        return np.array([measured[p] for p in prints]), "measured"
    arrays, info = device_metric(
        session, artifacts_dir, device, space, "latency_ms", "fp32", prints, shots=shots
    )
    if arrays is None:
        raise NoModel(
            "the learned optimizer needs the device's fp32 latency on the fingerprint designs "
            f"(GET /fingerprint/{space}): {info.get('reason', 'nothing predicts it')}"
        )
    have = np.array([p in measured for p in prints])
    values = np.where(have, [measured.get(p, 1.0) for p in prints], arrays[0])
    return np.asarray(values, dtype=float), f"predicted ({info.get('method')})"


def proposals(
    session: Session,
    artifacts_dir: Path,
    space: str,
    dataset: str,
    device: Any,
    shots: list[tuple[str, float]] | None,
    designs: list[str],
    goals: list[Goals],
    required: bool,
) -> tuple[list[np.ndarray], dict[str, Any]] | None:
    """The learned optimizer's proposals (rows of ``designs``) per goal, and its provenance.

    None when no learned optimizer exists and none is ``required`` (``auto``); NoModel
    when one is required.
    """
    row = latest_optimizer(session, space, dataset)
    if row is None:
        if not required:
            return None
        raise NoModel(
            f"no learned optimizer for {space} on {dataset!r}: train one with "
            "POST /optimizers/train or `edgeopt optimizer train`"
        )
    started = time.perf_counter()
    model = load_optimizer(artifacts_dir, row)
    features, source = device_features(
        session, artifacts_dir, device, space, model.spec.fingerprint, shots
    )
    rows = model.propose_front(features, goals, _options(space, tuple(designs)))
    info = {
        "method": "neural",
        "optimizer_id": row.id,
        "version": row.version,
        "features": source,
        "proposals": int(max(len(r) for r in rows)),
        "decoded_budgets": len(tightened(goals[0])),
        "preferred_policy": model.preferred_policy(features, goals[0]),
        "seconds": round(time.perf_counter() - started, 4),
    }
    return rows, info
