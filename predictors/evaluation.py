"""Few-shot transfer evaluation on the standard protocol (train devices -> unseen devices)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from predictors.metrics import coverage, mean_quality, quality
from predictors.shots_model import DesignFeatures
from predictors.tables import LatencyTable, TableError
from predictors.transfer import MIN_SHOTS, TransferBasis, TransferModel, ridge_baseline

Progress = Callable[[int, int], None]


def evaluate_transfer(
    table: LatencyTable,
    cost: np.ndarray,
    train: Sequence[str],
    test: Sequence[str],
    shots: int,
    seeds: int,
    progress: Progress | None = None,
    penalty_scale: float = 1.0,
    degenerate: np.ndarray | None = None,
    design_features: np.ndarray | DesignFeatures | None = None,
) -> dict:
    """Quality of EdgeOpt's transfer and of the ridge baseline on every test device.

    A test device contributes only its shots to fitting; quality is measured on all of its
    other measured designs. Each seed draws a new candidate pool (EdgeOpt chooses its shots
    from it) and a new random shot set (the baseline's).
    """
    overlap = set(train) & set(test)
    if overlap:
        raise TableError(f"devices both in --train and --test: {sorted(overlap)}")
    if not train or not test:
        raise TableError("need at least one training and one test device")
    if shots < MIN_SHOTS:
        raise TableError(f"--shots must be at least {MIN_SHOTS}")
    if seeds < 1:
        raise TableError("--seeds must be at least 1")
    basis = TransferBasis(
        cost,
        np.stack([table.column(d) for d in train], axis=1),
        list(train),
        degenerate,
        design_features,
    )
    model = TransferModel(basis, penalty_scale=penalty_scale)
    model.calibrate(shots)
    devices, baseline, cover = {}, {}, {}
    total, done = len(test) * seeds, 0
    for name in test:
        measured = table.column(name)
        available = np.flatnonzero(np.isfinite(measured))
        if len(available) < shots + 2:
            raise TableError(f"test device {name!r} has {len(available)} measured designs")
        ours, base, covered = [], [], []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            idx = model.choose_shots(shots, rng, available)
            adapted = model.adapt(idx, measured[idx])
            rest = np.setdiff1d(available, idx)
            centre, low, high = adapted.predict(rest)
            ours.append(quality(centre, measured[rest]))
            covered.append(coverage(low, high, measured[rest]))
            rand = rng.choice(available, size=shots, replace=False)
            rest_b = np.setdiff1d(available, rand)
            base.append(
                quality(ridge_baseline(basis, rand, measured[rand])[rest_b], measured[rest_b])
            )
            done += 1
            if progress:
                progress(done, total)
        devices[name] = mean_quality(ours)
        baseline[name] = mean_quality(base)
        cover[name] = float(np.mean(covered))
    return {
        "devices": devices,
        "mean": mean_quality(list(devices.values())),
        "baseline": {"devices": baseline, "mean": mean_quality(list(baseline.values()))},
        "intervals": {
            "level": 0.9,
            "coverage": cover,
            "mean_coverage": float(np.mean(list(cover.values()))),
            "scale": model.interval_scale,
        },
        "setup": {"train": list(train), "test": list(test), "shots": shots, "seeds": seeds},
    }
