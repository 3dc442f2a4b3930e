"""Accuracy answers in the service: the records and models ``predictors.accuracy`` ranks
(recorded -> model -> fp32 + change), loaded from the registry and the artifacts folder.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.artifact_store import local_path
from app.domain_errors import Conflict
from app.models import AccuracyRecord, Architecture, Predictor
from app.predictor_service import (
    ANY_POLICY,
    RECORDED,
    RECORDS_STAMP,
    Arrays,
    latest_predictors,
    load_model_file,
    predict_model,
    whole_space_rows,
)
from predictors.accuracy import accuracy_ladder
from predictors.run_spread import shipped_sigma
from search.accuracy_change import (
    combine,
    policy_features,
)
from search.spaces import get_space

FP32 = "fp32"  # the policy a policy without a basis of its own borrows the basis of

SpaceName = Literal["nb201", "fbnet", "ofa_mbv3"]
Target = Literal["latency_ms", "energy_mj", "accuracy"]


_RECORDS: dict[tuple[Any, ...], dict[str, float]] = {}


def _records(
    session: Session, space: str, dataset: str, policy: str, designs: list[str]
) -> dict[str, float]:
    """Recorded top-1 by encoding: for a few designs, theirs; for many, the whole scope's,
    cached until a record is added, removed or rewritten (newest id, count and sum change)."""
    if len(designs) <= 500:  # a few designs (``/predict``): theirs, every dataset in one query
        memo = session.info.setdefault(RECORDED, {})
        asked = (space, policy, tuple(designs))
        if asked not in memo:
            if len(memo) >= 16:
                memo.clear()
            rows = session.execute(
                select(AccuracyRecord.dataset, Architecture.encoding, AccuracyRecord.top1)
                .join(Architecture)
                .where(
                    Architecture.space == space,
                    AccuracyRecord.policy == policy,
                    Architecture.encoding.in_(designs),
                )
            ).all()
            memo[asked] = {}
            for name, encoding, top1 in rows:
                memo[asked].setdefault(name, {})[encoding] = top1
        return dict(memo[asked].get(dataset, {}))
    if RECORDS_STAMP not in session.info:  # once per transaction: it reads every record
        session.info[RECORDS_STAMP] = tuple(
            session.execute(
                select(func.max(AccuracyRecord.id), func.count(), func.sum(AccuracyRecord.top1))
            ).one()
        )
    key = (str(session.get_bind().engine.url), space, dataset, policy, *session.info[RECORDS_STAMP])
    if key not in _RECORDS:
        if len(_RECORDS) >= 32:
            _RECORDS.clear()
        scope = (
            Architecture.space == space,
            AccuracyRecord.dataset == dataset,
            AccuracyRecord.policy == policy,
        )
        query = select(Architecture.encoding, AccuracyRecord.top1).join(Architecture).where(*scope)
        _RECORDS[key] = {e: float(v) for e, v in session.execute(query).all()}
    return _RECORDS[key]


def accuracy_estimates(
    session: Session, artifacts_dir: Path, space: str, dataset: str, policy: str, designs: list[str]
) -> tuple[Arrays | None, dict[str, Any]]:
    """The accuracy ladder (``predictors.accuracy.accuracy_ladder``: record, the dataset's
    model, fp32 plus the predicted change) over the registry's records and models.

    None (with the reason) when none of them can answer for the dataset and policy.
    """
    records = _records(session, space, dataset, policy, designs)
    models = [
        p for p in latest_predictors(session, "accuracy", space, policy) if p.dataset == dataset
    ]

    def model(few: list[str]) -> Arrays:
        return predict_model(artifacts_dir, models[0], space, few)

    def quantized(few: list[str]) -> tuple[Arrays, dict[str, Any]] | None:
        return _quantized(session, artifacts_dir, space, dataset, policy, few)

    arrays, info = accuracy_ladder(
        designs,
        records,
        model if models else None,
        quantized if policy != "fp32" else None,
        shipped_sigma(space, dataset),
        f"{space} on {dataset!r} at {policy}",
    )
    if models and info["method"] == "space-model":
        info["predictor_id"] = models[0].id
    return arrays, info


def _quantized(
    session: Session, artifacts_dir: Path, space: str, dataset: str, policy: str, designs: list[str]
) -> tuple[Arrays, dict[str, Any]] | None:
    """fp32 accuracy plus the predicted change of ``policy``; None where either is missing."""
    if policy == "fp32":
        return None
    change = change_estimates(session, artifacts_dir, space, dataset, policy, designs)
    if change is None:
        return None
    fp32, fp32_info = accuracy_estimates(session, artifacts_dir, space, dataset, "fp32", designs)
    if fp32 is None:
        return None
    arrays, change_info = change
    info = {
        "method": "fp32+change",
        "fp32": {k: v for k, v in fp32_info.items() if k in ("method", "recorded", "predictor_id")},
        "change": change_info,
    }
    return combine(fp32, arrays), info


def _pairs_then_newest(model: Predictor) -> tuple[int, int]:
    return int((model.provenance or {}).get("rows", 0)), model.id


@lru_cache(maxsize=64)
def _whole_space_change(path: str, space: str, policy: str) -> Arrays:
    """A change model's predictions for every enumerated cell under one policy."""
    designs = get_space(space).enumerate()  # type: ignore[attr-defined]
    return load_model_file(path).predict(policy_features(space, designs, policy))


def change_estimates(
    session: Session, artifacts_dir: Path, space: str, dataset: str, policy: str, designs: list[str]
) -> tuple[Arrays, dict[str, Any]] | None:
    """The accuracy change (points) ``policy`` brings to each design, and where it was learned.

    The dataset's own change model (from records a user uploaded for it) comes first;
    otherwise the one learned from the most pairs, and the answer says it is another
    dataset's. None when no change model exists for the space.
    """
    models = latest_predictors(session, "accuracy_change", space, ANY_POLICY)
    if not models:
        return None
    own = [m for m in models if m.dataset == dataset]
    model = own[0] if own else max(models, key=_pairs_then_newest)
    path = str(local_path(artifacts_dir, model.artifact))
    try:
        rows = whole_space_rows(space, designs)
        if rows is not None:
            arrays = _whole_space_change(path, space, policy)
            arrays = arrays[0][rows], arrays[1][rows], arrays[2][rows]
        else:
            arrays = load_model_file(path).predict(policy_features(space, designs, policy))
    except (ValueError, OSError) as exc:
        raise Conflict(f"predictor {model.id} cannot be used: {exc}") from None
    quality = model.quality or {}
    info: dict[str, Any] = {
        "predictor_id": model.id,
        "learned_on": model.dataset,
        "interval_points": round(float(np.median(arrays[2] - arrays[0])), 3),
        "held_out_mae_points": quality.get("mae"),
    }
    if model.dataset != dataset:
        info["note"] = (
            f"the change {policy} brings was learned from {model.dataset} accuracies, not "
            f"{dataset}: upload quantized accuracy records for {dataset} to replace it"
        )
    return arrays, info


_DATASETS: dict[tuple[Any, ...], list[str]] = {}


def _recorded_datasets(session: Session, space: str, policy: str) -> list[str]:
    """Datasets with accuracy records for the space and policy, cached until a record is
    added: the distinct over every record of the space took most of a one-design
    ``/predict``. Records are added or rewritten in place (a rewrite keeps its dataset and
    policy), never deleted, so the newest id tells when the answer may have changed; a count
    would cost more than the rest of the request."""
    newest = session.scalar(select(func.max(AccuracyRecord.id)))
    key = (str(session.get_bind().engine.url), space, policy, newest)
    if key not in _DATASETS:
        if len(_DATASETS) >= 64:
            _DATASETS.clear()
        _DATASETS[key] = list(
            session.scalars(
                select(AccuracyRecord.dataset)
                .join(Architecture)
                .where(Architecture.space == space, AccuracyRecord.policy == policy)
                .distinct()
            ).all()
        )
    return _DATASETS[key]


def accuracy_datasets(session: Session, space: str, policy: str) -> list[str]:
    """Datasets with accuracy records or a model for the space and policy."""
    recorded = _recorded_datasets(session, space, policy)
    modelled = [p.dataset for p in latest_predictors(session, "accuracy", space, policy)]
    found = {d for d in [*recorded, *modelled] if d}
    if policy != "fp32" and latest_predictors(session, "accuracy_change", space, ANY_POLICY):
        found |= set(accuracy_datasets(session, space, "fp32"))
    return sorted(found)
