"""Predictors in the service: train them from the registry (a job), answer predictions.

The models themselves live in ``predictors/``; this module reads measurements and accuracy
records from the database, stores artifacts under the artifacts folder with a row per
predictor, and decides which model answers a prediction:

1. the device's own model, when it has one for that metric and policy;
2. otherwise, from the device's own measurements in the space (at least 3): a registered
   proxy device whose ranking agrees with them (Spearman >= 0.9), calibrated monotonically;
   when none agrees that well, few-shot transfer over all registered devices' models;
3. otherwise no number, and a note saying why.
"""

from __future__ import annotations

import shutil
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import event, func, literal, select
from sqlalchemy.orm import Session, sessionmaker

from app.artifact_store import local_path, record
from app.artifacts import write_folder
from app.db import unit_of_work
from app.domain_errors import Conflict, InvalidInput
from app.jobs import JobContext, job_kind
from app.models import AccuracyRecord, Architecture, Device, Measurement, Predictor
from predictors.accuracy import accuracy_ladder
from predictors.answer import answer, calibrated_proxy_scale, transfer_calibration
from predictors.design_model import DesignModel, fit_design_model, library_versions
from predictors.intervals import LEVEL
from predictors.run_spread import shipped_sigma
from predictors.transfer import MIN_SHOTS, TransferBasis, TransferModel
from search.accuracy_change import (
    Pairs,
    combine,
    fit_change_model,
    pairs_from_records,
    policy_features,
)
from search.spaces import NB201, InvalidEncoding, get_space

FP32 = "fp32"  # the policy a policy without a basis of its own borrows the basis of

SpaceName = Literal["nb201", "fbnet", "ofa_mbv3"]
Target = Literal["latency_ms", "energy_mj", "accuracy"]
ANY_POLICY = "any"  # the scope of a model that answers every policy of its space


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


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]
# Per basis devices and shot count: transfer interval scale, proxy scale, expected Spearman.
_SCALES: dict[tuple[Any, ...], tuple[float, float, float | None]] = {}
POOL = 3000  # designs a space's calibration and measurement suggestions are drawn from


@lru_cache(maxsize=256)
def _load(path: str) -> DesignModel:
    return DesignModel.load(Path(path))


def load_model(artifacts_dir: Path, predictor: Predictor) -> DesignModel:
    """The predictor's artifact (cached per file: artifacts are never rewritten)."""
    return _load(str(local_path(artifacts_dir, predictor.artifact)))


@lru_cache(maxsize=256)
def _whole_space(path: str, space: str, policy: str) -> tuple[dict[str, int], Arrays]:
    codec = get_space(space)
    designs = codec.enumerate() if isinstance(codec, NB201) else []
    arrays = _load(path).predict(codec.encode(designs, policy)) if designs else (np.zeros(0),) * 3
    return {d: i for i, d in enumerate(designs)}, arrays


@lru_cache(maxsize=4)
def _cell_positions(space: str) -> dict[str, int]:
    codec = get_space(space)
    return {d: i for i, d in enumerate(codec.enumerate())} if isinstance(codec, NB201) else {}


@lru_cache(maxsize=4)
def _whole_space_features(space: str) -> tuple[np.ndarray, np.ndarray]:
    """Cost features and degenerate flags of every enumerated cell, in enumeration order."""
    codec = get_space(space)
    assert isinstance(codec, NB201)  # only enumerated spaces have whole-space rows
    cells = codec.enumerate()
    return codec.features(cells), codec.degenerate(cells)


@lru_cache(maxsize=8)
def _whole_space_design_features(space: str, policy: str) -> np.ndarray:
    """Every enumerated cell's own features under ``policy`` (what a device's shots model
    learns over), in enumeration order."""
    codec = get_space(space)
    assert isinstance(codec, NB201)  # only enumerated spaces have whole-space rows
    return codec.encode(codec.enumerate(), policy)


def whole_space_rows(space: str, encodings: list[str]) -> np.ndarray | None:
    """Where ``encodings`` sit among the space's enumerated cells (None: not all of them do,
    or the space is not enumerated). Computed once per request for every model it asks."""
    position = _cell_positions(space)
    if not position:
        return None
    try:
        return np.fromiter(map(position.__getitem__, encodings), dtype=int, count=len(encodings))
    except KeyError:
        return None


def predict_model(
    artifacts_dir: Path,
    predictor: Predictor,
    space: str,
    encodings: list[str],
    rows: np.ndarray | None = None,
) -> Arrays:
    """A design model's predictions; whole-space NB201 predictions are computed once per model.

    ``rows``: ``whole_space_rows(space, encodings)``, when the caller has it already.
    """
    path = str(local_path(artifacts_dir, predictor.artifact))
    try:
        position, arrays = _whole_space(path, space, predictor.policy)
        if position and rows is None:
            rows = whole_space_rows(space, encodings)
        if position and rows is not None:
            return arrays[0][rows], arrays[1][rows], arrays[2][rows]
        return _load(path).predict(get_space(space).encode(encodings, predictor.policy))
    except (ValueError, OSError) as exc:  # a stale or missing artifact: say which and why
        raise Conflict(f"predictor {predictor.id} cannot be used: {exc}") from None


def encoding_columns(session: Session, space: str) -> int | None:
    """Width of the space's design encoding now, from one registered design (None: none)."""
    design = session.scalar(
        select(Architecture.encoding).where(Architecture.space == space).limit(1)
    )
    return None if design is None else int(get_space(space).encode([design]).shape[1])


def stale_predictors(session: Session) -> list[Predictor]:
    """Newest predictors trained on an older design encoding than the code's (need retraining)."""
    newest = select(
        Predictor.target, Predictor.space, Predictor.device_id, Predictor.dataset,
        Predictor.policy, func.max(Predictor.version).label("version"),
    ).group_by(
        Predictor.target, Predictor.space, Predictor.device_id, Predictor.dataset, Predictor.policy
    ).subquery()  # fmt: skip
    rows = session.scalars(
        select(Predictor).join(
            newest,
            (Predictor.target == newest.c.target)
            & (Predictor.space == newest.c.space)
            & (Predictor.device_id.is_not_distinct_from(newest.c.device_id))
            & (Predictor.dataset.is_not_distinct_from(newest.c.dataset))
            & (Predictor.policy == newest.c.policy)
            & (Predictor.version == newest.c.version),
        )
    ).all()
    widths: dict[str, int | None] = {}
    stale = []
    for row in rows:
        if row.space not in widths:
            widths[row.space] = encoding_columns(session, row.space)
        if (row.provenance or {}).get("encoding_columns") != widths[row.space]:
            stale.append(row)
    return stale


_NEWEST = "edgeopt.newest_predictors"  # session.info: the newest predictor per scope, by space
_SNAPSHOTS: dict[tuple[Any, ...], list[Predictor]] = {}
_COLUMNS = [c.key for c in Predictor.__mapper__.column_attrs]


@event.listens_for(Session, "after_flush")
@event.listens_for(Session, "after_transaction_end")
def _forget_newest(session: Session, *_: Any) -> None:
    """A session's own writes, or a new transaction, may change what it read."""
    session.info.pop(_NEWEST, None)
    session.info.pop(_RECORDED, None)
    session.info.pop(_STAMP, None)


def _newest_predictors(session: Session, space: str) -> list[Predictor]:
    """The newest version of every predictor scope of a space, for a dozen scopes a
    prediction asks about: read once per transaction, and kept across requests until a
    predictor is added or removed (the newest id, the count and the newest creation time
    change; SQLite reuses the ids a device's deletion frees, their creation time differs).

    Rows are never rewritten. The copies returned are transient (in no session), shared
    between requests: read them, never change them or add them to a session.
    """
    memo = session.info.setdefault(_NEWEST, {})
    if space in memo:
        return memo[space]
    stamp = session.execute(
        select(func.max(Predictor.id), func.count(), func.max(Predictor.created_at))
    ).one()
    key = (str(session.get_bind().engine.url), space, *stamp)
    if key not in _SNAPSHOTS:
        scope = (Predictor.target, Predictor.device_id, Predictor.dataset, Predictor.policy)
        newest = (
            select(*scope, func.max(Predictor.version).label("version"))
            .where(Predictor.space == space)
            .group_by(*scope)
            .subquery()
        )
        q = (
            select(*(getattr(Predictor, c) for c in _COLUMNS))
            .join(
                newest,
                (Predictor.target == newest.c.target)
                & (Predictor.policy == newest.c.policy)
                & (Predictor.version == newest.c.version)
                & (Predictor.device_id.is_not_distinct_from(newest.c.device_id))
                & (Predictor.dataset.is_not_distinct_from(newest.c.dataset)),
            )
            .where(Predictor.space == space)
            .order_by(Predictor.device_id, Predictor.dataset)
        )
        if len(_SNAPSHOTS) >= 32:
            _SNAPSHOTS.clear()
        _SNAPSHOTS[key] = [
            Predictor(**dict(zip(_COLUMNS, r, strict=True))) for r in session.execute(q)
        ]
    memo[space] = _SNAPSHOTS[key]
    return memo[space]


def latest_predictors(
    session: Session,
    target: str,
    space: str,
    policy: str,
    device_id: int | None = None,
    any_device: bool = False,
) -> list[Predictor]:
    """Newest version per scope, optionally across all devices (by device, then dataset)."""
    return [
        p
        for p in _newest_predictors(session, space)
        if p.target == target and p.policy == policy and (any_device or p.device_id == device_id)
    ]


def _estimates(centre: np.ndarray, low: np.ndarray, high: np.ndarray) -> list[dict[str, float]]:
    return [
        {"value": c, "low": lo, "high": hi}
        for c, lo, hi in zip(centre.tolist(), low.tolist(), high.tolist(), strict=True)
    ]


def device_shots(
    session: Session,
    device: Device,
    space: str,
    metric: str,
    policy: str,
    among: list[str] | None = None,
) -> list[tuple[str, float]]:
    """The device's own measured designs of a space, metric and policy (the shots); only
    those ``among`` some designs when given (a reference device measured all 15,625)."""
    query = (
        select(Architecture.encoding, Measurement.value)
        .join(Architecture)
        .where(
            Measurement.device_id == device.id,
            Measurement.metric == metric,
            Measurement.policy == policy,
            Architecture.space == space,
        )
        .order_by(Architecture.id)
    )
    if among is not None:
        query = query.where(Architecture.encoding.in_(among))
    return [(r[0], float(r[1])) for r in session.execute(query).all()]


def metric_basis(
    session: Session,
    artifacts_dir: Path,
    device: Device | None,
    space: str,
    metric: str,
    policy: str,
    encodings: list[str],
    features_policy: str | None = None,
) -> TransferBasis | None:
    """Every other device's model of the metric over ``encodings``, with cost features.

    None when no other device has a model. The basis' designs are ``encodings`` in order;
    their design features are those under ``features_policy`` (default ``policy``): a
    policy no device has a model for is answered from the fp32 models and its own shots.
    """
    mine = device.id if device is not None else None
    others = [
        p
        for p in latest_predictors(session, metric, space, policy, any_device=True)
        if p.device_id != mine
    ]
    if not others:
        return None
    names = dict(
        session.execute(
            select(Device.id, Device.name).where(Device.id.in_([p.device_id for p in others]))
        ).all()
    )
    rows = whole_space_rows(space, encodings)
    basis_ms = np.stack(
        [predict_model(artifacts_dir, p, space, encodings, rows)[0] for p in others], axis=1
    )
    codec = get_space(space)
    if rows is not None:  # cells of an enumerated space: their features are computed once
        cost, degenerate = (a[rows] for a in _whole_space_features(space))
        design = _whole_space_design_features(space, features_policy or policy)[rows]
    else:
        cost, degenerate = codec.features(encodings), codec.degenerate(encodings)
        design = codec.encode(encodings, features_policy or policy)
    return TransferBasis(
        cost, basis_ms, [names.get(p.device_id or 0, "?") for p in others], degenerate, design
    )


def design_pool(space: str) -> list[str]:
    """A fixed sample of the space's designs (all of them in a small space), seeded.

    Calibration and "what to measure next" run over it rather than over whatever designs a
    request names, so a one-design ``/predict`` gets the same intervals as a whole space.
    """
    rng = np.random.default_rng(0)
    try:
        return list(dict.fromkeys(get_space(space).sample(rng, POOL)))
    except NotImplementedError:  # a space that cannot sample: its reference designs
        from devices.reference import load_reference

        designs = load_reference(space).encodings
        return [designs[i] for i in rng.permutation(len(designs))[:POOL]]


def interval_scales(
    session: Session,
    artifacts_dir: Path,
    device: Device | None,
    space: str,
    metric: str,
    policy: str,
    names: list[str],
    shots: int,
    features_policy: str | None = None,
) -> tuple[float, float, float | None]:
    """The transfer's and a reused proxy's calibrated interval multipliers and the Spearman
    a device can expect from ``shots`` measurements, computed once per basis devices and
    shot count (a property of the registered devices, not of the request)."""
    key = (space, policy, features_policy, metric, tuple(names), shots)
    if key not in _SCALES:
        pool = metric_basis(
            session, artifacts_dir, device, space, metric, policy, design_pool(space),
            features_policy,
        )  # fmt: skip
        if pool is None:
            raise Conflict(f"no registered device has a {metric} model for {space}")
        scale, expected = transfer_calibration(pool, shots)
        _SCALES[key] = (scale, calibrated_proxy_scale(pool, shots), expected)
    return _SCALES[key]


def next_measurements(
    session: Session,
    artifacts_dir: Path,
    device: Device,
    space: str,
    metric: str,
    policy: str,
    count: int,
) -> dict[str, Any]:
    """The designs a device should measure next, and the rank quality they should bring.

    For a device answered by transfer: the ``count`` designs that, on top of its measured
    ones, pin the transfer's coefficients best (the same D-optimal choice as the
    fingerprint), and the Spearman held-out devices reached from as many shots before and
    after measuring them. Fewer (none) when fewer of the pool's designs are left unmeasured,
    with a note saying so.
    """
    pool = design_pool(space)
    try:
        get_space(space).encode(pool[:1], policy)
    except ValueError as exc:
        raise InvalidInput(f"policy: {exc}") from None
    own = latest_predictors(session, metric, space, policy, device.id)
    shots = device_shots(session, device, space, metric, policy)
    measured = [e for e, _ in shots]
    union = list(dict.fromkeys(measured + pool))
    basis = metric_basis(session, artifacts_dir, device, space, metric, policy, union)
    if basis is None:
        raise Conflict(f"no other device has a {metric} model for {space} to transfer from")
    taken = np.arange(len(measured))
    left = len(union) - len(measured)  # suggestions come from the pool: fewer may be left
    k = min(count, left)
    rng = np.random.default_rng(0)
    rows = TransferModel(basis).choose_shots(k, rng, taken=taken) if k else np.zeros(0, int)
    n = len(shots)

    def expected(k: int) -> float | None:
        if k < MIN_SHOTS:
            return None
        return interval_scales(
            session, artifacts_dir, device, space, metric, policy, basis.names, k
        )[2]

    return {
        "device": device.name,
        "space": space,
        "metric": metric,
        "policy": policy,
        "answered_by": "device-model" if own else ("transfer" if n >= MIN_SHOTS else None),
        "shots": n,
        "expected_spearman": None if own else expected(n),
        "expected_spearman_after": None if own else expected(n + k),
        "designs": [union[i] for i in rows],
        "note": _exhausted_note(len(pool), left, count),
    }


def _exhausted_note(pool: int, left: int, count: int) -> str | None:
    """Why fewer designs than asked for are suggested: the pool they are drawn from ran out."""
    if left >= count:
        return None
    if left == 0:
        return (
            f"the device has measured every one of the {pool} designs suggestions are drawn "
            "from: nothing is left to suggest (measure any other design of the space directly)"
        )
    return (
        f"only {left} of the {pool} designs suggestions are drawn from are left unmeasured "
        f"on the device: {left} suggested, not {count}"
    )


def device_metric(
    session: Session,
    artifacts_dir: Path,
    device: Device | None,
    space: str,
    metric: str,
    policy: str,
    encodings: list[str],
    shots: list[tuple[str, float]] | None = None,
    allow_proxy: bool = True,
    proxy_evidence: bool = True,
) -> tuple[Arrays | None, dict[str, Any]]:
    """One metric over designs, answered by ``predictors.answer`` (own, proxy, transfer).

    ``device`` may be None for an inline profile, whose ``shots`` (design, value) are then
    the only measurements; a registered device's shots default to its stored measurements.
    ``allow_proxy=False`` goes straight to few-shot transfer; ``proxy_evidence=False`` reuses
    an agreeing proxy on rank agreement alone (``predictors.answer.answer``).
    """
    who = f"device {device.name!r}" if device is not None else "the inline profile"
    label = f"{metric} model for {who} in {space} at policy {policy!r}"
    own = latest_predictors(session, metric, space, policy, device.id) if device else []
    if own:
        got = answer(None, np.zeros(0), np.zeros(0), own=predict_model(
            artifacts_dir, own[0], space, encodings
        ))  # fmt: skip
        return got.estimates, got.info() | {"predictor_id": own[0].id}
    if shots is None and device is not None:
        shots = device_shots(session, device, space, metric, policy)
    shots = shots or []
    shot_enc = [e for e, _ in shots]
    union = list(dict.fromkeys(shot_enc + encodings))
    basis = (
        metric_basis(session, artifacts_dir, device, space, metric, policy, union)
        if len(shots) >= MIN_SHOTS
        else None
    )
    basis_policy = policy
    if basis is None and len(shots) >= MIN_SHOTS and policy != FP32:
        # no device has a model at this policy: a policy is another setting, so the fp32
        # models are the basis and the device's own shots at this policy do the rest
        basis_policy = FP32
        basis = metric_basis(
            session, artifacts_dir, device, space, metric, FP32, union, features_policy=policy
        )
    pos = {e: i for i, e in enumerate(union)}
    shot_idx = np.array([pos[e] for e in shot_enc], dtype=int)
    measured = np.array([v for _, v in shots], dtype=float)
    scales: tuple[float | None, float, float | None] = (
        interval_scales(
            session,
            artifacts_dir,
            device,
            space,
            metric,
            basis_policy,
            basis.names,
            len(shots),
            features_policy=policy,
        )
        if basis is not None
        else (None, 1.0, None)
    )
    got = answer(
        basis,
        shot_idx,
        measured,
        np.array([pos[e] for e in encodings], dtype=int),
        allow_proxy=allow_proxy,
        proxy_evidence=proxy_evidence,
        interval_scale=scales[0],
        proxy_scale=scales[1],
        label=label,
        expected_spearman=scales[2],
    )
    info = got.info()
    if basis_policy != policy and got.method is not None:
        info["basis_policy"] = basis_policy
        info["decision"] = (
            f"{info.get('decision', '')}; no device has a {policy} {metric} model, so the "
            f"basis is their {basis_policy} models and the device's own {policy} shots"
        )
    return got.estimates, info


_RECORDS: dict[tuple[Any, ...], dict[str, float]] = {}
_RECORDED = "edgeopt.recorded"  # session.info: a few designs' records, by dataset
_STAMP = "edgeopt.records_stamp"  # session.info: newest id, count and sum of the records


def _records(
    session: Session, space: str, dataset: str, policy: str, designs: list[str]
) -> dict[str, float]:
    """Recorded top-1 by encoding: for a few designs, theirs; for many, the whole scope's,
    cached until a record is added, removed or rewritten (newest id, count and sum change)."""
    if len(designs) <= 500:  # a few designs (``/predict``): theirs, every dataset in one query
        memo = session.info.setdefault(_RECORDED, {})
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
    if _STAMP not in session.info:  # once per transaction: it reads every record
        session.info[_STAMP] = tuple(
            session.execute(
                select(func.max(AccuracyRecord.id), func.count(), func.sum(AccuracyRecord.top1))
            ).one()
        )
    key = (str(session.get_bind().engine.url), space, dataset, policy, *session.info[_STAMP])
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
    return _load(path).predict(policy_features(space, designs, policy))


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
            arrays = _load(path).predict(policy_features(space, designs, policy))
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


def predict_designs(
    session: Session,
    artifacts_dir: Path,
    device: Device,
    space: str,
    policy: str,
    encodings: list[str],
) -> dict[str, Any]:
    """Accuracy (per dataset), latency and energy for designs on a device, with intervals."""
    codec = get_space(space)
    canonical = []
    for i, e in enumerate(encodings):
        try:
            canonical.append(codec.canonical(e))
        except InvalidEncoding as exc:
            raise InvalidInput(f"designs[{i}]: {exc}") from None
    notes: list[str] = []
    answered: dict[str, Any] = {}
    accuracy: dict[str, list[dict[str, float]]] = {}
    try:  # one design tells whether the policy fits the space's units
        codec.encode(canonical[:1], policy)
    except ValueError as exc:
        raise InvalidInput(f"policy: {exc}") from None
    datasets = accuracy_datasets(session, space, policy)
    if not datasets:
        notes.append(f"no accuracy records or model for {space} at policy {policy!r}")
    for dataset in datasets:
        arrays, acc_info = accuracy_estimates(
            session, artifacts_dir, space, dataset, policy, canonical
        )
        answered[f"accuracy.{dataset}"] = acc_info
        if arrays is not None:
            accuracy[dataset] = [
                e if np.isfinite(e["value"]) else None  # type: ignore[misc]
                for e in _estimates(*arrays)
            ]
    metrics: dict[str, list[dict[str, float]] | None] = {}
    for metric in ("latency_ms", "energy_mj"):
        arrays, info = device_metric(
            session, artifacts_dir, device, space, metric, policy, canonical
        )
        metrics[metric] = _estimates(*arrays) if arrays is not None else None
        answered[metric] = info
        if arrays is None:
            notes.append(info["reason"])
    designs = []
    for i, e in enumerate(canonical):
        designs.append(
            {
                "design": e,
                "accuracy": {k: v[i] for k, v in accuracy.items()},
                "latency_ms": metrics["latency_ms"][i] if metrics["latency_ms"] else None,
                "energy_mj": metrics["energy_mj"][i] if metrics["energy_mj"] else None,
            }
        )
    return {
        "device": device.name,
        "space": space,
        "policy": policy,
        "level": LEVEL,
        "designs": designs,
        "answered_by": answered,
        "notes": notes,
    }
