"""Benchmark: would the transfer's ridge penalties be chosen without looking at the test split?

    python benchmarks/transfer_tuning.py [--data ../shared/data-like folder] [--seeds 3]
        [--space nb201|fbnet] [--json benchmarks/results/reference/transfer_tuning.json]

With ``--space`` only that space's runs are made, and their keys replaced in the JSON.

``predictors/transfer.py``'s penalties were set on the standard splits, test devices
included. Here every penalty is scaled together (x 1/9 ... x 9) and each scale is judged on
the *training* devices alone: each one held out in turn and predicted from the others with
the same shots, as a test device would be. The scale that wins there is then run on the test
split beside the shipped one (x 1), so the README can say what choosing honestly costs.

FBNet's cost features once gained a depthwise / pointwise split of the MACs after a
comparison on the test split. The same inner check judges the FBNet features: the shipped
ones (per-stage MACs, weights, blocks, convolution kernels), those with the split in place
of the kernel count (an earlier variant), and those with neither, each training device held out in
turn; then all three on the test split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from transfer import RUNS, TEST, TRAIN

from devices.reference import data_dir
from predictors.evaluation import evaluate_transfer
from predictors.tables import read_tables
from search.spaces import FBNet, get_space

SCALES = (1 / 9, 1 / 3, 1.0, 3.0, 9.0)


def held_out_training(score, train: list[str], seeds: int) -> float:
    """Mean Spearman with each training device predicted from the others in turn."""
    return float(np.mean([score([d for d in train if d != held], [held], seeds) for held in train]))


def spearman_at(scale: float, run: tuple, train: list[str], test: list[str], seeds: int) -> float:
    """Mean test Spearman with every penalty multiplied by ``scale``."""
    table, cost, shots = run
    result = evaluate_transfer(table, cost, train, test, shots, seeds, penalty_scale=scale)
    return float(result["mean"]["spearman"])


def depthwise_split(encodings: list[str]) -> np.ndarray:
    """Depthwise and other MACs (millions) per FBNet design: the earlier variant's two columns."""
    space = FBNet()
    layers = space.layers()
    out = np.zeros((len(encodings), 2))
    for row, encoding in enumerate(encodings):
        for layer, block in zip(layers, encoding.split("-"), strict=True):
            macs, _, depthwise = space.block_cost(block, *layer[1:])
            out[row] += (depthwise / 1e6, (macs - depthwise) / 1e6)
    return out


def features_choice(run: tuple, train: list[str], test: list[str], seeds: int) -> dict:
    """The shipped FBNet cost features against the depthwise / pointwise split and neither."""
    table, cost, shots = run
    neither = cost[:, :-1]  # the kernel count is the last column
    variants = {
        "shipped (convolution kernels)": cost,
        "depthwise / pointwise split": np.c_[neither, depthwise_split(table.encodings)],
        "neither": neither,
    }

    def score(features: np.ndarray, tr: list[str], te: list[str], n: int) -> float:
        return float(evaluate_transfer(table, features, tr, te, shots, n)["mean"]["spearman"])

    inner = {
        name: held_out_training(lambda tr, te, n, f=f: score(f, tr, te, n), train, seeds)
        for name, f in variants.items()
    }
    chosen = max(inner, key=lambda name: inner[name])
    return {
        "training_devices_held_out": inner,
        "chosen": chosen,
        "test_spearman": {name: score(f, train, test, 5) for name, f in variants.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=data_dir())
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/reference/transfer_tuning.json")
    )
    parser.add_argument("--space", choices=sorted({r[0] for r in RUNS}))
    args = parser.parse_args()
    result = json.loads(args.json.read_text()) if args.space and args.json.is_file() else {}
    for space, batch, shots in RUNS:
        if args.space not in (None, space):
            continue
        folder = args.data / space
        table = read_tables(folder / "latency_ms.csv.gz", folder / "archs.csv.gz", get_space(space))
        run = (table, get_space(space).features(table.encodings), shots)
        train, test = TRAIN.format(b=batch).split(","), TEST.format(b=batch).split(",")
        inner = {
            scale: held_out_training(
                lambda tr, te, n, s=scale, r=run: spearman_at(s, r, tr, te, n), train, args.seeds
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
        if space == "fbnet":
            result[f"{key}, cost features"] = features_choice(run, train, test, args.seeds)
            print(json.dumps(result[f"{key}, cost features"]), flush=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
