"""Benchmark: is the shipped fingerprint a good first measurement for a new device?

    python benchmarks/fingerprint.py [--json OUT]

For every reference device of NB201 and FBNet, held out in turn: predict it from the other
devices with few-shot transfer, once from the fingerprint's 10 designs and once from 10
random designs (5 draws), and compare the Spearman rank correlation on all its other designs.
(The fingerprint was chosen with every device in view, the held-out one included, through the
two main latency directions; the per-split choice in ``edgeopt eval transfer`` avoids that.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from devices.fingerprint import fingerprint
from devices.reference import load_reference
from predictors.metrics import quality
from predictors.transfer import TransferBasis, TransferModel
from search.spaces import get_space


def run(space: str) -> dict[str, object]:
    table = load_reference(space)
    cost = get_space(space).features(table.encodings)
    row = {e: i for i, e in enumerate(table.encodings)}
    prints = np.array([row[e] for e in fingerprint(space)])
    per_device = {}
    for j, device in enumerate(table.devices):
        others = [k for k in range(len(table.devices)) if k != j]
        basis = TransferBasis(cost, table.latency_ms[:, others], [])
        model = TransferModel(basis)
        target = table.latency_ms[:, j]

        def score(shots: np.ndarray, target: np.ndarray = target, model=model) -> float:
            rest = np.setdiff1d(np.arange(len(target)), shots)
            centre = model.adapt(shots, target[shots]).predict(rest)[0]
            return quality(centre, target[rest])["spearman"]

        randoms = [
            score(np.random.default_rng(s).choice(len(target), 10, replace=False)) for s in range(5)
        ]
        per_device[device.column] = {
            "fingerprint": score(prints),
            "random": float(np.mean(randoms)),
        }
    return {
        "devices": per_device,
        "mean_fingerprint": float(np.mean([v["fingerprint"] for v in per_device.values()])),
        "mean_random": float(np.mean([v["random"] for v in per_device.values()])),
        "worst_fingerprint": min(v["fingerprint"] for v in per_device.values()),
        "worst_random": min(v["random"] for v in per_device.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/reference/fingerprint.json")
    )
    args = parser.parse_args()
    result = {space: run(space) for space in ("nb201", "fbnet")}
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    for space, r in result.items():
        print(
            f"{space}: fingerprint mean {r['mean_fingerprint']:.4f}"
            f" (worst {r['worst_fingerprint']:.4f}) vs random 10 {r['mean_random']:.4f}"
            f" (worst {r['worst_random']:.4f})"
        )


if __name__ == "__main__":
    main()
