"""Benchmark: the accuracy cost of int8 across NB201, measured on scikit-learn's digits.

    python benchmarks/digits_accuracy.py [--count 20] [--json OUT]

Samples designs (seed 0), trains each (search/digits.py), and evaluates its fp32, int8 and
mixed (stages int8, stem and head fp32) ONNX models on the held-out digits.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from search.digits import measure_accuracy, provenance
from search.spaces import get_space

POLICIES = ["fp32", "int8", "fp32,int8,int8,int8,fp32"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/reference/digits_accuracy.json")
    )
    args = parser.parse_args()
    designs = get_space("nb201").sample(np.random.default_rng(0), args.count)
    started = time.monotonic()
    rows = [{"design": d, **measure_accuracy("nb201", d, POLICIES)} for d in designs]
    drops = {p: [r["fp32"] - r[p] for r in rows] for p in POLICIES[1:]}
    summary = {
        "designs": len(rows),
        "source": provenance("nb201", 4),
        "fp32_mean": float(np.mean([r["fp32"] for r in rows])),
        "drop_points": {
            p: {"mean": float(np.mean(d)), "max": float(np.max(d)), "min": float(np.min(d))}
            for p, d in drops.items()
        },
        "seconds_per_design": (time.monotonic() - started) / len(rows),
        "rows": rows,
    }
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))


if __name__ == "__main__":
    main()
