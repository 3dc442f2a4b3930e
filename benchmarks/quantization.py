"""Benchmark: the accuracy-change model on held-out measured designs, beside its baselines.

    python benchmarks/quantization.py [--out benchmarks/results/reference/quantization.json]

Fits the model the service trains (``search.accuracy_change.fit_change_model``) on the
shipped digits accuracies of each space (20% of the designs held out, seed 0) and reports
its mean absolute error (points), Spearman of the changes and 90% interval coverage beside
"no change" and "each policy's mean change". Then, for each host table in
``benchmarks/results/*/host_nb201_latency.csv``, the per-unit latency model
(``search.policy_latency.fit_policy_model``) with each measured mixed policy held out.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from devices.reference import load_digits_accuracy
from search.accuracy_change import fit_change_model, pairs_from_records
from search.policy_latency import Measured, fit_policy_model

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/reference/quantization.json")
    )
    args = parser.parse_args()
    out = {}
    for space in ("nb201", "fbnet"):
        rows = load_digits_accuracy(space)
        pairs = pairs_from_records((r.design, r.policy, r.top1) for r in rows)
        out[space] = fit_change_model(space, pairs).quality
    hosts = {}
    for table in sorted(RESULTS.glob("*/host_nb201_latency.csv")):
        with table.open(newline="") as f:
            rows = list(csv.DictReader(f))
        for column in [c for c in rows[0] if c.startswith("host-")]:
            kept = [r for r in rows if r.get(column)]
            measured = Measured(
                [r["arch"] for r in kept],
                [r["policy"] for r in kept],
                np.array([float(r[column]) for r in kept]),
            )
            model = fit_policy_model("nb201", measured)
            hosts[f"{table.parent.name}/{column}"] = model.quality["held_out_policies"]
    out["per_unit_latency"] = hosts
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
