"""``edgeopt eval optimize``: regret and budget violations of the optimizer on unseen devices.

For each test device and latency budget (percentiles of its true latencies), a method may
measure at most ``max_measurements`` designs on the device, then returns one design. Regret
is the true accuracy of the best design within budget minus the returned design's; a
violation is a returned design whose true latency exceeds the budget.

Methods:
- ``search``: D-optimal shots (half the measurement budget), few-shot transfer over the
  training devices, then verification of the most accurate plausible designs;
- ``proxy``: the same shots rank the training devices; the best-agreeing one (Spearman >=
  0.9) is reused through a monotone calibration, otherwise transfer adapts (OneProxy);
  then the same verification;
- ``auto``: ``proxy`` (which falls back to adaptation by itself);
- baseline: ridge on 10 random shots, most accurate design predicted within budget.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from predictors.proxy import AGREEMENT, MonotoneCalibration, rank_proxies
from predictors.tables import LatencyTable, TableError
from predictors.transfer import TransferBasis, TransferModel, ridge_baseline
from search.optimize import Predict, verified_search

METHODS = ("proxy", "search", "auto")
KEYS = ("regret", "violation_rate", "seconds_per_query")


def _transfer_predict(model: TransferModel) -> Predict:
    def predict(idx: np.ndarray, y: np.ndarray):
        return model.adapt(idx, y).predict()

    return predict


def _proxy_predict(
    basis: TransferBasis, model: TransferModel, shots, values
) -> tuple[Predict, str]:
    choice = rank_proxies(basis.latency_ms[shots], values)
    if choice.spearman < AGREEMENT:
        return _transfer_predict(model), "transfer"
    column = np.exp(basis.log_latency[:, choice.index])

    def predict(idx: np.ndarray, y: np.ndarray):
        return MonotoneCalibration.fit(column[idx], y).apply(column)

    return predict, basis.names[choice.index]


def evaluate_optimize(
    table: LatencyTable,
    accuracy: np.ndarray,
    cost: np.ndarray,
    train: Sequence[str],
    test: Sequence[str],
    budgets: Sequence[float],
    max_measurements: int,
    seeds: int,
    method: str,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    if method not in METHODS:
        raise TableError(
            f"method {method!r} is not available (have {', '.join(METHODS)}; "
            "'neural' needs the learned optimizer, which is not built yet)"
        )
    if set(train) & set(test):
        raise TableError(f"devices both in --train and --test: {sorted(set(train) & set(test))}")
    if max_measurements < 4:
        raise TableError("--max-measurements must be at least 4")
    if any(not 0 < b < 100 for b in budgets):
        raise TableError("--budgets are percentiles strictly between 0 and 100")
    known = np.isfinite(accuracy)
    basis = TransferBasis(cost, np.stack([table.column(d) for d in train], axis=1), list(train))
    shots_n = max(3, max_measurements // 2)
    model = TransferModel(basis)
    model.calibrate(shots_n)
    devices, baseline = {}, {}
    total, done = len(test) * len(budgets) * seeds, 0
    for name in test:
        truth = table.column(name)
        usable = np.flatnonzero(np.isfinite(truth) & known)
        rows: list[dict[str, float]] = []
        base_rows: list[dict[str, float]] = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            shots = model.choose_shots(shots_n, rng, usable)
            values = truth[shots]
            if method == "search":
                predict: Predict = _transfer_predict(model)
            else:
                predict, _ = _proxy_predict(basis, model, shots, values)
            random_shots = rng.choice(usable, size=10, replace=False)
            base_pred = ridge_baseline(basis, random_shots, truth[random_shots])
            for pct in budgets:
                budget = float(np.percentile(truth[usable], pct))
                feasible = usable[truth[usable] <= budget]
                best = float(accuracy[feasible].max())
                started = time.perf_counter()
                acc = np.where(known & np.isfinite(truth), accuracy, -np.inf)
                choice = verified_search(
                    acc,
                    budget,
                    predict,
                    truth.item,
                    shots,
                    values,
                    max_measurements - shots_n,
                )
                seconds = time.perf_counter() - started
                rows.append(_score(choice.index, truth, accuracy, best, budget, seconds))
                ok = usable[base_pred[usable] <= budget]
                pick = (
                    int(ok[np.argmax(accuracy[ok])])
                    if ok.size
                    else int(usable[np.argmin(base_pred[usable])])
                )
                base_rows.append(_score(pick, truth, accuracy, best, budget, 0.0))
                done += 1
                if progress:
                    progress(done, total)
        devices[name] = _mean(rows)
        baseline[name] = _mean(base_rows)
    return {
        "devices": devices,
        "mean": _mean(list(devices.values())),
        "baseline": {"devices": baseline, "mean": _mean(list(baseline.values()))},
        "setup": {
            "method": method,
            "train": list(train),
            "test": list(test),
            "budgets": list(budgets),
            "max_measurements": max_measurements,
            "seeds": seeds,
            "shots": shots_n,
        },
    }


def _score(pick: int, truth, accuracy, best: float, budget: float, seconds: float):
    return {
        "regret": best - float(accuracy[pick]),
        "violation_rate": float(truth[pick] > budget),
        "seconds_per_query": seconds,
    }


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in KEYS}
