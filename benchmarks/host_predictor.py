"""Benchmark: latency predictors on this host's measured devices (the nn-Meter figure).

    python benchmarks/host_predictor.py [--csv benchmarks/results/host_nb201_latency.csv]

Reads the table ``benchmarks/host_measurement.py`` wrote. For each host device and policy,
5 seeds of an 80/20 split of its designs: the service's per-device model (LightGBM on the
design encoding, ``predictors/design_model.py``) and a linear model in ms over the same
encoding (ridge) are fitted on 80% and scored on the 20% never used in training. Reports
the share of held-out designs predicted within +-10% (nn-Meter: 99.0% on a mobile CPU).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from predictors.design_model import fit_design_model
from predictors.metrics import quality
from search.spaces import get_space


def ridge_ms(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, alpha: float = 1e-2):
    """Latency linear in the encoding (ms), relative-error weighted."""
    x1, t1 = np.c_[np.ones(len(x_fit)), x_fit], np.c_[np.ones(len(x_test)), x_test]
    w = 1 / y_fit**2
    a = (x1 * w[:, None]).T @ x1 + alpha * np.eye(x1.shape[1])
    return t1 @ np.linalg.solve(a, (x1 * w[:, None]).T @ y_fit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--csv", type=Path, default=Path("benchmarks/results/host_nb201_latency.csv")
    )
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/host_predictor.json"))
    args = parser.parse_args()
    with args.csv.open() as f:
        rows = list(csv.DictReader(f))
    devices = [c for c in rows[0] if c not in ("arch", "policy")]
    space = get_space("nb201")
    result: dict[str, dict[str, dict[str, float]]] = {}
    for device in devices:
        for policy in sorted({r["policy"] for r in rows}):
            sel = [r for r in rows if r["policy"] == policy and r[device]]
            x = space.encode([r["arch"] for r in sel])
            y = np.array([float(r[device]) for r in sel])
            lgb_scores, ridge_scores = [], []
            for seed in range(5):
                order = np.random.default_rng(seed).permutation(len(y))
                test, fit = order[: len(y) // 5], order[len(y) // 5 :]
                model = fit_design_model(x[fit], y[fit], seed=seed)
                lgb_scores.append(quality(model.predict(x[test])[0], y[test]))
                ridge_scores.append(quality(ridge_ms(x[fit], y[fit], x[test]), y[test]))
            result[f"{device} {policy}"] = {
                "designs": len(y),
                "lightgbm_within_10pct": float(np.mean([q["within_10pct"] for q in lgb_scores])),
                "ridge_within_10pct": float(np.mean([q["within_10pct"] for q in ridge_scores])),
                "lightgbm_mape": float(np.mean([q["mape"] for q in lgb_scores])),
                "ridge_mape": float(np.mean([q["mape"] for q in ridge_scores])),
                "lightgbm_spearman": float(np.mean([q["spearman"] for q in lgb_scores])),
            }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'device policy':40s} designs  within10 (lgbm)  within10 (ridge)  MAPE lgbm/ridge")
    for key, r in result.items():
        print(
            f"{key:40s} {r['designs']:7d}  {r['lightgbm_within_10pct']:.3f}"
            f"            {r['ridge_within_10pct']:.3f}             "
            f"{r['lightgbm_mape']:.2f}% / {r['ridge_mape']:.2f}%"
        )


if __name__ == "__main__":
    main()
