"""``POST /predict``: accuracy (per dataset), latency and energy of designs on a device,
each with its interval and what answered it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy.orm import Session

from app.accuracy_service import accuracy_datasets, accuracy_estimates
from app.domain_errors import InvalidInput
from app.models import Device
from app.predictor_service import device_metric, estimate_dicts
from predictors.intervals import LEVEL
from search.spaces import InvalidEncoding, get_space

FP32 = "fp32"  # the policy a policy without a basis of its own borrows the basis of

SpaceName = Literal["nb201", "fbnet", "ofa_mbv3"]
Target = Literal["latency_ms", "energy_mj", "accuracy"]


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
                for e in estimate_dicts(*arrays)
            ]
    metrics: dict[str, list[dict[str, float]] | None] = {}
    for metric in ("latency_ms", "energy_mj"):
        arrays, info = device_metric(
            session, artifacts_dir, device, space, metric, policy, canonical
        )
        metrics[metric] = estimate_dicts(*arrays) if arrays is not None else None
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
