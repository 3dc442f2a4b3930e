"""Flags on shown latency predictions: extrapolations and wide intervals (the wiring).

The rules are ``search.plausibility``'s; here is what they are judged against, read from the
registry: the device's fastest measured latency in the policy (an inline profile's fastest
shot), or, where the device measured nothing in it, per design the fastest prediction among
the basis devices (every other device with a model of the policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Architecture, Device, Measurement
from app.predictor_service import metric_basis
from search.plausibility import extrapolated, extrapolation_note, fastest_working, uncertain
from search.spaces import get_space

# Rows read for a device's floor, fastest first: more than NB201's 341 degenerate cells, so
# the fastest working design is among them.
FLOOR_ROWS = 400
FLOOR_CHUNK = 25  # judged a few at a time: the first working design is nearly always first


@dataclass(frozen=True)
class Shown:
    """One shown latency prediction: design, policy, median and 90% interval."""

    design: str
    policy: str
    value: float
    low: float
    high: float


def latency_floor(session: Session, device: Device, space: str, policy: str) -> float | None:
    """The device's fastest measured latency of a working design in a space and policy."""
    rows = session.execute(
        select(Architecture.encoding, Measurement.value)
        .join(Architecture)
        .where(
            Measurement.device_id == device.id,
            Measurement.metric == "latency_ms",
            Measurement.policy == policy,
            Architecture.space == space,
        )
        .order_by(Measurement.value)
        .limit(FLOOR_ROWS)
    ).all()
    codec = get_space(space)
    for start in range(0, len(rows), FLOOR_CHUNK):  # fastest first: the first working one
        chunk = rows[start : start + FLOOR_CHUNK]
        values = np.array([r[1] for r in chunk], dtype=float)
        floor = fastest_working(values, codec.degenerate([r[0] for r in chunk]))
        if floor is not None:
            return floor
    return None


def flag_latency(
    session: Session,
    artifacts_dir: Path,
    device: Device | None,
    space: str,
    shown: Sequence[Shown],
    shots: list[tuple[str, float]] | None = None,
    shot_policy: str = "fp32",
) -> tuple[list[dict[str, bool]], list[str]]:
    """``{"extrapolated", "uncertain"}`` per shown prediction, and a note per policy with
    extrapolations. ``shots``: an inline profile's measurements (in ``shot_policy``) instead
    of a registered device's."""
    flags = [{"extrapolated": False, "uncertain": False} for _ in shown]
    notes: list[str] = []
    if not shown:
        return flags, notes
    value = np.array([s.value for s in shown], dtype=float)
    wide = uncertain(np.array([s.low for s in shown]), np.array([s.high for s in shown]))
    for k, w in enumerate(wide):
        flags[k]["uncertain"] = bool(w)
    for policy in dict.fromkeys(s.policy for s in shown):
        rows = [k for k, s in enumerate(shown) if s.policy == policy]
        floor: float | np.ndarray | None = None
        if shots is not None and policy == shot_policy:
            floor = fastest_working(
                np.array([v for _, v in shots], dtype=float),
                get_space(space).degenerate([e for e, _ in shots]),
            )
        elif shots is None and device is not None:
            floor = latency_floor(session, device, space, policy)
        if floor is None:
            floor = _basis_floor(session, artifacts_dir, device, space, policy, shown, rows)
        out = extrapolated(value[rows], floor)
        for k, x in zip(rows, out, strict=True):
            flags[k]["extrapolated"] = bool(x)
        if out.any():
            one = float(floor) if isinstance(floor, float) else None
            notes.append(extrapolation_note(int(out.sum()), one, policy))
    return flags, notes


def _basis_floor(
    session: Session,
    artifacts_dir: Path,
    device: Device | None,
    space: str,
    policy: str,
    shown: Sequence[Shown],
    rows: list[int],
) -> np.ndarray | None:
    """Per shown design, the fastest basis device's prediction of it (None: no basis)."""
    designs = list(dict.fromkeys(shown[k].design for k in rows))
    basis = metric_basis(session, artifacts_dir, device, space, "latency_ms", policy, designs)
    if basis is None:
        return None
    with np.errstate(all="ignore"):
        fastest = np.nanmin(np.where(basis.latency_ms > 0, basis.latency_ms, np.nan), axis=1)
    at = {d: float(v) for d, v in zip(designs, fastest, strict=True)}
    return np.array([at[shown[k].design] for k in rows], dtype=float)


def mark_predictions(
    session: Session,
    artifacts_dir: Path,
    device: Device,
    space: str,
    policy: str,
    answer: dict[str, Any],
) -> None:
    """Flag a ``/predict`` answer's latency predictions in place, with its notes."""
    items = [d for d in answer["designs"] if d.get("latency_ms") is not None]
    shown = [
        Shown(d["design"], policy, d["latency_ms"]["value"], d["latency_ms"]["low"],
              d["latency_ms"]["high"])
        for d in items
    ]  # fmt: skip
    flags, notes = flag_latency(session, artifacts_dir, device, space, shown)
    for item in answer["designs"]:
        item.setdefault("extrapolated", False)
        item.setdefault("uncertain", False)
    for item, flag in zip(items, flags, strict=True):
        item.update(flag)
    answer["notes"] = [*answer["notes"], *notes]
