"""Validation by family: each implementation family of devices held out in turn.

Devices measured with one implementation of a space's networks (one definition of the
networks, one exporter, one runtime lineage) rank designs alike even across hardware
classes, so a split inside a family flatters transfer. A new user's device runs its own
software: here every family is held out in turn, the others are the basis, and each figure
stands beside three simple baselines computed on the same shots:

- ``ridge``: log-latency linear in the basis devices' log-latencies;
- ``shots_only``: the device's own shots model with no basis at all (design features only);
- ``best_device``: the basis device that ranks the shots best, through a monotone calibration.

Families in ``target_only`` (a runtime's own tables measured on a few hundred designs) are
tested but never used as basis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from predictors.answer import transfer_calibration
from predictors.metrics import coverage, spearman
from predictors.proxy import MonotoneCalibration, rank_proxies
from predictors.shots_model import DesignFeatures, DesignPrior, fit_shots
from predictors.transfer import TransferBasis, TransferModel, ridge_baseline

METHODS = ("edgeopt", "ridge", "shots_only", "best_device")
EVAL_ROWS = 3000  # held-out designs scored per device and seed (sampled)
Progress = Callable[[int, int], None]


def evaluate_families(
    latency_ms: np.ndarray,
    names: Sequence[str],
    family: Mapping[str, str],
    cost: np.ndarray,
    design_features: np.ndarray | DesignFeatures,
    shots: Sequence[int],
    seeds: int,
    degenerate: np.ndarray | None = None,
    target_only: Sequence[str] = (),
    progress: Progress | None = None,
) -> dict:
    """Mean Spearman of EdgeOpt and the baselines, and 90% coverage, per family and shots.

    ``latency_ms``: designs x devices (NaN where not measured); ``family``: device name ->
    family. A device is tested at a shot count when it measured at least 50 designs more.
    """
    names = list(names)
    families = sorted({family[n] for n in names})
    isotropic = DesignPrior(design_features, np.zeros((len(latency_ms), 0)))
    out: dict[str, dict] = {}
    work = sum(
        1 for n in names for _ in shots for _ in range(seeds) if family[n] in families
    )  # an upper bound for the progress bar
    done = 0
    for held in families:
        basis_cols = [
            j for j, n in enumerate(names) if family[n] != held and family[n] not in target_only
        ]
        targets = [j for j, n in enumerate(names) if family[n] == held]
        basis = TransferBasis(
            cost, latency_ms[:, basis_cols], [names[j] for j in basis_cols], degenerate,
            design_features,
        )  # fmt: skip
        rows: dict[str, dict] = {}
        for k in shots:
            # the interval scale as the service calibrates it (3,000 sampled designs)
            model = TransferModel(basis, interval_scale=transfer_calibration(basis, k)[0])
            scores: dict[str, list[float]] = {m: [] for m in METHODS}
            covered: list[float] = []
            per_device: dict[str, dict[str, float]] = {}
            for j in targets:
                truth = latency_ms[:, j]
                available = np.flatnonzero(np.isfinite(truth))
                if len(available) < k + 50:
                    done += seeds
                    continue
                first = len(scores["ridge"])
                mine = []
                for seed in range(seeds):
                    rng = np.random.default_rng(seed)
                    idx = model.choose_shots(k, rng, available)
                    rest = np.setdiff1d(available, idx)
                    rest = rng.choice(rest, size=min(EVAL_ROWS, len(rest)), replace=False)
                    y, target = truth[idx], truth[rest]
                    centre, low, high = model.adapt(idx, y).predict(rest)
                    mine.append(spearman(centre, target))
                    covered.append(coverage(low, high, target))
                    ridge = ridge_baseline(basis, idx, y)[rest]
                    scores["ridge"].append(spearman(ridge, target))
                    alone = fit_shots(isotropic, idx, np.log(y)).predict(rest)
                    scores["shots_only"].append(spearman(alone, target))
                    proxy = rank_proxies(np.exp(basis.log_latency[idx]), y)
                    column = np.exp(basis.log_latency[:, proxy.index])
                    calibrated = MonotoneCalibration.fit(column[idx], y).apply(column[rest])[0]
                    scores["best_device"].append(spearman(calibrated, target))
                    done += 1
                    if progress:
                        progress(done, work)
                scores["edgeopt"].extend(mine)
                per_device[names[j]] = {
                    m: float(np.mean(mine if m == "edgeopt" else scores[m][first:]))
                    for m in METHODS
                }
            if not per_device:
                continue
            rows[str(k)] = {
                "devices": len(per_device),
                "spearman": {m: float(np.mean(v)) for m, v in scores.items()},
                "coverage_90": float(np.mean(covered)),
                "worst_device": min(per_device, key=lambda d: per_device[d]["edgeopt"]),
                "worst_margin": min(
                    v["edgeopt"] - max(v[m] for m in METHODS[1:]) for v in per_device.values()
                ),
                "per_device": per_device,
            }
        out[held] = {
            "basis": [names[j] for j in basis_cols],
            "tested": [names[j] for j in targets],
            "shots": rows,
        }
    return {"families": out, "setup": {"shots": list(shots), "seeds": seeds}}
