"""Predictors in the service: load the newest models and answer latency and energy.

The models themselves live in ``predictors/``; training them is ``app.training_service``
(a job), accuracy answers are ``app.accuracy_service``. This module reads a device's
measurements and the predictor rows from the database, loads artifacts, and finds which
model answers a prediction:

1. the device's own model, when it has one for that metric and policy;
2. otherwise, from the device's own measurements in the space (at least 3): a registered
   proxy device whose ranking agrees with them (Spearman >= 0.9), calibrated monotonically;
   when none agrees that well, few-shot transfer over all registered devices' models;
3. otherwise no number, and a note saying why.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from app.artifact_store import local_path
from app.domain_errors import Conflict, InvalidInput
from app.models import Architecture, Device, Measurement, Predictor
from predictors.answer import answer, calibrated_proxy_scale, transfer_calibration
from predictors.design_model import DesignModel
from predictors.shots_model import DesignFeatures
from predictors.transfer import MIN_SHOTS, TransferBasis, TransferModel
from search.spaces import NB201, get_space

FP32 = "fp32"  # the policy a policy without a basis of its own borrows the basis of

SpaceName = Literal["nb201", "fbnet", "ofa_mbv3"]
Target = Literal["latency_ms", "energy_mj", "accuracy"]
ANY_POLICY = "any"  # the scope of a model that answers every policy of its space
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]
_SCALES: dict[tuple[Any, ...], tuple[float, float, float | None]] = {}
POOL = 3000  # designs a space's calibration and measurement suggestions are drawn from


@lru_cache(maxsize=256)
def load_model_file(path: str) -> DesignModel:
    return DesignModel.load(Path(path))


def load_model(artifacts_dir: Path, predictor: Predictor) -> DesignModel:
    """The predictor's artifact (cached per file: artifacts are never rewritten)."""
    return load_model_file(str(local_path(artifacts_dir, predictor.artifact)))


@lru_cache(maxsize=256)
def _whole_space(path: str, space: str, policy: str) -> tuple[dict[str, int], Arrays]:
    codec = get_space(space)
    designs = codec.enumerate() if isinstance(codec, NB201) else []
    arrays = (
        load_model_file(path).predict(codec.encode(designs, policy))
        if designs
        else (np.zeros(0),) * 3
    )
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
def _whole_space_design_features(space: str, policy: str) -> DesignFeatures:
    """Every enumerated cell's own features under ``policy`` (what a device's shots model
    learns over), in enumeration order."""
    codec = get_space(space)
    assert isinstance(codec, NB201)  # only enumerated spaces have whole-space rows
    return codec.design_features(codec.enumerate(), policy)


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
        return load_model_file(path).predict(get_space(space).encode(encodings, predictor.policy))
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


RECORDED = "edgeopt.recorded"  # session.info: a few designs' records, by dataset
RECORDS_STAMP = "edgeopt.records_stamp"  # session.info: newest id, count and sum of the records
_NEWEST = "edgeopt.newest_predictors"  # session.info: the newest predictor per scope, by space
_SNAPSHOTS: dict[tuple[Any, ...], list[Predictor]] = {}
_COLUMNS = [c.key for c in Predictor.__mapper__.column_attrs]


@event.listens_for(Session, "after_flush")
@event.listens_for(Session, "after_transaction_end")
def _forget_newest(session: Session, *_: Any) -> None:
    """A session's own writes, or a new transaction, may change what it read."""
    session.info.pop(_NEWEST, None)
    session.info.pop(RECORDED, None)
    session.info.pop(RECORDS_STAMP, None)


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


def estimate_dicts(centre: np.ndarray, low: np.ndarray, high: np.ndarray) -> list[dict[str, float]]:
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
        design = _whole_space_design_features(space, features_policy or policy).rows(rows)
    else:
        cost, degenerate = codec.features(encodings), codec.degenerate(encodings)
        design = codec.design_features(encodings, features_policy or policy)
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
