"""Benchmark: would the transfer's ridge penalties be chosen without looking at the test split?

    python benchmarks/transfer_tuning.py [--data ../shared/data-like folder] [--seeds 3]
        [--json benchmarks/results/transfer_tuning.json]

``predictors/transfer.py``'s penalties were set on the standard splits, test devices
included. Here every penalty is scaled together (x 1/9 ... x 9) and each scale is judged on
the *training* devices alone: each one held out in turn and predicted from the others with
the same shots, as a test device would be. The scale that wins there is then run on the test
split beside the shipped one (x 1), so the README can say what choosing honestly costs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from transfer import RUNS, TEST, TRAIN

import predictors.transfer as transfer
from devices.reference import data_dir
from predictors.evaluation import evaluate_transfer
from predictors.tables import read_tables
from search.spaces import get_space

SCALES = (1 / 9, 1 / 3, 1.0, 3.0, 9.0)


def spearman_at(scale: float, run: tuple, train: list[str], test: list[str], seeds: int) -> float:
    """Mean test Spearman with every penalty multiplied by ``scale``."""
    table, cost, shots = run
    shipped = dict(transfer.PENALTY)
    transfer.PENALTY.update({k: v * scale for k, v in shipped.items()})
    try:
        return float(evaluate_transfer(table, cost, train, test, shots, seeds)["mean"]["spearman"])
    finally:
        transfer.PENALTY.update(shipped)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_dir())
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/transfer_tuning.json")
    )
    args = parser.parse_args()
    result = {}
    for space, batch, shots in RUNS:
        folder = args.data / space
        table = read_tables(folder / "latency_ms.csv.gz", folder / "archs.csv.gz", get_space(space))
        run = (table, get_space(space).features(table.encodings), shots)
        train, test = TRAIN.format(b=batch).split(","), TEST.format(b=batch).split(",")
        inner = {
            scale: float(
                np.mean(
                    [
                        spearman_at(scale, run, [d for d in train if d != held], [held], args.seeds)
                        for held in train
                    ]
                )
            )
            for scale in SCALES
        }
        chosen = max(inner, key=lambda s: inner[s])
        outer = {s: spearman_at(s, run, train, test, 5) for s in {1.0, chosen}}
        key = f"{space} {shots} shots"
        result[key] = {
            "training_devices_held_out": {f"{s:.3g}": v for s, v in inner.items()},
            "chosen_scale": chosen,
            "test_spearman_chosen": outer[chosen],
            "test_spearman_shipped": outer[1.0],
        }
        print(key, json.dumps(result[key]), flush=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
