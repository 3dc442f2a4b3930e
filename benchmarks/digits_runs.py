"""Train a few designs again with other seeds: how far one digits training lands from another.

    python benchmarks/digits_runs.py --space nb201 --designs 40 --seeds 4 --epochs 4
    python benchmarks/digits_runs.py --space fbnet --designs 16 --seeds 3 --epochs 8

A shipped digits accuracy is one training run (seed 0). The designs are drawn evenly over
the recorded accuracies' ranks, each trained with seeds 0..K-1 exactly as the records were
(``search.digits.measure_accuracy``, fp32, ONNX Runtime top-1), and written to
``devices/reference_data/digits/SPACE_runs.csv.gz``; the service reads the run-to-run
spread from there (``predictors.run_spread``) so a recorded accuracy is not taken as exact.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from devices.reference import load_digits_accuracy, write_digits_runs
from predictors.run_spread import run_sigma
from search.digits import measure_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=["nb201", "fbnet"], default="nb201")
    parser.add_argument("--designs", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    fp32 = sorted(
        (r for r in load_digits_accuracy(args.space) if r.policy == "fp32"), key=lambda r: r.top1
    )
    if not fp32:
        raise SystemExit(f"no shipped digits accuracies for {args.space}")
    picks = [fp32[int(i)] for i in np.linspace(0, len(fp32) - 1, args.designs).round()]
    runs: dict[str, dict[int, float]] = {}
    start = time.perf_counter()
    for i, row in enumerate(picks):
        runs[row.design] = {
            seed: measure_accuracy(args.space, row.design, ["fp32"], args.epochs, seed)["fp32"]
            for seed in range(args.seeds)
        }
        print(f"{i + 1}/{len(picks)} {row.top1:.2f} -> {list(runs[row.design].values())}",
              flush=True)  # fmt: skip
    path = write_digits_runs(args.space, runs)
    again = [runs[r.design][0] - r.top1 for r in picks]
    print(json.dumps({
        "file": str(path),
        "designs": len(runs),
        "seeds": args.seeds,
        "run_sigma_points": run_sigma({d: list(v.values()) for d, v in runs.items()}),
        "seed0_reproduces_record_max_diff": float(np.max(np.abs(again))),
        "seconds": round(time.perf_counter() - start, 1),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
