"""Benchmark: per-device design models on reference NB201 devices, service vs LightGBM alone.

    python benchmarks/design_models.py [--designs 5000] [--json OUT]

For each of 10 reference devices (CPU, GPU, mobile, FPGA, ASIC), a seeded sample of designs,
20% of it held out: the service's model (``predictors/design_model.py``: additive base with a
Huber LightGBM correction where the values add up, LightGBM alone where they do not) against
LightGBM alone on log latency (the model before the additive base), both on the same rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from host_predictor import lightgbm_only

from devices.reference import data_dir
from predictors.design_model import fit_design_model
from predictors.metrics import quality
from predictors.tables import read_tables
from search.spaces import get_space

DEVICES = [
    "1080ti_1", "2080ti_256", "essential_ph_1", "fpga", "gold_6226",
    "pixel3", "raspi4", "eyeriss", "samsung_a50", "titan_rtx_32",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", type=int, default=5000)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/reference/design_models.json")
    )
    args = parser.parse_args()
    space = get_space("nb201")
    data = data_dir() / "nb201"
    table = read_tables(data / "latency_ms.csv.gz", data / "archs.csv.gz", space)
    x_all = space.encode(table.encodings)
    result: dict[str, dict[str, float | bool]] = {}
    print(f"{'device':16s} within +-10% service / lightgbm   Spearman service / lightgbm  base")
    for device in DEVICES:
        y_all = table.column(device)
        ok = np.flatnonzero(np.isfinite(y_all) & (y_all > 0))
        rows = np.random.default_rng(1).choice(ok, min(args.designs, len(ok)), replace=False)
        x, y = x_all[rows], y_all[rows]
        order = np.random.default_rng(0).permutation(len(y))
        test, fit = order[: len(y) // 5], order[len(y) // 5 :]
        model = fit_design_model(x[fit], y[fit])
        ours = quality(model.predict(x[test])[0], y[test])
        plain = quality(lightgbm_only(x[fit], y[fit], x[test], 0), y[test])
        result[device] = {
            "additive_base": model.additive is not None,
            **{f"service_{k}": v for k, v in ours.items()},
            **{f"lightgbm_{k}": v for k, v in plain.items()},
        }
        print(
            f"{device:16s} {ours['within_10pct']:.3f} / {plain['within_10pct']:.3f}"
            f"                {ours['spearman']:.4f} / {plain['spearman']:.4f}"
            f"        {'yes' if model.additive else 'no'}"
        )
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
