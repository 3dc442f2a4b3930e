"""Training predictors from the registry, as a job: which scopes (metric x device x policy,
accuracy per dataset) lack a current model, their training data, the fitted artifacts.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session, sessionmaker

from app.artifact_store import record
from app.artifacts import write_folder
from app.db import unit_of_work
from app.jobs import JobContext, job_kind
from app.models import AccuracyRecord, Architecture, Device, Measurement, Predictor
from app.predictor_service import ANY_POLICY
from predictors.design_model import fit_design_model, library_versions
from predictors.intervals import LEVEL
from search.accuracy_change import (
    Pairs,
    fit_change_model,
    pairs_from_records,
)
from search.spaces import get_space

FP32 = "fp32"  # the policy a policy without a basis of its own borrows the basis of

SpaceName = Literal["nb201", "fbnet", "ofa_mbv3"]
Target = Literal["latency_ms", "energy_mj", "accuracy"]


class TrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spaces: list[SpaceName] = Field(default_factory=lambda: list(get_args(SpaceName)), min_length=1)
    targets: list[Target] = Field(default_factory=lambda: list(get_args(Target)), min_length=1)
    devices: list[str] | None = Field(None, description="device names; default: all with data")
    min_rows: int = Field(200, ge=50, le=1_000_000, description="fewest designs to fit a model")
    min_accuracy_rows: int | None = Field(
        None,
        ge=50,
        le=1_000_000,
        description="fewest designs to fit an accuracy model (default min_rows): accuracy "
        "takes a training run per design, latency a few milliseconds",
    )

    missing_only: bool = Field(
        False, description="only scopes with no predictor yet (what an interrupted start left)"
    )

    @property
    def accuracy_rows(self) -> int:
        return self.min_rows if self.min_accuracy_rows is None else self.min_accuracy_rows


def _scopes(session: Session, params: TrainParams) -> list[dict[str, Any]]:
    """Every (target, space, device, dataset, policy) with enough data to fit a model."""
    scopes: list[dict[str, Any]] = []
    metrics = [t for t in params.targets if t != "accuracy"]
    wanted: set[int] | None = None
    if params.devices is not None:
        found = dict(
            session.execute(
                select(Device.name, Device.id).where(Device.name.in_(params.devices))
            ).all()
        )
        missing = sorted(set(params.devices) - set(found))
        if missing:
            raise ValueError(f"unknown devices: {missing}")
        wanted = set(found.values())
    for space in params.spaces:
        if metrics:
            q = (
                select(Measurement.device_id, Measurement.metric, Measurement.policy, func.count())
                .join(Architecture)
                .where(Architecture.space == space, Measurement.metric.in_(metrics))
                .group_by(Measurement.device_id, Measurement.metric, Measurement.policy)
                .having(func.count() >= params.min_rows)
                .order_by(Measurement.device_id, Measurement.metric, Measurement.policy)
            )
            for device_id, metric, policy, n in session.execute(q):
                if wanted is None or device_id in wanted:
                    scopes.append(
                        dict(
                            target=metric,
                            space=space,
                            device_id=device_id,
                            dataset=None,
                            policy=policy,
                            rows=n,
                        )
                    )
        if "accuracy" in params.targets:
            acc_q = (
                select(AccuracyRecord.dataset, AccuracyRecord.policy, func.count())
                .join(Architecture)
                .where(Architecture.space == space)
                .group_by(AccuracyRecord.dataset, AccuracyRecord.policy)
                .having(func.count() >= params.accuracy_rows)
                .order_by(AccuracyRecord.dataset, AccuracyRecord.policy)
            )
            for dataset, policy, n in session.execute(acc_q):
                scopes.append(
                    dict(
                        target="accuracy",
                        space=space,
                        device_id=None,
                        dataset=dataset,
                        policy=policy,
                        rows=n,
                    )
                )
            for dataset, pairs in _change_pairs(session, space).items():
                if len(pairs) >= params.accuracy_rows:
                    scopes.append(
                        dict(
                            target="accuracy_change",
                            space=space,
                            device_id=None,
                            dataset=dataset,
                            policy=ANY_POLICY,
                            rows=len(pairs),
                        )
                    )
    return scopes


def _change_pairs(session: Session, space: str) -> dict[str, Pairs]:
    """Per dataset, the designs measured both in fp32 and in some other policy."""
    quantized = (
        select(AccuracyRecord.dataset)
        .join(Architecture)
        .where(Architecture.space == space, AccuracyRecord.policy != "fp32")
        .distinct()
    )
    out = {}
    for dataset in session.scalars(quantized).all():
        rows = session.execute(
            select(Architecture.encoding, AccuracyRecord.policy, AccuracyRecord.top1)
            .join(Architecture)
            .where(Architecture.space == space, AccuracyRecord.dataset == dataset)
            .order_by(AccuracyRecord.id)
        ).all()
        pairs = pairs_from_records((e, p, float(v)) for e, p, v in rows)
        if len(pairs):
            out[dataset] = pairs
    return out


def _training_data(
    session: Session, scope: dict[str, Any]
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Encodings and values of a scope, and which measurements their protocol called stable
    (None where every one was: accuracy records, imported tables)."""
    if scope["target"] == "accuracy":
        q = (
            select(Architecture.encoding, AccuracyRecord.top1, literal(None))
            .join(Architecture)
            .where(
                Architecture.space == scope["space"],
                AccuracyRecord.dataset == scope["dataset"],
                AccuracyRecord.policy == scope["policy"],
            )
            .order_by(Architecture.id)
        )
    else:
        q = (
            select(Architecture.encoding, Measurement.value, Measurement.protocol)
            .join(Architecture)
            .where(
                Architecture.space == scope["space"],
                Measurement.device_id == scope["device_id"],
                Measurement.metric == scope["target"],
                Measurement.policy == scope["policy"],
            )
            .order_by(Architecture.id)
        )
    rows = session.execute(q).all()
    stable = np.array([not isinstance(r[2], dict) or r[2].get("stable") is not False for r in rows])
    return (
        [r[0] for r in rows],
        np.array([r[1] for r in rows], dtype=float),
        None if stable.all() else stable,
    )


def _scope_filter(target: str, space: str, device_id: int | None, dataset: str | None, policy: str):
    return (
        Predictor.target == target,
        Predictor.space == space,
        Predictor.device_id.is_(None) if device_id is None else Predictor.device_id == device_id,
        Predictor.dataset.is_(None) if dataset is None else Predictor.dataset == dataset,
        Predictor.policy == policy,
    )


def _has_predictor(session: Session, scope: dict[str, Any]) -> bool:
    keys = (scope[k] for k in ("target", "space", "device_id", "dataset", "policy"))
    return session.scalar(select(Predictor.id).where(*_scope_filter(*keys)).limit(1)) is not None


def missing_scopes(session: Session, params: TrainParams) -> int:
    """Scopes with enough data and no predictor: what a first start stopped midway left."""
    return sum(not _has_predictor(session, c) for c in _scopes(session, params))


def train_predictors(
    factory: sessionmaker[Session], artifacts_dir: Path, params: TrainParams, ctx: JobContext | None
) -> dict[str, Any]:
    """Fit and store one predictor per scope; each is written in its own transaction."""
    with factory() as s:
        scopes = _scopes(s, params)
        if params.missing_only:
            scopes = [c for c in scopes if not _has_predictor(s, c)]
            if not scopes:
                return {"predictors": [], "count": 0, "skipped": []}
    if not scopes:
        raise ValueError(f"no scope has {params.min_rows} or more designs to learn from")
    trained: list[int] = []
    skipped: list[str] = []
    # A retried job (its worker died) keeps what an earlier attempt published: no version twice.
    published = _published_by(factory, ctx.job_id) if ctx is not None and ctx.attempt > 1 else {}
    for i, scope in enumerate(scopes):
        key = tuple(scope[k] for k in ("target", "space", "device_id", "dataset", "policy"))
        if key in published:
            trained.append(published[key])
            continue
        features = f"{scope['space']} design encoding"
        held_out = "random 20%, seed 0"
        if scope["target"] == "accuracy_change":
            with factory() as s:
                pairs = _change_pairs(s, scope["space"])[scope["dataset"]]
            try:
                model = fit_change_model(scope["space"], pairs)
            except ValueError as exc:  # a policy stored before uploads checked it against units
                skipped.append(f"{scope['space']} accuracy change on {scope['dataset']}: {exc}")
                continue
            width = get_space(scope["space"]).encode(pairs.designs[:1], "fp32").shape[1]
            values = pairs.change
            features += " (fp32) and the policy's per-unit int8 mask"
            held_out = "random 20% of the designs, seed 0"
        else:
            with factory() as s:
                encodings, values, stable = _training_data(s, scope)
            try:
                x = get_space(scope["space"]).encode(encodings, scope["policy"])
            except ValueError as exc:  # a policy stored before uploads checked it against units
                skipped.append(
                    f"{scope['space']} {scope['target']} policy {scope['policy']!r}: {exc}"
                )
                continue
            model = fit_design_model(
                x, values, log_target=scope["target"] != "accuracy", reliable=stable
            )
            width = int(x.shape[1])
        rel = Path("predictors") / uuid.uuid4().hex
        write_folder(artifacts_dir / rel, model.save)  # whole, or nothing on a full disk
        try:
            with unit_of_work(factory) as s:
                filters = _scope_filter(
                    scope["target"],
                    scope["space"],
                    scope["device_id"],
                    scope["dataset"],
                    scope["policy"],
                )
                latest = s.scalar(select(func.max(Predictor.version)).where(*filters)) or 0
                row = Predictor(
                    target=scope["target"],
                    space=scope["space"],
                    device_id=scope["device_id"],
                    dataset=scope["dataset"],
                    policy=scope["policy"],
                    version=latest + 1,
                    model="lightgbm",
                    artifact=str(rel),
                    quality=model.quality,
                    provenance={
                        "rows": len(values),
                        "features": features,
                        "encoding_columns": width,
                        "held_out": held_out,
                        "libraries": library_versions(),
                        "level": LEVEL,
                    },
                    job_id=ctx.job_id if ctx else None,
                )
                s.add(row)
                record(s, artifacts_dir, rel.as_posix())
                s.flush()
                trained.append(row.id)
        except Exception:
            shutil.rmtree(artifacts_dir / rel, ignore_errors=True)
            raise
        if ctx is not None:
            what = scope["dataset"] or f"device {scope['device_id']}"
            ctx.progress((i + 1) / len(scopes), f"{scope['space']} {scope['target']} {what}")
    if not trained and skipped:
        raise ValueError(f"no scope could be trained: {'; '.join(skipped[:3])}")
    return {"predictors": trained, "count": len(trained), "skipped": skipped}


def _published_by(factory: sessionmaker[Session], job_id: int) -> dict[tuple[Any, ...], int]:
    """The predictors a job stored, by scope (target, space, device, dataset, policy)."""
    with factory() as s:
        rows = s.execute(
            select(
                Predictor.target,
                Predictor.space,
                Predictor.device_id,
                Predictor.dataset,
                Predictor.policy,
                Predictor.id,
            ).where(Predictor.job_id == job_id)
        ).all()
    return {tuple(row[:5]): row[5] for row in rows}


@job_kind("train-predictors", TrainParams)
def _train_job(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    return train_predictors(ctx.factory, ctx.artifacts_dir, TrainParams.model_validate(params), ctx)


# Per basis devices and shot count: transfer interval scale, proxy scale, expected Spearman.
