"""Benchmark: latency predictors on this host's measured devices (the nn-Meter figure).

    python benchmarks/host_predictor.py
        [--csv benchmarks/results/d1ea52892bef/host_nb201_latency.csv]
        [--designs N] [--json OUT]

Reads the table ``benchmarks/host_measurement.py`` wrote. For each host device and policy,
5 seeds of an 80/20 split of its designs; fitted on 80% and scored on the 20% never used in
training: the service's per-device model (``predictors/design_model.py``: additive base in
ms plus LightGBM on the log ratio), LightGBM alone on log latency (the model before the
additive base) and the additive base alone (ridge in ms), all over the space's encoding.
Reports the share of held-out designs predicted within +-10% (nn-Meter: 99.0% on a mobile
CPU) and the mean absolute percentage error. With ``--stable`` (the flags
``host_measurement.py`` writes beside its table) also the service's share over the held-out
designs whose measurement its protocol called stable (``service_within_10pct_stable``):
training still uses every design.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from predictors.design_model import MIN_ROWS, PARAMS, ROUNDS, AdditiveBase, fit_design_model
from predictors.metrics import quality
from search.spaces import get_space


def lightgbm_only(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, seed: int):
    """LightGBM on log latency with the service's settings, no additive base."""
    import lightgbm as lgb

    params = {**PARAMS, "seed": seed}
    booster = lgb.train(params, lgb.Dataset(x_fit, np.log(y_fit)), num_boost_round=ROUNDS)
    return np.exp(booster.predict(x_test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--csv", type=Path, default=Path("benchmarks/results/d1ea52892bef/host_nb201_latency.csv")
    )
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/d1ea52892bef/host_predictor.json")
    )
    parser.add_argument("--designs", type=int, default=None)
    parser.add_argument("--stable", type=Path, default=None, help="host_nb201_stable.csv")
    args = parser.parse_args()
    with args.csv.open() as f:
        rows = list(csv.DictReader(f))
    flags: dict[tuple[str, str], dict[str, str]] = {}
    if args.stable is not None:
        with args.stable.open() as f:
            flags = {(r["arch"], r["policy"]): r for r in csv.DictReader(f)}
    if args.designs is not None:
        archs = sorted({r["arch"] for r in rows})
        keep = set(np.random.default_rng(0).permutation(archs)[: args.designs].tolist())
        rows = [r for r in rows if r["arch"] in keep]
    devices = [c for c in rows[0] if c not in ("arch", "policy")]
    space = get_space("nb201")
    result: dict[str, dict[str, float]] = {}
    for device in devices:
        for policy in sorted({r["policy"] for r in rows}):
            sel = [r for r in rows if r["policy"] == policy and r[device]]
            if len(sel) < MIN_ROWS:  # a table measured on some settings only
                continue
            x = space.encode([r["arch"] for r in sel], policy)
            y = np.array([float(r[device]) for r in sel])
            stable = np.array(
                [flags.get((r["arch"], r["policy"]), {}).get(device, "1") != "0" for r in sel]
            )
            scores: dict[str, list[dict[str, float]]] = {
                "service": [],
                "lightgbm": [],
                "additive": [],
            }
            on_stable = []
            for seed in range(5):
                order = np.random.default_rng(seed).permutation(len(y))
                test, fit = order[: len(y) // 5], order[len(y) // 5 :]
                model = fit_design_model(x[fit], y[fit], seed=seed)
                guess = model.predict(x[test])[0]
                scores["service"].append(quality(guess, y[test]))
                sure = stable[test]
                on_stable.append(quality(guess[sure], y[test][sure])["within_10pct"])
                guess = lightgbm_only(x[fit], y[fit], x[test], seed)
                scores["lightgbm"].append(quality(guess, y[test]))
                base = AdditiveBase.fit(x[fit], y[fit])
                scores["additive"].append(quality(np.exp(base.log_predict(x[test])), y[test]))
            result[f"{device} {policy}"] = {"designs": len(y)} | {
                f"{name}_{key}": float(np.mean([q[key] for q in runs]))
                for name, runs in scores.items()
                for key in ("within_10pct", "mape", "spearman")
            }
            if flags:
                result[f"{device} {policy}"] |= {
                    "stable_fraction": float(stable.mean()),
                    "service_within_10pct_stable": float(np.mean(on_stable)),
                }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'device policy':40s} designs  within +-10%: service / lightgbm / additive   MAPE")
    for key, r in result.items():
        print(
            f"{key:40s} {r['designs']:7d}  {r['service_within_10pct']:.3f} / "
            f"{r['lightgbm_within_10pct']:.3f} / {r['additive_within_10pct']:.3f}"
            f"   {r['service_mape']:.2f}% / {r['lightgbm_mape']:.2f}% / {r['additive_mape']:.2f}%"
        )
    overall = {
        name: float(np.mean([r[f"{name}_within_10pct"] for r in result.values()]))
        for name in ("service", "lightgbm", "additive")
    }
    if flags:
        overall["service_stable"] = float(
            np.mean([r["service_within_10pct_stable"] for r in result.values()])
        )
        for key, r in result.items():
            print(f"{key:40s} stable {r['stable_fraction']:.2f}: service on them "
                  f"{r['service_within_10pct_stable']:.3f}")  # fmt: skip
    print("mean within +-10%:", json.dumps(overall))


if __name__ == "__main__":
    main()
