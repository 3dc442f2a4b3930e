"""Benchmark: the latency model's additive base and interval against a baseline, by table size.

    python benchmarks/additive_base.py [--seeds 3] [--json OUT]

*Baseline*: the additive base fitted by unconstrained ridge and the interval set by the plain
90% quantile of the held-out errors. *Shipped* (``predictors/design_model.py``):
non-negative kernel costs and the split-conformal quantile. Both are the service's
``fit_design_model`` (base chosen by the rows, LightGBM correction, refit on all rows); only
those two parts differ. Scored on designs never used in fitting (a seeded 20% per seed):
share within +-10%, MAPE, coverage of the 90% interval, and that coverage on the fastest
tenth of the held-out designs by prediction, where an optimizer looks first. Tables: this
host's measured ones (``benchmarks/results/*/host_nb201_latency.csv``) subsampled to 75 and
150 designs and whole, and reference NB201 devices at 100 and 1,000 designs.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Callable
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

import predictors.design_model as design_model
from devices.reference import data_dir
from predictors.design_model import LEVEL, AdditiveBase, fit_design_model
from predictors.tables import read_tables
from search.spaces import get_space

HOST_TABLES = {
    "63dc7369bf7f": "benchmarks/results/63dc7369bf7f/mixed1t/host_nb201_latency.csv",
    "d1ea52892bef": "benchmarks/results/d1ea52892bef/host_nb201_latency.csv",
}
HOST_SIZES = (75, 150, None)
REFERENCE = ("1080ti_1", "essential_ph_1", "gold_6226", "pixel3", "raspi4", "samsung_a50")
REFERENCE_SIZES = (100, 1000)


def unconstrained_fit(cls: type[AdditiveBase], x: np.ndarray, y: np.ndarray, alpha: float = 1e-2):
    """The baseline base: weighted ridge with costs of either sign."""
    scale = float(np.median(y))
    ys = y / scale
    x1 = np.c_[np.ones(len(x)), x]
    w = 1.0 / ys**2
    gram = (x1 * w[:, None]).T @ x1 + alpha * np.eye(x1.shape[1])
    beta = np.linalg.solve(gram, (x1 * w[:, None]).T @ ys) * scale
    return cls(float(beta[0]), tuple(float(b) for b in beta[1:]), 0.5 * float(y.min()))


def plain_quantile(error: np.ndarray, level: float = LEVEL) -> float:
    """The baseline interval: the plain ``level`` quantile of the held-out errors."""
    return float(np.quantile(error, level))


@contextmanager
def baseline() -> Any:
    """The baseline: unconstrained base, plain quantile."""
    fit, quantile = AdditiveBase.__dict__["fit"], design_model.conformal_quantile
    AdditiveBase.fit = classmethod(unconstrained_fit)  # type: ignore[assignment]
    design_model.conformal_quantile = plain_quantile
    try:
        yield
    finally:
        AdditiveBase.fit = fit  # type: ignore[method-assign]
        design_model.conformal_quantile = quantile


def scores(x: np.ndarray, y: np.ndarray, seeds: int) -> dict[str, dict[str, float]]:
    """Held-out figures of both variants over ``seeds`` 80/20 splits."""
    out: dict[str, dict[str, float]] = {}
    variants: dict[str, Callable[[], Any]] = {"baseline": baseline, "shipped": _nothing}
    for name, variant in variants.items():
        names = ("within_10pct", "mape", "coverage", "fast_coverage")
        figures: dict[str, list[float]] = {k: [] for k in names}
        for seed in range(seeds):
            order = np.random.default_rng(100 + seed).permutation(len(y))
            test, fit = order[: len(y) // 5], order[len(y) // 5 :]
            with variant():
                model = fit_design_model(x[fit], y[fit], True, seed)
            value, low, high = model.predict(x[test])
            inside = (low <= y[test]) & (y[test] <= high)
            fast = value <= np.quantile(value, 0.1)
            figures["within_10pct"].append(float(np.mean(np.abs(value / y[test] - 1) <= 0.1)))
            figures["mape"].append(float(100 * np.mean(np.abs(value / y[test] - 1))))
            figures["coverage"].append(float(inside.mean()))
            figures["fast_coverage"].append(float(inside[fast].mean()))
        out[name] = {k: round(float(np.mean(v)), 3) for k, v in figures.items()}
    return out


@contextmanager
def _nothing() -> Any:
    yield


def host_rows(seeds: int) -> list[dict[str, Any]]:
    space = get_space("nb201")
    rows_out = []
    for machine, path in HOST_TABLES.items():
        with open(path) as f:
            rows = list(csv.DictReader(f))
        devices = [c for c in rows[0] if c not in ("arch", "policy")]
        archs = sorted({r["arch"] for r in rows})
        for size in HOST_SIZES:
            keep = set(np.random.default_rng(0).permutation(archs)[:size].tolist())
            for device in devices:
                for policy in sorted({r["policy"] for r in rows}):
                    sel = [
                        r for r in rows if r["policy"] == policy and r[device] and r["arch"] in keep
                    ]
                    if len(sel) < 60:
                        continue
                    x = space.encode([r["arch"] for r in sel], policy)
                    y = np.array([float(r[device]) for r in sel])
                    row = {"table": machine, "device": device, "policy": policy, "designs": len(y),
                           **scores(x, y, seeds)}  # fmt: skip
                    print(json.dumps(row), flush=True)
                    rows_out.append(row)
    return rows_out


def reference_rows(seeds: int) -> list[dict[str, Any]]:
    space = get_space("nb201")
    data = data_dir() / "nb201"
    table = read_tables(data / "latency_ms.csv.gz", data / "archs.csv.gz", space)
    x_all = space.encode(table.encodings)
    rows_out = []
    for size in REFERENCE_SIZES:
        for device in REFERENCE:
            y_all = table.column(device)
            ok = np.flatnonzero(np.isfinite(y_all) & (y_all > 0))
            rows = np.random.default_rng(1).choice(ok, size, replace=False)
            row = {"table": "reference", "device": device, "policy": "fp32", "designs": size,
                   **scores(x_all[rows], y_all[rows], seeds)}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows_out.append(row)
    return rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/reference/additive_base.json")
    )
    args = parser.parse_args()
    rows = host_rows(args.seeds) + reference_rows(args.seeds)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"date": str(date.today()), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
